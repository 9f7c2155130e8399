// Package backendsim is a controllable stand-in for the backend validation
// API that login instances depend on. Tests, demos and drills use it to make
// the backend answer, hang, fail, crawl or vanish on demand.
//
// A Sim serves these paths on one handler:
//
//	POST   /v1/validate  {"ticket": "..."} → {"valid": true, "account_id": "..."} or {"valid": false}
//	GET    /healthz      {"status": "ok"}
//	GET    /control      the current Config as JSON
//	PUT    /control      change mode, latencies or the capacity model at run time
//	GET    /stats        request counts by path and outcome, the worker pool per second
//	DELETE /stats        the same figures, reset in the same step
//
// The mode (see Mode) applies to every path except /control and /stats, so a
// health probe sees what a login sees. A request takes the mode and latencies
// in force when its handling starts; changing the mode later does not
// release or re-route it. In particular requests already hanging stay hung
// after a switch from hang to up, as calls to a real backend that recovers
// are not answered after the fact: a caller's own deadline must end them.
// Close (or the end of Serve) releases every waiting request with a 503.
//
// # Capacity
//
// Validate calls are served by a pool of Config.Capacity workers, as in a
// thread-pool server (0, the default, is no limit). A call that finds every
// worker busy waits in a FIFO queue, so latency grows with a surge; it is
// answered 503 at once when Config.QueueSize calls already wait, and 503
// after Config.QueueTimeout without a worker. Its handling starts when a
// worker takes it: only then are the mode and latencies read. A worker is
// held for the whole of the call: the latency of up or slow, and a hang until
// the caller gives up (the Sim stops work whose caller has gone, as a Go
// server that passes the request's context down does, so a caller that gives
// up also frees its place in the queue). Mode down drops calls on arrival,
// without queueing: a crashed backend has no pool. Health checks and other
// paths take no worker, as a backend's health endpoint usually does not. A
// call whose body cannot be read (too large, broken) takes none either.
//
// Requests are counted once, under one outcome, when their handling starts
// (on arrival, or when a worker takes a queued call) or when they leave the
// queue without a worker, so hanging requests show up in Stats while they
// hang. Only three path keys exist (PathValidate, PathHealthz and PathOther
// for everything else), so the counts stay bounded whatever paths clients
// send. /control and /stats are not counted. DELETE /stats resets, rather
// than GET /stats?reset=1, so that GET stays free of side effects: a probe
// or a browser cannot wipe a drill's counts. docs/BACKEND-SIM.md describes
// the wire format for users.
//
// A Sim is safe for concurrent use. Its handler starts no goroutines: the
// HTTP server that runs it owns the request goroutines, which also wait in
// the queue, and Close ends their waits. Queue timeouts are runtime timers
// and the per-second figures follow time.Now, so tests run a Sim in
// testing/synctest. Serve runs its server in one goroutine and waits for it
// before returning. Close a Sim when done with it.
//
// The control endpoints have no authentication: a Sim is a test tool and
// should listen on loopback only.
package backendsim

import (
	"bytes"
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

// Sim is the controllable backend. Create it with New.
type Sim struct {
	logger *slog.Logger

	mu  sync.Mutex // guards cfg
	cfg Config

	closeOnce sync.Once
	closed    chan struct{} // closed by Close: ends every wait

	inFlight atomic.Int64
	stats    counters
	pool     pool // its limits follow cfg
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
	s := &Sim{
		logger: logger,
		cfg:    cfg,
		closed: make(chan struct{}),
	}
	s.pool.setLimits(cfg.Capacity, cfg.QueueSize, cfg.QueueTimeout)
	return s, nil
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

// SetCapacity sets how many validate calls are worked on at once (0: no
// limit). Raising it hands free workers to the oldest waiting calls at
// once; lowering it takes no worker away, it only makes new calls wait.
func (s *Sim) SetCapacity(n int) error {
	_, err := s.update(update{capacity: &n})
	return err
}

// SetQueueSize bounds the queue of calls waiting for a worker (0: no
// bound), for calls that arrive from now on.
func (s *Sim) SetQueueSize(n int) error {
	_, err := s.update(update{queueSize: &n})
	return err
}

// SetQueueTimeout sets how long a call that arrives from now on may wait
// for a worker (0: as long as its caller waits).
func (s *Sim) SetQueueTimeout(d time.Duration) error {
	_, err := s.update(update{queueTimeout: &d})
	return err
}

// update is a change to Config; nil fields stay as they are.
type update struct {
	mode         *Mode
	latency      *time.Duration
	slowLatency  *time.Duration
	capacity     *int
	queueSize    *int
	queueTimeout *time.Duration
}

// applyTo returns c with u's fields set, as they are: nothing is
// defaulted or checked.
func (u update) applyTo(c Config) Config {
	if u.mode != nil {
		c.Mode = *u.mode
	}
	if u.latency != nil {
		c.Latency = *u.latency
	}
	if u.slowLatency != nil {
		c.SlowLatency = *u.slowLatency
	}
	if u.capacity != nil {
		c.Capacity = *u.capacity
	}
	if u.queueSize != nil {
		c.QueueSize = *u.queueSize
	}
	if u.queueTimeout != nil {
		c.QueueTimeout = *u.queueTimeout
	}
	return c
}

// update applies u all or nothing and returns the resulting Config.
func (s *Sim) update(u update) (Config, error) {
	s.mu.Lock()
	prev := s.cfg
	next := u.applyTo(prev)
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
	// Under mu, so that concurrent updates reach the pool in the order
	// they reached cfg.
	s.pool.setLimits(next.Capacity, next.QueueSize, next.QueueTimeout)
	s.mu.Unlock()
	if next != prev {
		s.logger.Info("backend-sim behaviour changed",
			"mode", next.Mode, "latency", next.Latency, "slow_latency", next.SlowLatency,
			"capacity", next.Capacity, "queue_size", next.QueueSize, "queue_timeout", next.QueueTimeout,
			"prev_mode", prev.Mode)
	}
	return next, nil
}

// Close releases every request that is waiting (hanging, waiting out a
// latency, or waiting for a worker) with a 503, and makes requests that
// arrive later answer 503 instead of waiting. It does not close any listener
// or server. Close is idempotent and always returns nil.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.pool.close()
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
	log := s.logger.With("path", r.URL.Path, "method", r.Method)

	// A crashed backend has no pool to wait in; a failing one answers the
	// other paths without reading a body.
	if cfg.Mode == ModeDown || (cfg.Mode == ModeError && path != pathValidate) {
		s.carryOut(w, r, log, path, planFor(cfg, path, r.Method, nil, nil))
		return
	}
	// Read the body to its end first: only then does net/http watch the
	// connection and cancel the request's context when the client gives
	// up, which ends a hang or a wait in the queue.
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if path == pathValidate && readErr == nil {
		release, err := s.pool.acquire(r.Context())
		if err != nil {
			s.turnAway(w, log, err)
			return
		}
		defer release()
		cfg = s.Config() // the mode in force when the worker takes the call
	}
	s.carryOut(w, r, log, path, planFor(cfg, path, r.Method, body, readErr))
}

// plan is what a request gets: decided by planFor from the mode and the
// request alone, then carried out.
type plan struct {
	answer
	mode  Mode
	delay time.Duration // before the answer is written
	hang  bool          // no answer: wait until released
	drop  bool          // no answer: close the connection
}

// planFor decides how cfg's mode answers a request to path with method and
// body (or the error that reading the body ended with).
func planFor(cfg Config, path pathIndex, method string, body []byte, readErr error) plan {
	switch cfg.Mode {
	case ModeDown:
		return plan{mode: cfg.Mode, drop: true, answer: answer{outcome: outDropped}}
	case ModeError:
		return plan{mode: cfg.Mode, answer: answer{status: http.StatusInternalServerError, body: errorBody{"backend-sim: mode error"}, outcome: outError}}
	case ModeHang:
		if readErr != nil {
			return plan{mode: cfg.Mode, answer: bodyError(readErr)}
		}
		return plan{mode: cfg.Mode, hang: true, answer: answer{outcome: outHung}}
	case ModeSlow:
		a := judge(path, method, body, readErr)
		a.outcome = outSlow
		return plan{mode: cfg.Mode, answer: a, delay: cfg.SlowLatency}
	}
	return plan{mode: cfg.Mode, answer: judge(path, method, body, readErr), delay: cfg.Latency}
}

// carryOut counts p and carries it out.
func (s *Sim) carryOut(w http.ResponseWriter, r *http.Request, log *slog.Logger, path pathIndex, p plan) {
	s.stats.add(path, p.outcome)
	log = log.With("mode", p.mode)
	switch {
	case p.drop:
		log.Debug("dropping connection")
		drop(w)
	case p.hang:
		log.Debug("hanging")
		s.finish(w, r, log, answer{}, 0, true)
	default:
		s.finish(w, r, log, p.answer, p.delay, false)
	}
}

// turnAway counts and answers a validate call that got no worker. A plain
// 503 without Retry-After: a backend is not spillway.
func (s *Sim) turnAway(w http.ResponseWriter, log *slog.Logger, err error) {
	switch {
	case errors.Is(err, errQueueFull):
		s.stats.add(pathValidate, outQueueFull)
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, errQueueTimeout):
		s.stats.add(pathValidate, outQueueTimeout)
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, errPoolClosed):
		s.stats.add(pathValidate, outAbandoned)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		s.stats.add(pathValidate, outAbandoned)
		log.Debug("client gave up while queued", "err", err)
	}
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

// judge answers a request as a healthy backend would.
func judge(path pathIndex, method string, body []byte, readErr error) answer {
	switch path {
	case pathValidate:
		if method != http.MethodPost {
			return answer{status: http.StatusMethodNotAllowed, body: errorBody{"use POST"}, allow: http.MethodPost, outcome: outBadRequest}
		}
		if readErr != nil {
			return bodyError(readErr)
		}
		ticket, err := decodeValidate(bytes.NewReader(body))
		if err != nil {
			return bodyError(err)
		}
		if strings.HasPrefix(ticket, ValidPrefix) {
			return answer{status: http.StatusOK, body: ValidateResponse{Valid: true, AccountID: AccountID(ticket)}, outcome: outValid}
		}
		return answer{status: http.StatusOK, body: ValidateResponse{Valid: false}, outcome: outInvalid}
	case pathHealthz:
		if method != http.MethodGet && method != http.MethodHead {
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
