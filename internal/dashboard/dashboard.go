// Package dashboard serves spillway's live dashboard: one HTML page, its
// script and style embedded in the binary (no CDN; it works offline), and
// the small JSON API the page polls and posts to.
//
// The handler knows nothing of the load balancer, the fleet or the backend:
// it reads injected Sources and calls injected Controls, so `spillway up`
// can wire the real components and tests can wire fakes. A nil control
// hides its button and answers 404.
//
// Routes (mount the handler at the root of the admin address):
//
//	GET    /                the page
//	GET    /assets/{file}   its script, style and icon
//	GET    /api/state       everything the page shows (no token needed)
//	POST   /api/backend     {"mode":"hang"}                         Controls.SetBackendMode
//	POST   /api/shedding    {"dependency":"backend","mode":"on"}     Controls.SetShedding
//	POST   /api/drain       {"instance":"…","drain":true}            Controls.Drain
//	POST   /api/restart     (empty body or {})                       Controls.RollingRestart
//	POST   /api/load        {"rps":50,"seconds":120}                 Controls.StartLoad
//	DELETE /api/load        (empty body or {})                       Controls.StopLoad
//
// Every POST and DELETE needs "Authorization: Bearer TOKEN" (compared in
// constant time); an empty token refuses them all. Bodies are limited to
// 4 KiB and decoded strictly: unknown fields, trailing data and missing
// required fields are 400. The page reads the token from its URL fragment
// (http://127.0.0.1:8081/#token=…, which never reaches the server) or an
// input box, and keeps it in sessionStorage.
//
// Stable hooks for browser tests: #btn-break, #btn-restore, #btn-restart,
// #btn-load-start, #btn-load-stop; rows of #instances with data-state (the
// LB's state) and data-display (starting, slow start, ready, ejected, ...);
// #dep-NAME with data-state (up|down|degraded|unknown, the instances' view)
// and data-shedding (ok|shedding|recovering, the edge's); [data-kpi=KEY]
// with data-value. Names in ids have characters outside [A-Za-z0-9_-]
// replaced by "_".
//
// The handler is safe for concurrent use, starts no goroutines and needs
// no closing. Sources and Controls are called from request goroutines,
// concurrently, and must be safe for that.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/spillway-dev/spillway/internal/timeline"
)

// Bounds of the API.
const (
	// MaxLoadRPS and MaxLoadSeconds bound POST /api/load.
	MaxLoadRPS     = 2000
	MaxLoadSeconds = 600
	// SeriesSeconds is how many seconds of timeline /api/state returns.
	SeriesSeconds = 300
	// MaxEvents is how many of the most recent events /api/state returns.
	MaxEvents = 100

	maxBody = 4 << 10
	maxName = 128 // instance ids, dependency names, backend modes
)

// Event is one entry of the dashboard's recent events.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is a short snake_case word: "ejected", "replaced", "frozen",
	// "shedding_on", ... The page colours events by it.
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// Sources are what the page shows. Each may be nil (shown as absent). They
// are called on every GET /api/state, about once a second per open page,
// so they should be cheap.
type Sources struct {
	// LB returns the load balancer's status document (lb.Status). It is
	// passed through as JSON; the page reads instances, dependencies,
	// panic, routing and capacity from it and shows "—" for what is
	// missing.
	LB func() any
	// Fleet returns the fleet's status: a list of instance statuses, or an
	// object with "instances" and "frozen". Passed through as JSON; the
	// page matches its instances to the LB's by id or service address.
	Fleet func() any
	// Events returns recent events, newest last. /api/state returns the
	// last MaxEvents.
	Events func() []Event
	// Series returns the last n seconds of the request timeline.
	Series func(n int) []timeline.Point
	// Backend returns the backend simulator's state ({"mode":"hang",…}).
	// Optional.
	Backend func() any
	// Load returns the load generator's state (loadgen.Status: running,
	// rps, ends). Optional.
	Load func() any
}

// Controls are what the page's buttons do. Each may be nil: its button is
// hidden and its route answers 404. Each is called with the request's
// context and should return within a few seconds, since the page waits
// for the answer; a long action (a rolling restart) should be started on
// its owner's goroutine and return. A control's error is logged; the page
// gets "control_failed".
type Controls struct {
	// SetBackendMode switches the backend simulator: "hang" breaks it the
	// way the incident did, "up" restores it; other modes are passed
	// through.
	SetBackendMode func(ctx context.Context, mode string) error
	// SetShedding sets a dependency's edge shedding override: "auto",
	// "on" or "off".
	SetShedding func(ctx context.Context, dependency, mode string) error
	// Drain drains (drain true) or undrains an instance, by the id the LB
	// status gives it.
	Drain func(ctx context.Context, instanceID string, drain bool) error
	// RollingRestart restarts the fleet one instance at a time.
	RollingRestart func(ctx context.Context) error
	// StartLoad sends rps requests per second for seconds (bounded by
	// MaxLoadRPS and MaxLoadSeconds), replacing any running load.
	StartLoad func(ctx context.Context, rps float64, seconds int) error
	// StopLoad stops the load.
	StopLoad func(ctx context.Context) error
}

// available reports which controls are set, by the names /api/state uses.
func (c Controls) available() map[string]bool {
	return map[string]bool{
		"backend":    c.SetBackendMode != nil,
		"shedding":   c.SetShedding != nil,
		"drain":      c.Drain != nil,
		"restart":    c.RollingRestart != nil,
		"load_start": c.StartLoad != nil,
		"load_stop":  c.StopLoad != nil,
	}
}

//go:embed assets
var assets embed.FS

type handler struct {
	src      Sources
	ctl      Controls
	token    [sha256.Size]byte
	hasToken bool
	log      *slog.Logger
	mux      *http.ServeMux
}

var _ http.Handler = (*handler)(nil)

// New returns the dashboard's handler. token guards every change; empty
// refuses them all. logger may be nil (discard).
func New(src Sources, ctl Controls, token string, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{src: src, ctl: ctl, log: logger, hasToken: token != ""}
	h.token = sha256.Sum256([]byte(token))

	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /assets/{file}", http.StripPrefix("/assets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/index.html" {
			// FileServer would redirect it to "./"; the page lives at /.
			http.NotFound(w, r)
			return
		}
		pageHeaders(w)
		files.ServeHTTP(w, r)
	})))
	routes := []struct {
		method, path string
		fn           apiFunc
		change       bool // needs the token
	}{
		{"GET", "/api/state", h.state, false},
		{"POST", "/api/backend", h.backend, true},
		{"POST", "/api/shedding", h.shedding, true},
		{"POST", "/api/drain", h.drain, true},
		{"POST", "/api/restart", h.restart, true},
		{"POST", "/api/load", h.startLoad, true},
		{"DELETE", "/api/load", h.stopLoad, true},
	}
	allow := map[string][]string{}
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, h.api(rt.fn, rt.change))
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	for path, methods := range allow {
		allowed := strings.Join(methods, ", ")
		mux.Handle(path, h.api(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allowed)
			return &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed"}
		}, false))
	}
	mux.Handle("/api/", h.api(func(http.ResponseWriter, *http.Request) error {
		return &apiError{Status: http.StatusNotFound, Code: "not_found"}
	}, false))
	h.mux = mux
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// pageHeaders sets the page's security headers: everything comes from this
// origin, nothing may frame it, and no referrer leaves it.
func pageHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
}

// apiError is an API failure: the client gets Code (and Detail, which
// describes its own input), the log gets Err.
type apiError struct {
	Status int
	Code   string
	Detail string
	Err    error
}

func (e *apiError) Error() string {
	s := e.Code
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "bad_request", Detail: fmt.Sprintf(format, args...)}
}

var errUnavailable = &apiError{Status: http.StatusNotFound, Code: "control_unavailable"}

type apiFunc func(w http.ResponseWriter, r *http.Request) error

// api checks the token when needed and renders a handler's error as JSON,
// joined to the log line by a request id.
func (h *handler) api(fn apiFunc, needToken bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		var err error
		if needToken && !h.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spillway-dashboard"`)
			err = &apiError{Status: http.StatusUnauthorized, Code: "unauthorized"}
		} else {
			err = fn(w, r)
		}
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{Status: http.StatusInternalServerError, Code: "internal_error", Err: err}
		}
		id := requestID()
		level := slog.LevelInfo
		if ae.Status >= 500 {
			level = slog.LevelWarn
		}
		h.log.Log(r.Context(), level, "dashboard: request failed", "request_id", id, "method", r.Method,
			"path", r.URL.Path, "remote", r.RemoteAddr, "status", ae.Status, "error", ae.Code,
			"detail", ae.Detail, "cause", errString(ae.Err))
		body := map[string]string{"error": ae.Code, "request_id": id}
		if ae.Detail != "" {
			body["detail"] = ae.Detail
		}
		writeJSON(w, ae.Status, body)
	})
}

// authorized compares the bearer token in constant time (hashes of equal
// length, so not even the length leaks).
func (h *handler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if !h.hasToken || len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(auth[len(prefix):]))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}

// state is GET /api/state.
type state struct {
	Time     time.Time        `json:"time"`
	LB       any              `json:"lb"`
	Fleet    any              `json:"fleet"`
	Backend  any              `json:"backend"`
	Load     any              `json:"load"`
	Events   []Event          `json:"events"`
	Series   []timeline.Point `json:"series"`
	Controls map[string]bool  `json:"controls"`
	Limits   limits           `json:"limits"`
}

type limits struct {
	MaxRPS     int `json:"max_rps"`
	MaxSeconds int `json:"max_seconds"`
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) error {
	st := state{
		Time:     time.Now().UTC(),
		Events:   []Event{},
		Series:   []timeline.Point{},
		Controls: h.ctl.available(),
		Limits:   limits{MaxRPS: MaxLoadRPS, MaxSeconds: MaxLoadSeconds},
	}
	if h.src.LB != nil {
		st.LB = h.src.LB()
	}
	if h.src.Fleet != nil {
		st.Fleet = h.src.Fleet()
	}
	if h.src.Backend != nil {
		st.Backend = h.src.Backend()
	}
	if h.src.Load != nil {
		st.Load = h.src.Load()
	}
	if h.src.Events != nil {
		if ev := h.src.Events(); len(ev) > 0 {
			st.Events = ev[max(0, len(ev)-MaxEvents):]
		}
	}
	if h.src.Series != nil {
		if s := h.src.Series(SeriesSeconds); s != nil {
			st.Series = s
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("marshal state: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func (h *handler) backend(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.SetBackendMode == nil {
		return errUnavailable
	}
	var req struct {
		Mode *string `json:"mode"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Mode == nil {
		return badRequest("mode: required")
	}
	if err := checkWord("mode", *req.Mode); err != nil {
		return err
	}
	return h.call(w, r, "backend_mode", []any{"mode", *req.Mode}, func(ctx context.Context) error {
		return h.ctl.SetBackendMode(ctx, *req.Mode)
	})
}

func (h *handler) shedding(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.SetShedding == nil {
		return errUnavailable
	}
	var req struct {
		Dependency *string `json:"dependency"`
		Mode       *string `json:"mode"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Dependency == nil || req.Mode == nil {
		return badRequest("dependency and mode: required")
	}
	if err := checkName("dependency", *req.Dependency); err != nil {
		return err
	}
	switch *req.Mode {
	case "auto", "on", "off":
	default:
		return badRequest("mode %q: not auto, on or off", *req.Mode)
	}
	return h.call(w, r, "shedding", []any{"dependency", *req.Dependency, "mode", *req.Mode}, func(ctx context.Context) error {
		return h.ctl.SetShedding(ctx, *req.Dependency, *req.Mode)
	})
}

func (h *handler) drain(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.Drain == nil {
		return errUnavailable
	}
	var req struct {
		Instance *string `json:"instance"`
		Drain    *bool   `json:"drain"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Instance == nil || req.Drain == nil {
		return badRequest("instance and drain: required")
	}
	if err := checkName("instance", *req.Instance); err != nil {
		return err
	}
	return h.call(w, r, "drain", []any{"instance", *req.Instance, "drain", *req.Drain}, func(ctx context.Context) error {
		return h.ctl.Drain(ctx, *req.Instance, *req.Drain)
	})
}

func (h *handler) restart(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.RollingRestart == nil {
		return errUnavailable
	}
	if err := decodeEmpty(w, r); err != nil {
		return err
	}
	return h.call(w, r, "rolling_restart", nil, h.ctl.RollingRestart)
}

func (h *handler) startLoad(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.StartLoad == nil {
		return errUnavailable
	}
	var req struct {
		RPS     *float64 `json:"rps"`
		Seconds *int     `json:"seconds"`
	}
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.RPS == nil || req.Seconds == nil {
		return badRequest("rps and seconds: required")
	}
	rps, secs := *req.RPS, *req.Seconds
	if math.IsNaN(rps) || rps <= 0 || rps > MaxLoadRPS {
		return badRequest("rps %v: must be in (0, %d]", rps, MaxLoadRPS)
	}
	if secs < 1 || secs > MaxLoadSeconds {
		return badRequest("seconds %d: must be in [1, %d]", secs, MaxLoadSeconds)
	}
	return h.call(w, r, "load_start", []any{"rps", rps, "seconds", secs}, func(ctx context.Context) error {
		return h.ctl.StartLoad(ctx, rps, secs)
	})
}

func (h *handler) stopLoad(w http.ResponseWriter, r *http.Request) error {
	if h.ctl.StopLoad == nil {
		return errUnavailable
	}
	if err := decodeEmpty(w, r); err != nil {
		return err
	}
	return h.call(w, r, "load_stop", nil, h.ctl.StopLoad)
}

// call runs a control, logs it (an operator's action is worth a line) and
// answers {"ok":true}.
func (h *handler) call(w http.ResponseWriter, r *http.Request, action string, attrs []any, fn func(context.Context) error) error {
	begin := time.Now()
	err := fn(r.Context())
	attrs = append([]any{"action", action, "remote", r.RemoteAddr, "duration", time.Since(begin)}, attrs...)
	if err != nil {
		status := http.StatusBadGateway
		if r.Context().Err() != nil {
			status = http.StatusServiceUnavailable // the client went away
		}
		return &apiError{Status: status, Code: "control_failed", Err: fmt.Errorf("%s: %w", action, err)}
	}
	h.log.Info("dashboard: control", attrs...)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	return nil
}

// decode reads a JSON object of at most maxBody bytes into v, strictly:
// unknown fields and anything after the object are errors.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return badRequest("body: data after the JSON object")
	}
	return nil
}

// decodeEmpty accepts an empty body or {}.
func decodeEmpty(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return decodeError(err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	return decode(w, r, &struct{}{})
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Detail: fmt.Sprintf("body: over %d bytes", maxBody)}
	case errors.Is(err, io.EOF):
		return badRequest("body: empty, want a JSON object")
	}
	return badRequest("body: %v", err)
}

// checkName accepts 1–128 printable characters.
func checkName(field, s string) error {
	if s == "" || len(s) > maxName || strings.IndexFunc(s, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		return badRequest("%s %q: want 1 to %d printable characters", field, trunc(s), maxName)
	}
	return nil
}

// checkWord accepts 1–32 characters of [a-z0-9_-].
func checkWord(field, s string) error {
	ok := s != "" && len(s) <= 32 && strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-')
	}) < 0
	if !ok {
		return badRequest("%s %q: want 1 to 32 characters of a-z, 0-9, _ and -", field, trunc(s))
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
