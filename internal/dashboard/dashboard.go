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
//	GET    /api/state       everything the page shows (the token only with Options.ReadsNeedToken)
//	POST   /api/backend     {"mode":"hang"}                         Controls.SetBackendMode
//	POST   /api/shedding    {"dependency":"backend","mode":"on"}     Controls.SetShedding
//	POST   /api/drain       {"instance":"…","drain":true}            Controls.Drain
//	POST   /api/restart     (empty body or {})                       Controls.RollingRestart
//	POST   /api/load        {"rps":50,"seconds":120}                 Controls.StartLoad
//	DELETE /api/load        (empty body or {})                       Controls.StopLoad
//
// Every POST and DELETE needs "Authorization: Bearer TOKEN" (compared in
// constant time); an empty token refuses them all. On a listener that
// other machines can reach, reads need it too (Options.ReadsNeedToken).
// Bodies are limited to 4 KiB and decoded strictly: unknown fields,
// trailing data and missing required fields are 400. The page reads the
// token from its URL fragment (http://127.0.0.1:8081/#token=…, which never
// reaches the server) or an input box, keeps it in sessionStorage and
// sends it with every request.
//
// GET /api/state is built at most once per Options.StateMaxAge and shared
// by every request meanwhile, so open pages, or a flood, cost the Sources
// a few calls a second, not one per request.
//
// Stable hooks for browser tests: #btn-break, #btn-restore, #btn-restart,
// #btn-load-start, #btn-load-stop; rows of #instances with data-state (the
// LB's state) and data-display (starting, slow start, ready, ejected, ...);
// #dep-NAME with data-state (up|down|degraded|unknown, the instances' view)
// and data-shedding (ok|shedding|recovering, the edge's) and data-origin
// (the LB an override came from, "local", or empty for auto), its
// [data-testid=decided-NAME] line saying who decides; #pill-etcd with
// data-state (connected|unreachable); [data-kpi=KEY] with data-value. Names in ids have characters outside [A-Za-z0-9_-]
// replaced by "_".
//
// The handler is safe for concurrent use, starts no goroutines and needs
// no closing. Sources and Controls are called from request goroutines,
// concurrently, and must be safe for that.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/spillway-dev/spillway/internal/httpapi"
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
	// passed through as JSON; the page reads instances (and where a
	// drain came from), dependencies (and where an override came from),
	// panic, routing, capacity (and the share of several LBs), discovery
	// (etcd connected or not) and shared from it and shows "—" for what
	// is missing.
	LB func() any
	// Fleet returns the fleet's status: a list of instance statuses, or an
	// object with "instances", "frozen" and "schedule" (the target and the
	// window that sets it). Passed through as JSON; the
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
// gets 502 "control_failed", unless the error is (or wraps) an
// *httpapi.Error, which is answered as it says (404 unknown_instance,
// 400 for a value the control refuses).
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

// Options configure the handler. The zero value is usable (and refuses
// every change: it has no token).
type Options struct {
	// Token guards every change (and every read with ReadsNeedToken);
	// empty refuses them all.
	Token string
	// ReadsNeedToken makes GET /api/state need the token too: set it when
	// the listener is not on loopback.
	ReadsNeedToken bool
	// StateMaxAge is how long a built /api/state may be served again.
	// Default 250ms (the page polls once a second).
	StateMaxAge time.Duration
	// Logger receives the controls operators use and failed requests.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

type handler struct {
	src   Sources
	ctl   Controls
	opts  Options
	token httpapi.Token
	api   httpapi.Adapter
	log   *slog.Logger
	mux   *http.ServeMux

	stateMu   sync.Mutex
	stateBody []byte
	stateAt   time.Time
}

var _ http.Handler = (*handler)(nil)

// New returns the dashboard's handler.
func New(src Sources, ctl Controls, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StateMaxAge <= 0 {
		opts.StateMaxAge = 250 * time.Millisecond
	}
	h := &handler{src: src, ctl: ctl, opts: opts, log: opts.Logger, token: httpapi.NewToken(opts.Token),
		api: httpapi.Adapter{Log: opts.Logger, Message: "dashboard: request failed"}}

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
		change       bool   // needs the token
		control      string // the control it calls, by its name in available(); "" for none
	}{
		{"GET", "/api/state", h.state, opts.ReadsNeedToken, ""},
		{"POST", "/api/backend", h.backend, true, "backend"},
		{"POST", "/api/shedding", h.shedding, true, "shedding"},
		{"POST", "/api/drain", h.drain, true, "drain"},
		{"POST", "/api/restart", h.restart, true, "restart"},
		{"POST", "/api/load", h.startLoad, true, "load_start"},
		{"DELETE", "/api/load", h.stopLoad, true, "load_stop"},
	}
	available := ctl.available()
	allow := map[string][]string{}
	for _, rt := range routes {
		fn := rt.fn
		if rt.control != "" && !available[rt.control] {
			// After the token check, as any other answer.
			fn = func(http.ResponseWriter, *http.Request) error { return errUnavailable }
		}
		mux.Handle(rt.method+" "+rt.path, h.wrap(fn, rt.change))
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	for path, methods := range allow {
		allowed := strings.Join(methods, ", ")
		mux.Handle(path, h.wrap(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allowed)
			return &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed"}
		}, false))
	}
	mux.Handle("/api/", h.wrap(func(http.ResponseWriter, *http.Request) error {
		return &httpapi.Error{Status: http.StatusNotFound, Code: "not_found"}
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
func badRequest(format string, args ...any) *httpapi.Error {
	return httpapi.BadRequest(format, args...)
}

var errUnavailable = &httpapi.Error{Status: http.StatusNotFound, Code: "control_unavailable"}

type apiFunc = httpapi.HandlerFunc

// wrap checks the token when needed and renders a handler's error as JSON,
// joined to the log line by a request id.
func (h *handler) wrap(fn apiFunc, needToken bool) http.Handler {
	return h.api.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		if needToken && !h.token.Authorized(r) {
			return httpapi.Unauthorized(w, "spillway-dashboard")
		}
		return fn(w, r)
	})
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
	b, err := h.stateJSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
	return nil
}

// stateJSON returns the state document, built anew when the last one is
// older than StateMaxAge. Concurrent callers wait for one build.
func (h *handler) stateJSON() ([]byte, error) {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	now := h.opts.Now()
	if h.stateBody != nil && now.Sub(h.stateAt) < h.opts.StateMaxAge && !now.Before(h.stateAt) {
		return h.stateBody, nil
	}
	st := state{
		Time:     now.UTC(),
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
		return nil, fmt.Errorf("marshal state: %w", err)
	}
	h.stateBody, h.stateAt = append(b, '\n'), now
	return h.stateBody, nil
}

func (h *handler) backend(w http.ResponseWriter, r *http.Request) error {
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
	if err := decodeEmpty(w, r); err != nil {
		return err
	}
	return h.call(w, r, "rolling_restart", nil, h.ctl.RollingRestart)
}

func (h *handler) startLoad(w http.ResponseWriter, r *http.Request) error {
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
		if r.Context().Err() != nil {
			return httpapi.ErrClientGone
		}
		var ae *httpapi.Error
		if errors.As(err, &ae) {
			return ae // the control says what is wrong: 404, 400
		}
		return &httpapi.Error{Status: http.StatusBadGateway, Code: "control_failed", Err: fmt.Errorf("%s: %w", action, err)}
	}
	h.log.Info("dashboard: control", attrs...)
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true})
	return nil
}

// decode reads a JSON object of at most maxBody bytes into v, strictly:
// unknown fields and anything after the object are errors.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return httpapi.DecodeJSON(w, r, maxBody, v)
}

// decodeEmpty accepts an empty body or {}.
func decodeEmpty(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Detail: fmt.Sprintf("body: over %d bytes", maxBody)}
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	r.Body = io.NopCloser(strings.NewReader(string(b)))
	return decode(w, r, &struct{}{})
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
