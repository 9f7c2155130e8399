// Package backendsim is a controllable stand-in for the backend validation
// API that login instances depend on. Tests, demos and drills use it to make
// the backend answer, hang, fail, crawl or vanish on demand.
//
// A Sim serves these paths on one handler:
//
//	POST   /v1/validate  {"ticket": "..."} → {"valid": true, "account_id": "..."} or {"valid": false}
//	GET    /healthz      {"status": "ok"}
//	GET    /control      the current Config as JSON
//	PUT    /control      change mode, latency or slow_latency at run time
//	GET    /stats        request counts by path and outcome
//	DELETE /stats        the same counts, reset to zero in the same step
//
// The mode (see Mode) applies to every path except /control and /stats, so a
// health probe sees what a login sees. A request takes the mode and latencies
// in force when it arrives; changing the mode later does not release or
// re-route it. In particular requests already hanging stay hung after a
// switch from hang to up, as calls to a real backend that recovers are not
// answered after the fact: a caller's own deadline must end them. Close (or
// the end of Serve) releases every waiting request with a 503.
//
// Requests are counted once, on arrival, under one outcome, so hanging
// requests show up in Stats while they hang. Only three path keys exist
// (PathValidate, PathHealthz and PathOther for everything else), so the
// counts stay bounded whatever paths clients send. /control and /stats are
// not counted. DELETE /stats resets, rather than GET /stats?reset=1, so that
// GET stays free of side effects: a probe or a browser cannot wipe a drill's
// counts.
//
// A Sim is safe for concurrent use. Its handler starts no goroutines: the
// HTTP server that runs it owns the request goroutines, and Close ends their
// waits. Serve runs its server in one goroutine and waits for it before
// returning. Close a Sim when done with it.
//
// The control endpoints have no authentication: a Sim is a test tool and
// should listen on loopback only.
package backendsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/httpapi"
)

// Mode is how a Sim answers requests.
type Mode string

// The modes.
const (
	// ModeUp answers correctly after Config.Latency.
	ModeUp Mode = "up"
	// ModeHang reads the request and never answers until the client gives
	// up or the Sim is closed.
	ModeHang Mode = "hang"
	// ModeError answers 500 at once.
	ModeError Mode = "error"
	// ModeSlow answers correctly after Config.SlowLatency.
	ModeSlow Mode = "slow"
	// ModeDown closes each connection without an answer, as a crashed
	// backend behind its own load balancer does.
	ModeDown Mode = "down"
)

var modes = []Mode{ModeUp, ModeHang, ModeError, ModeSlow, ModeDown}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%q: not one of up, hang, error, slow, down", s)
}

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts only the
// names of the modes.
func (m *Mode) UnmarshalText(b []byte) error {
	p, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// Defaults and limits.
const (
	// DefaultSlowLatency is Config.SlowLatency's default.
	DefaultSlowLatency = 10 * time.Second
	// MaxLatency bounds Config.Latency and Config.SlowLatency.
	MaxLatency = time.Hour
	// MaxBodyBytes bounds a request body. Larger bodies are answered 413.
	MaxBodyBytes = 8 << 10
	// ValidPrefix starts every ticket the Sim accepts.
	ValidPrefix = "valid-"
)

// Config is a Sim's behaviour. It is both the start-up configuration and
// what GET /control reports.
type Config struct {
	// Mode is the behaviour. Default ModeUp.
	Mode Mode `yaml:"mode"`
	// Latency is how long ModeUp waits before it answers. Default 0: at
	// once. At most MaxLatency.
	Latency time.Duration `yaml:"latency"`
	// SlowLatency is how long ModeSlow waits before it answers. Default
	// DefaultSlowLatency (a zero value takes the default). At most
	// MaxLatency.
	SlowLatency time.Duration `yaml:"slow_latency"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = ModeUp
	}
	if c.SlowLatency == 0 {
		c.SlowLatency = DefaultSlowLatency
	}
}

// Validate reports the first problem in c. Zero values, which SetDefaults
// would fill, are valid.
func (c Config) Validate() error {
	if c.Mode != "" {
		if _, err := ParseMode(string(c.Mode)); err != nil {
			return fmt.Errorf("mode: %w", err)
		}
	}
	if err := CheckLatency(c.Latency); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if err := CheckLatency(c.SlowLatency); err != nil {
		return fmt.Errorf("slow_latency: %w", err)
	}
	return nil
}

// CheckLatency reports whether d is a usable latency: from 0 to MaxLatency.
func CheckLatency(d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("%q: must not be negative", d)
	case d > MaxLatency:
		return fmt.Errorf("%q: must be at most %s", d, MaxLatency)
	}
	return nil
}

// Sim is the controllable backend. Create it with New.
type Sim struct {
	logger *slog.Logger

	mu  sync.Mutex // guards cfg
	cfg Config

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: ends every wait

	inFlight atomic.Int64
	stats    counters
	// loopbackOnly: Serve runs on a loopback listener, so /control and
	// /stats answer only a loopback Host.
	loopbackOnly atomic.Bool
}

var _ io.Closer = (*Sim)(nil)

// New returns a Sim with cfg, after SetDefaults and Validate. A nil logger
// discards logs.
func New(cfg Config, logger *slog.Logger) (*Sim, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("backendsim: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Sim{
		logger: logger,
		cfg:    cfg,
		closed: make(chan struct{}),
	}, nil
}

// Config returns the current behaviour.
func (s *Sim) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Mode returns the current mode.
func (s *Sim) Mode() Mode { return s.Config().Mode }

// SetMode switches the mode for requests that arrive from now on.
func (s *Sim) SetMode(m Mode) error {
	_, err := s.update(update{mode: &m})
	return err
}

// SetLatency sets ModeUp's latency for requests that arrive from now on.
func (s *Sim) SetLatency(d time.Duration) error {
	_, err := s.update(update{latency: &d})
	return err
}

// SetSlowLatency sets ModeSlow's latency for requests that arrive from now
// on. Unlike in New, zero is taken as given: slow then answers at once.
func (s *Sim) SetSlowLatency(d time.Duration) error {
	_, err := s.update(update{slowLatency: &d})
	return err
}

// update is a change to Config; nil fields stay as they are.
type update struct {
	mode        *Mode
	latency     *time.Duration
	slowLatency *time.Duration
}

// update applies u all or nothing and returns the resulting Config.
func (s *Sim) update(u update) (Config, error) {
	s.mu.Lock()
	prev := s.cfg
	next := prev
	if u.mode != nil {
		next.Mode = *u.mode
	}
	if u.latency != nil {
		next.Latency = *u.latency
	}
	if u.slowLatency != nil {
		next.SlowLatency = *u.slowLatency
	}
	// Unlike New, take values as given: no defaults at run time, and an
	// empty mode is an error, not ModeUp.
	err := next.Validate()
	if err == nil && next.Mode == "" {
		_, err = ParseMode("")
		err = fmt.Errorf("mode: %w", err)
	}
	if err != nil {
		s.mu.Unlock()
		return prev, err
	}
	s.cfg = next
	s.mu.Unlock()
	if next != prev {
		s.logger.Info("backend-sim behaviour changed",
			"mode", next.Mode, "latency", next.Latency, "slow_latency", next.SlowLatency,
			"prev_mode", prev.Mode)
	}
	return next, nil
}

// Close releases every request that is waiting (hanging, or waiting out a
// latency) with a 503, and makes requests that arrive later answer 503
// instead of waiting. It does not close any listener or server. Close is
// idempotent and always returns nil.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.logger.Info("backend-sim closed: waiting requests released", "in_flight", s.inFlight.Load())
	})
	return nil
}

// Handler returns the HTTP handler that serves every path of the Sim.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/control", "/stats":
		// Unauthenticated by design (a test double); on a loopback
		// listener only a loopback Host may drive it, so a web page that
		// rebinds its name to 127.0.0.1 cannot.
		if s.loopbackOnly.Load() && !httpapi.LoopbackHost(r.Host) {
			httpapi.WriteJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "misdirected_request"})
			return
		}
		if r.URL.Path == "/control" {
			s.serveControl(w, r)
		} else {
			s.serveStats(w, r)
		}
	default:
		s.serveModal(w, r)
	}
}

// serveModal serves every path that follows the mode.
func (s *Sim) serveModal(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)

	path := pathIndexOf(r.URL.Path)
	cfg := s.Config()
	log := s.logger.With("path", r.URL.Path, "method", r.Method, "mode", cfg.Mode)

	switch cfg.Mode {
	case ModeDown:
		s.stats.add(path, outDropped)
		log.Debug("dropping connection")
		drop(w)
		return
	case ModeError:
		s.stats.add(path, outError)
		writeError(w, http.StatusInternalServerError, "backend-sim: mode error")
		return
	case ModeHang:
		// Read the body to its end first: only then does net/http watch
		// the connection and cancel the request's context when the client
		// gives up.
		if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
			s.stats.add(path, outBadRequest)
			bodyError(err).write(w)
			return
		}
		s.stats.add(path, outHung)
		log.Debug("hanging")
		s.finish(w, r, log, answer{}, 0, true)
		return
	}

	a := s.answerFor(path, w, r)
	delay, outcome := cfg.Latency, a.outcome
	if cfg.Mode == ModeSlow {
		delay, outcome = cfg.SlowLatency, outSlow
	}
	s.stats.add(path, outcome)
	s.finish(w, r, log, a, delay, false)
}

// finish waits delay (or, with forever, until released) and then writes a.
func (s *Sim) finish(w http.ResponseWriter, r *http.Request, log *slog.Logger, a answer, delay time.Duration, forever bool) {
	if forever || delay > 0 {
		var fire <-chan time.Time
		if !forever {
			t := time.NewTimer(delay)
			defer t.Stop()
			fire = t.C
		}
		select {
		case <-fire:
		case <-r.Context().Done():
			log.Debug("client gave up", "err", context.Cause(r.Context()))
			return
		case <-s.closed:
			log.Debug("released by close")
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, "backend-sim closed")
			return
		}
	}
	a.write(w)
}

// drop closes the connection under w without writing an answer.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a wrapper that cannot hijack: make net/http abort
		// the connection or stream without an answer.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// answer is a response computed on arrival and written after the delay.
type answer struct {
	status  int
	body    any
	allow   string // Allow header for 405
	outcome outcome
}

func (a answer) write(w http.ResponseWriter) {
	if a.allow != "" {
		w.Header().Set("Allow", a.allow)
	}
	writeJSON(w, a.status, a.body)
}

// answerFor reads and judges the request as a healthy backend would.
func (s *Sim) answerFor(path pathIndex, w http.ResponseWriter, r *http.Request) answer {
	switch path {
	case pathValidate:
		if r.Method != http.MethodPost {
			return answer{status: http.StatusMethodNotAllowed, body: errorBody{"use POST"}, allow: http.MethodPost, outcome: outBadRequest}
		}
		ticket, err := decodeValidate(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			return bodyError(err)
		}
		if strings.HasPrefix(ticket, ValidPrefix) {
			return answer{status: http.StatusOK, body: ValidateResponse{Valid: true, AccountID: AccountID(ticket)}, outcome: outValid}
		}
		return answer{status: http.StatusOK, body: ValidateResponse{Valid: false}, outcome: outInvalid}
	case pathHealthz:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return answer{status: http.StatusMethodNotAllowed, body: errorBody{"use GET"}, allow: "GET, HEAD", outcome: outBadRequest}
		}
		return answer{status: http.StatusOK, body: healthBody{Status: "ok"}, outcome: outOK}
	default:
		return answer{status: http.StatusNotFound, body: errorBody{"not found"}, outcome: outNotFound}
	}
}

// bodyError maps a request-body error to a 413 or a 400.
func bodyError(err error) answer {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return answer{status: http.StatusRequestEntityTooLarge, body: errorBody{fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}, outcome: outBadRequest}
	}
	return answer{status: http.StatusBadRequest, body: errorBody{err.Error()}, outcome: outBadRequest}
}

func (s *Sim) serveControl(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, controlOf(s.Config()))
	case http.MethodPut:
		u, err := decodeControl(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			bodyError(err).write(w)
			return
		}
		cfg, err := s.update(u)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, controlOf(cfg))
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		writeError(w, http.StatusMethodNotAllowed, "use GET or PUT")
	}
}

func (s *Sim) serveStats(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, s.Stats())
	case http.MethodDelete:
		writeJSON(w, http.StatusOK, s.ResetStats())
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "use GET, or DELETE to reset")
	}
}

// Server timeouts used by Serve.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 60 * time.Second
	shutdownTimeout   = 5 * time.Second
	maxHeaderBytes    = 16 << 10
)

// Serve serves the Sim on ln until ctx is done, then closes the Sim (which
// releases waiting requests) and shuts the server down gracefully. It closes
// ln. It returns nil after a shutdown that ctx asked for.
//
// The server bounds header and body reads and idle connections, but sets no
// write timeout: answering late, or never, is what ModeSlow and ModeHang are
// for.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	addr := ln.Addr().String()
	s.loopbackOnly.Store(httpapi.IsLoopback(ln.Addr()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // ends when Shutdown or Close is called, or ln fails

	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve %s: %w", addr, err)
	case <-ctx.Done():
	}

	s.logger.Info("shutting down", "addr", addr)
	s.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutdown %s: %w", addr, err), srv.Close())
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve %s: %w", addr, serr))
	}
	s.logger.Info("stopped", "addr", addr, "err", err)
	return err
}
