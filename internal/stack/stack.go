// Package stack runs the whole spillway system on one machine: a
// backend-sim, a fleet of login instances and the load balancer, with the
// dashboard and admin API on the admin address. It is what `spillway up`
// runs. With Options.DataPlane DataPlaneHAProxy, an HAProxy process
// driven by the controller carries the logins instead of the balancer's
// proxy (haproxy.go).
//
// Build a Stack with New from a validated config.File and call Run once. Run
// owns every goroutine and process it starts (the fleet's login processes
// and HAProxy included) and stops them all when its context is done. Listeners are
// bound in New, so a busy port is reported before anything starts.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/dashboard"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// Flags names the command-line flag behind each address, for errors.
type Flags struct {
	Listen, AdminListen, BackendListen string
}

// Options are a Stack's collaborators.
type Options struct {
	// Logger receives the stack's logs. Default: discard.
	Logger *slog.Logger
	// InstanceOutput receives the login processes' output. Default:
	// discard.
	InstanceOutput io.Writer
	// AdminToken guards every change through the admin API and the
	// dashboard. Required.
	AdminToken string
	// Flags name the flags behind the addresses, for a busy-port error.
	Flags Flags
	// DataPlane is what carries the logins: DataPlaneLB (also "") or
	// DataPlaneHAProxy, which needs lb.shedding.recovery "window".
	DataPlane string
	// HAProxy is the haproxy binary for DataPlaneHAProxy. Default:
	// haproxy on PATH (none: ErrNoHAProxy).
	HAProxy string
}

// Stack is the running system. See the package comment.
type Stack struct {
	cfg   config.File
	log   *slog.Logger
	token string

	lbLn, adminLn, simLn net.Listener // lbLn nil with HAProxy, which binds lbAddr
	lbAddr, backendURL   string
	hap                  *haproxyPlane // nil: the balancer's own proxy

	sim      *backendsim.Sim // nil with an external backend
	fleet    *fleet.Fleet
	balancer *lb.Balancer
	rec      *timeline.Recorder
	load     *loadgen.Controller
	events   *eventLog
	dir      string // temporary files: the instances' configuration

	runCtx     context.Context // Run's, for work the admin API starts
	restarting atomic.Bool     // a rolling restart is under way
	bgWG       sync.WaitGroup  // goroutines the admin API started
}

// ErrAddrInUse reports a listen address that is taken.
var ErrAddrInUse = errors.New("address already in use")

func listen(addr, what, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s %s: %w: something else listens there; choose another with %s", what, addr, ErrAddrInUse, flag)
		}
		return nil, fmt.Errorf("%s %s (%s): %w", what, addr, flag, err)
	}
	return ln, nil
}

// New binds the listeners and builds every part from cfg, a spillway file
// (its login:, lb:, fleet: and up: sections) that has passed Validate. On
// error nothing is left running.
func New(cfg config.File, opts Options) (_ *Stack, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AdminToken == "" {
		return nil, errors.New("stack: no admin token")
	}
	if opts.Flags == (Flags{}) {
		opts.Flags = Flags{Listen: "--listen", AdminListen: "--admin-listen", BackendListen: "--backend-listen"}
	}
	s := &Stack{cfg: cfg, log: opts.Logger, token: opts.AdminToken, events: newEventLog(200)}
	defer func() {
		if err != nil {
			s.closeListeners()
			if s.dir != "" {
				os.RemoveAll(s.dir)
			}
		}
	}()
	if s.lbLn, err = listen(cfg.LB.Listen, "load balancer", opts.Flags.Listen); err != nil {
		return nil, err
	}
	s.lbAddr = s.lbLn.Addr().String()
	switch opts.DataPlane {
	case "", DataPlaneLB:
	case DataPlaneHAProxy:
		// HAProxy binds the address: it was free a moment ago, and a
		// port 0 is now a port.
		s.lbLn.Close()
		s.lbLn = nil
	default:
		return nil, fmt.Errorf("data plane %q: want %s or %s", opts.DataPlane, DataPlaneLB, DataPlaneHAProxy)
	}
	if s.adminLn, err = listen(cfg.LB.AdminListen, "admin and dashboard", opts.Flags.AdminListen); err != nil {
		return nil, err
	}

	// The backend.
	s.backendURL = cfg.Up.BackendURL
	if s.backendURL == "" {
		if s.simLn, err = listen(cfg.Up.BackendListen, "backend-sim", opts.Flags.BackendListen); err != nil {
			return nil, err
		}
		s.sim, err = backendsim.New(backendsim.Config{Mode: backendsim.ModeUp, Latency: cfg.Up.BackendLatency}, opts.Logger.With("component", "backend-sim"))
		if err != nil {
			return nil, err
		}
		s.backendURL = "http://" + s.simLn.Addr().String()
	}

	// The instances' configuration: the login section with the backend
	// filled in, in a file the fleet passes to each `spillway login`.
	lc := cfg.Login
	lc.Backend.URL = s.backendURL
	lc.Backend.ProbeURL = strings.TrimSuffix(s.backendURL, "/") + "/healthz"
	if s.dir, err = os.MkdirTemp("", "spillway-up-"); err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	loginFile := filepath.Join(s.dir, "login.yaml")
	data, err := yaml.Marshal(map[string]any{"login": lc})
	if err != nil {
		return nil, fmt.Errorf("encode instance configuration: %w", err)
	}
	if err := os.WriteFile(loginFile, data, 0o600); err != nil {
		return nil, fmt.Errorf("write instance configuration: %w", err)
	}

	// One ephemeral signing key for the whole fleet, so a token from one
	// instance verifies on every other. It reaches the instances through
	// their environment, never a command line or a file.
	key, err := login.GenerateKey()
	if err != nil {
		return nil, err
	}
	pemKey, err := login.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	fc := cfg.Fleet
	fc.Args = append([]string{"--config", loginFile}, fc.Args...)
	reg := prometheus.NewRegistry()
	s.fleet, err = fleet.New(fc, fleet.Options{
		Logger:     opts.Logger.With("component", "fleet"),
		Registerer: reg,
		Output:     opts.InstanceOutput,
		Env:        []string{lc.Token.KeyEnv + "=" + string(pemKey)},
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}

	s.rec = timeline.New(330, nil)
	lbc := cfg.LB
	lbc.Instances = nil // the fleet supplies them
	// No drain delay: nothing routes to a demo's balancer by its /readyz,
	// so Ctrl-C stops at once; requests in flight still get
	// server.shutdown_timeout.
	lbc.Server.DrainDelay = 0
	lopts := lb.Options{
		Logger:     opts.Logger.With("component", "lb"),
		Registry:   reg,
		AdminToken: opts.AdminToken,
		Discovery:  fleetDiscovery{s.fleet},
		Event:      s.events.add,
		Middleware: s.record,
	}
	loadRec := (*timeline.Recorder)(nil) // the balancer's middleware records
	if s.lbLn == nil {
		// HAProxy carries the logins: the balancer sees none, so the
		// dashboard's chart shows the load button's logins as their
		// client saw them.
		feed := lb.NewPlanFeed()
		lopts.DataPlane, lopts.Middleware, loadRec = feed, nil, s.rec
		lbc.Listen = s.lbAddr
		if s.hap, err = newHAProxyPlane(opts.HAProxy, s.dir, &lbc, feed, reg, opts.Logger, opts.InstanceOutput); err != nil {
			return nil, err
		}
	}
	s.balancer, err = lb.New(lbc, lopts)
	if err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	s.load, err = loadgen.NewController(loadgen.Config{
		URL:     "http://" + s.lbAddr + "/v1/login",
		Method:  http.MethodPost,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    demoTicket,
		Timeout: 5 * time.Second,
	}, loadRec)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// demoTicket makes the load button's logins: nine valid tickets in ten,
// so the chart shows some 401s too.
func demoTicket(i int) []byte {
	if i%10 == 9 {
		return fmt.Appendf(nil, `{"ticket":"forged-%d"}`, i)
	}
	return fmt.Appendf(nil, `{"ticket":"valid-user-%d"}`, i%1000)
}

// LBAddr, AdminAddr and BackendURL are where the parts listen.
func (s *Stack) LBAddr() string     { return s.lbAddr }
func (s *Stack) AdminAddr() string  { return s.adminLn.Addr().String() }
func (s *Stack) BackendURL() string { return s.backendURL }

// Balancer returns the load balancer, for tests.
func (s *Stack) Balancer() *lb.Balancer { return s.balancer }

// Fleet returns the fleet, for tests.
func (s *Stack) Fleet() *fleet.Fleet { return s.fleet }

func (s *Stack) closeListeners() {
	for _, ln := range []net.Listener{s.lbLn, s.adminLn, s.simLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Run runs every part until ctx is done, then stops them all: the load
// balancer drains, the fleet stops its instances, the backend stops last.
func (s *Stack) Run(ctx context.Context) error {
	defer os.RemoveAll(s.dir)

	// The backend outlives the fleet and the balancer, so that instances
	// finishing their last requests still reach it.
	bctx, stopBackend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackend()
	backendDone := make(chan error, 1)
	if s.sim != nil {
		go func() { backendDone <- s.sim.Serve(bctx, s.simLn) }()
	} else {
		backendDone <- nil
	}

	g, gctx := errgroup.WithContext(ctx)
	s.runCtx = gctx
	defer s.bgWG.Wait()
	g.Go(func() error { return s.fleet.Run(gctx) })
	if s.hap != nil {
		g.Go(func() error { return s.balancer.Run(gctx, nil, nil) })
		g.Go(func() error { return s.hap.Run(gctx) })
	} else {
		g.Go(func() error { return s.balancer.Run(gctx, s.lbLn, nil) })
	}
	g.Go(func() error { return s.load.Run(gctx) })
	g.Go(func() error { return s.serveAdmin(gctx) })
	err := g.Wait()
	stopBackend()
	if berr := <-backendDone; err == nil {
		err = berr
	}
	return err
}

// serveAdmin serves the dashboard and the admin API on the admin address.
func (s *Stack) serveAdmin(ctx context.Context) error {
	srv := httpapi.NewServer(s.adminHandler(), s.log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.adminLn) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// adminHandler joins the load balancer's admin API, the fleet's rolling
// restart and the dashboard on one listener. On loopback, reads need no
// token and only a loopback Host is answered (DNS rebinding); elsewhere
// reads need the token too, the dashboard's state included.
func (s *Stack) adminHandler() http.Handler {
	onLoopback := httpapi.IsLoopback(s.adminLn.Addr())
	admin := s.balancer.AdminHandler(!onLoopback)
	mux := http.NewServeMux()
	for _, p := range []string{"/livez", "/readyz", "/status", "/metrics", "/instances/", "/shedding/"} {
		mux.Handle(p, admin)
	}
	token := httpapi.NewToken(s.token)
	api := httpapi.Adapter{Log: s.log, Message: "admin request failed"}
	mux.Handle("POST /fleet/restart", api.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		if !token.Authorized(r) {
			return httpapi.Unauthorized(w, "spillway")
		}
		s.startRollingRestart()
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"restart": "started"})
		return nil
	}))
	mux.Handle("/", dashboard.New(s.sources(), s.controls(), dashboard.Options{
		Token: s.token, ReadsNeedToken: !onLoopback, Logger: s.log.With("component", "dashboard"),
	}))
	return httpapi.GuardLoopback(onLoopback, mux)
}

// startRollingRestart starts a rolling restart on a goroutine that Run
// waits for; it ends when the restart does or Run's context is done.
func (s *Stack) startRollingRestart() {
	if !s.restarting.CompareAndSwap(false, true) {
		return
	}
	s.events.add("rolling_restart", "rolling restart started: one instance at a time, each replacement ready before the next")
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		defer s.restarting.Store(false)
		if err := s.fleet.RollingRestart(s.runCtx); err != nil {
			s.events.add("rolling_restart", "rolling restart stopped: "+err.Error())
			return
		}
		s.events.add("rolling_restart", "rolling restart done")
	}()
}

// fleetDiscovery adapts the fleet to the balancer's Discovery.
type fleetDiscovery struct{ f *fleet.Fleet }

func (d fleetDiscovery) Watch(ctx context.Context, update func([]lb.Instance)) error {
	return d.f.Watch(ctx, func(insts []fleet.Announcement) {
		out := make([]lb.Instance, len(insts))
		for i, in := range insts {
			out[i] = lb.Instance{Service: in.Service, Health: in.Health}
		}
		update(out)
	})
}
