// Package httpapi is the plumbing that spillway's HTTP APIs share — the
// login service's, the load balancer's admin API, the dashboard's and
// backend-sim's control: handlers that return errors and one adapter that
// renders them, the bearer-token check, the Host check that keeps a
// loopback listener out of reach of DNS rebinding, strict JSON bodies and
// the admin server with every timeout set.
//
// An error a handler returns becomes a short JSON body, {"error": CODE},
// with a request id (echoed from a sane X-Request-Id or made up) that joins
// it to the log line carrying the detail. The client never sees the
// detail of a 5xx; a 4xx may carry a Detail meant for it. A 429, 502, 503
// or 504 also names its code in health.ReasonHeader; the codes of the
// instance contract are health's Reason constants.
//
// Everything here is stateless or immutable after construction and safe
// for concurrent use.
package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// Error is an error with the answer the client gets: Status and Code
// (and Detail for a 4xx, RetryAfter when set). Err is for the log only.
// Code is one of health's Reason codes where one fits.
type Error struct {
	Status     int
	Code       string
	Detail     string
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	s := e.Code
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// BadRequest is a 400 bad_request whose Detail tells the client what is
// wrong.
func BadRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: health.ReasonBadRequest, Detail: fmt.Sprintf(format, args...)}
}

// ErrClientGone is what a handler returns when its client went away
// (closed or half-closed its connection: Go's server cannot tell the two
// apart and cancels the request either way, as nginx does without
// proxy_ignore_client_abort). The adapter then aborts the response: the
// connection is closed without an answer, never with an empty 200 or a
// made-up status.
var ErrClientGone = errors.New("client gone")

// HandlerFunc is a handler that returns its error for the Adapter to
// render; it writes nothing itself when it returns an error.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Adapter turns HandlerFuncs into http.Handlers.
type Adapter struct {
	// Log receives a line per failed request: info for a 4xx, warn for a
	// 5xx, with the request id, method, path, peer, status, code and
	// detail. Nil: discard.
	Log *slog.Logger
	// Message is that line's message. Default "request failed".
	Message string
}

const maxRequestIDLen = 64

// Wrap returns h as an http.Handler: it sets X-Request-Id, runs h and
// renders the error h returns, if any.
func (a Adapter) Wrap(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := RequestID(r)
		w.Header().Set(RequestIDHeader, id)
		if err := h(w, r); err != nil {
			a.Render(w, r, id, err)
		}
	})
}

// Render writes err's answer (an *Error, or a 500 internal_error for any
// other error) and logs it; ErrClientGone aborts the response instead.
func (a Adapter) Render(w http.ResponseWriter, r *http.Request, id string, err error) {
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if errors.Is(err, ErrClientGone) {
		log.Debug("client gone", "request_id", id, "path", r.URL.Path)
		panic(http.ErrAbortHandler) // close without an answer; not logged by net/http
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Err: err}
	}
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelWarn
	}
	msg := a.Message
	if msg == "" {
		msg = "request failed"
	}
	log.Log(r.Context(), level, msg, "request_id", id, "method", r.Method, "path", r.URL.Path,
		"remote", r.RemoteAddr, "status", e.Status, "error", e.Code, "detail", e.Detail, "cause", errString(e.Err))
	h := w.Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds(e.RetryAfter)))
	}
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// The code is the answer's reason (health.ReasonHeader): a load
		// balancer reads it to tell a deliberate answer (shed,
		// overloaded) from a failure.
		h.Set(health.ReasonHeader, e.Code)
	}
	body := struct {
		Error     string `json:"error"`
		Detail    string `json:"detail,omitempty"`
		RequestID string `json:"request_id"`
	}{e.Code, "", id}
	if e.Status < 500 {
		body.Detail = e.Detail
	}
	WriteJSON(w, e.Status, body)
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// RequestIDHeader carries a request's id, from the client or the load
// balancer to the instance and back in every answer.
const RequestIDHeader = "X-Request-Id"

// RequestID returns the request's X-Request-Id if it is sane
// (SaneRequestID), else a new one (NewRequestID).
func RequestID(r *http.Request) string {
	if id := r.Header.Get(RequestIDHeader); SaneRequestID(id) {
		return id
	}
	return NewRequestID()
}

// SaneRequestID reports whether id may be kept as a request id: 1 to 64
// visible ASCII characters. Anything else is replaced, so that a log line
// never carries a client's control characters or a megabyte of header.
func SaneRequestID(id string) bool {
	return id != "" && len(id) <= maxRequestIDLen && visibleASCII(id)
}

// requestIDs makes NewRequestID's ids: a random prefix drawn once per
// process, then a counter. Unique within the process by construction, and
// across processes as long as their 64-bit prefixes differ; cheap enough
// for every request of a load balancer (no system call, one allocation).
var requestIDs struct {
	prefix [16]byte // hex
	n      atomic.Uint64
}

func init() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	hex.Encode(requestIDs.prefix[:], b[:])
}

// NewRequestID returns a new request id, 33 characters: this process's
// random prefix, "-", and a counter, all lowercase hex
// ("9f86d081884c7d65-0000000000000001").
func NewRequestID() string {
	const digits = "0123456789abcdef"
	var b [33]byte
	copy(b[:], requestIDs.prefix[:])
	b[16] = '-'
	n := requestIDs.n.Add(1)
	for i := len(b) - 1; i > 16; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// WithRequestID gives every request through h a sane X-Request-Id: the
// client's when SaneRequestID, else a new one, set on the request (so
// that h and whatever it calls see the same id) and on the answer.
func WithRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !SaneRequestID(id) {
			id = NewRequestID()
			r.Header.Set(RequestIDHeader, id)
		}
		w.Header().Set(RequestIDHeader, id)
		h.ServeHTTP(w, r)
	})
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// WriteJSON writes v as a JSON answer that no cache keeps.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
