package admission

import (
	"errors"
	"io"
	"net/http"

	"github.com/spillway-dev/spillway/health"
)

// StatusClientClosedRequest is nginx's 499: the client went away before
// its answer. It is never written to the wire (Middleware aborts the
// response instead); access logs and metrics may record it.
const StatusClientClosedRequest = 499

const overloadedBody = `{"error":"` + health.ReasonOverloaded + `"}` + "\n"

// Middleware admits each request through l before calling next.
//
// A rejected request gets 503 with the JSON body {"error":"overloaded"},
// Content-Type: application/json, Retry-After (Config.RetryAfter in whole
// seconds, at least 1) and X-Spillway-Reason: overloaded. A request whose
// context ends while queued (its client is gone) gets no answer: the
// middleware panics with http.ErrAbortHandler, which makes the server
// close the connection (or reset the HTTP/2 stream) without logging, as
// nginx closes on a client that left. A recovering middleware outside this
// one must let that panic through.
//
// The slot is released when next returns (or panics). In aimd mode the
// outcome is Success, or Ignore when next answered 503 or 504 (failing
// fast on a dependency says nothing about this service's capacity, and
// must not grow the limit) or panicked. In static mode the response is not
// inspected and no clock is read.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := l.Acquire(r.Context())
		if err != nil {
			if errors.Is(err, ErrRejected) {
				l.writeOverloaded(w)
				return
			}
			panic(http.ErrAbortHandler)
		}
		if l.policy == nil {
			defer t.Release(Success)
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		outcome := Ignore // kept if next panics
		defer func() { t.Release(outcome) }()
		next.ServeHTTP(sw, r)
		switch sw.status {
		case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		default:
			outcome = Success
		}
	})
}

func (l *Limiter) writeOverloaded(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", l.retryAfter)
	h.Set(health.ReasonHeader, health.ReasonOverloaded)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, overloadedBody)
}

// statusWriter records the final status of a response. It implements
// Unwrap (for http.ResponseController) and Flush.
type statusWriter struct {
	http.ResponseWriter
	status int // first final (>= 200) status; 0 until written
}

var (
	_ http.ResponseWriter = (*statusWriter)(nil)
	_ http.Flusher        = (*statusWriter)(nil)
)

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
