package login

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// apiError is an error with the answer the client gets. The client sees
// Code (and RetryAfter); the log sees Err as well.
type apiError struct {
	Status     int
	Code       string
	RetryAfter time.Duration
	Err        error
}

func (e *apiError) Error() string {
	if e.Err == nil {
		return e.Code
	}
	return e.Code + ": " + e.Err.Error()
}

func (e *apiError) Unwrap() error { return e.Err }

// errClientGone reports that the client went away (its connection closed,
// or half-closed: Go's server cannot tell the two apart and cancels the
// request either way, as nginx does without proxy_ignore_client_abort).
// The adapter aborts the response: the connection is closed without an
// answer, never with an empty 200 or a made-up status.
var errClientGone = errors.New("client gone")

// handlerFunc is a handler that returns its error for the adapter to
// render.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// errorAdapter turns handlerFuncs into http.Handlers: it sets the request
// id, renders errors as short JSON and logs their detail.
type errorAdapter struct {
	log *slog.Logger
}

const maxRequestIDLen = 64

func (a errorAdapter) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > maxRequestIDLen {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		err := h(w, r)
		if err == nil {
			return
		}
		if errors.Is(err, errClientGone) {
			a.log.Debug("client gone", "request_id", id, "path", r.URL.Path)
			panic(http.ErrAbortHandler) // close without an answer; not logged by net/http
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{Status: http.StatusInternalServerError, Code: "internal_error", Err: err}
		}
		level := slog.LevelInfo
		if ae.Status >= 500 {
			level = slog.LevelWarn
		}
		a.log.Log(r.Context(), level, "request failed", "request_id", id, "path", r.URL.Path,
			"status", ae.Status, "error", ae.Code, "detail", errString(ae.Err))
		writeError(w, ae)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeError(w http.ResponseWriter, ae *apiError) {
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(ae.RetryAfter)))
	}
	if ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests {
		w.Header().Set("X-Spillway-Reason", ae.Code)
	}
	writeJSON(w, ae.Status, map[string]string{"error": ae.Code})
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
