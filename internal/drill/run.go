package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/procgroup"
)

// Options configure Run.
type Options struct {
	// Scenario is what to run. Default: Default(), the incident.
	Scenario *Scenario
	// Profiles to run, in order. Default: Profiles (both).
	Profiles []Profile
	// OutDir receives the report. Required.
	OutDir string
	// TimeScale compresses (below 1) or stretches the scenario's schedule
	// and tempo (Scenario.Scaled). Default 1.
	TimeScale float64
	// Binary is the spillway executable to run the system with. Default:
	// this program (os.Executable).
	Binary string
	// DataPlane is `spillway up --data-plane`: "lb" (also "") or
	// "haproxy", HAProxy driven by the controller. With "haproxy" every
	// profile's shedding recovers by "window" over RecoveryWindowHAProxy
	// scaled by the tempo, as `spillway up --data-plane haproxy` requires.
	DataPlane string
	// Progress receives one line per phase and a live line per second.
	// Nil discards them.
	Progress io.Writer
}

// The data planes of Options.DataPlane.
const (
	DataPlaneLB      = "lb"
	DataPlaneHAProxy = "haproxy"
)

// RecoveryWindowHAProxy is the recovery window of a drill with HAProxy in
// front, before the tempo: `spillway controller`'s default.
const RecoveryWindowHAProxy = time.Second

// sampleEvery is how often the drill samples the system's state.
const sampleEvery = 250 * time.Millisecond

// Run runs the scenario once per profile, each on fresh processes (a
// backend-sim and a `spillway up`, whose children are the login
// instances), and writes the report to OutDir. Every process it starts is
// stopped before it returns, also when ctx is canceled (Ctrl-C); on Linux
// they die with the drill even if it is killed.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Scenario == nil {
		opts.Scenario = Default()
	}
	if len(opts.Profiles) == 0 {
		opts.Profiles = Profiles
	}
	if opts.TimeScale == 0 {
		opts.TimeScale = 1
	}
	if !(opts.TimeScale > 0 && opts.TimeScale <= 10) {
		return nil, fmt.Errorf("time scale %v: must be in (0, 10]", opts.TimeScale)
	}
	if opts.OutDir == "" {
		return nil, errors.New("drill: no output directory")
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	switch opts.DataPlane {
	case "":
		opts.DataPlane = DataPlaneLB
	case DataPlaneLB, DataPlaneHAProxy:
	default:
		return nil, fmt.Errorf("data plane %q: want %s or %s", opts.DataPlane, DataPlaneLB, DataPlaneHAProxy)
	}
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("drill: find the spillway binary: %w", err)
		}
		opts.Binary = exe
	}
	sc := opts.Scenario
	if opts.TimeScale != 1 {
		sc = sc.Scaled(opts.TimeScale)
		if err := sc.Validate(); err != nil {
			return nil, fmt.Errorf("scenario scaled by %v: %w", opts.TimeScale, err)
		}
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	rep := &Report{Scenario: sc, TimeScale: opts.TimeScale, DataPlane: opts.DataPlane, Started: time.Now()}
	sp := procgroup.NewSpawner()
	defer sp.Close()
	w := opts.Progress
	fmt.Fprintf(w, "drill %q: %d instances × limit %d, backend %s, peak %s logins/s, %s per profile\n",
		sc.Name, sc.Fleet.Instances, sc.Fleet.Limit, sc.Backend.Latency, fmtRate(sc.peakRPS()), sc.Duration())
	for _, p := range opts.Profiles {
		r := &runner{sc: sc, profile: p, opts: opts, sp: sp, w: w}
		pr, err := r.run(ctx)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p, err)
		}
		rep.Profiles = append(rep.Profiles, pr)
		fmt.Fprintf(w, "[%s] done: %s\n", p, pr.Summary.Line())
	}
	if err := rep.Write(opts.OutDir); err != nil {
		return nil, err
	}
	return rep, nil
}

// runner runs one profile.
type runner struct {
	sc      *Scenario
	profile Profile
	opts    Options
	sp      *procgroup.Spawner
	w       io.Writer
	dir     string

	mu     sync.Mutex
	events []Event
}

// Event is something the drill did, or saw, during a run.
type Event struct {
	// T is the time since the load's start, in seconds.
	T      float64 `json:"t"`
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
}

func (r *runner) logf(format string, a ...any) {
	fmt.Fprintf(r.w, "[%s] "+format+"\n", append([]any{r.profile}, a...)...)
}

func (r *runner) event(t0 time.Time, kind, format string, a ...any) {
	e := Event{T: time.Since(t0).Seconds(), Kind: kind, Detail: fmt.Sprintf(format, a...)}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.logf("%6.1fs  %s", e.T, e.Detail)
}

func (r *runner) run(ctx context.Context) (*ProfileRun, error) {
	r.dir = filepath.Join(r.opts.OutDir, string(r.profile))
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	addrs, err := procgroup.FreeAddrs("127.0.0.1", 3)
	if err != nil {
		return nil, err
	}
	backendAddr, lbAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	backendURL := "http://" + backendAddr

	cfg, err := upConfig(r.profile, r.sc, backendURL)
	if err != nil {
		return nil, err
	}
	if r.opts.DataPlane == DataPlaneHAProxy {
		sh := &cfg.LB.Shedding
		sh.Recovery, sh.RecoveryWindow = lb.RecoveryWindow, scale(RecoveryWindowHAProxy, r.sc.Tempo)
		sh.MaxRecoveryWindow = max(sh.MaxRecoveryWindow, sh.RecoveryWindow)
	}
	data, err := cfg.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode the configuration: %w", err)
	}
	cfgPath := filepath.Join(r.dir, "up.yaml")
	header := fmt.Sprintf("# spillway up --config for the %s profile of drill %q (written by spillway drill)\n", r.profile, r.sc.Name)
	if err := os.WriteFile(cfgPath, append([]byte(header), data...), 0o644); err != nil {
		return nil, err
	}

	// The backend.
	blog, err := os.Create(filepath.Join(r.dir, "backend.log"))
	if err != nil {
		return nil, err
	}
	defer blog.Close()
	backend, err := startChild(r.sp, "backend-sim", r.opts.Binary, []string{"backend-sim",
		"--listen", backendAddr, "--latency", r.sc.Backend.Latency.String(),
		"--slow-latency", r.sc.Backend.SlowLatency.String()}, blog)
	if err != nil {
		return nil, err
	}
	defer backend.Stop(5 * time.Second)
	bc := &backendsim.Client{BaseURL: backendURL, HTTP: &http.Client{Timeout: 2 * time.Second}}
	if err := waitFor(ctx, 10*time.Second, backend, func(ctx context.Context) error {
		_, err := bc.Control(ctx)
		return err
	}); err != nil {
		return nil, fmt.Errorf("backend-sim did not start: %w (see %s)", err, blog.Name())
	}

	// The system: the load balancer and the fleet, whose children are the
	// login instances.
	ulog, err := os.Create(filepath.Join(r.dir, "up.log"))
	if err != nil {
		return nil, err
	}
	defer ulog.Close()
	token := randomToken()
	r.logf("starting: backend-sim on %s, spillway up --data-plane %s (%d instances) on %s; configuration %s", backendAddr, r.opts.DataPlane, r.sc.Fleet.Instances, lbAddr, cfgPath)
	up, err := startChild(r.sp, "spillway up", r.opts.Binary, []string{"up",
		"--config", cfgPath, "--listen", lbAddr, "--admin-listen", adminAddr,
		"--admin-token", token, "--log-level", "info", "--data-plane", r.opts.DataPlane}, ulog)
	if err != nil {
		return nil, err
	}
	defer up.Stop(30 * time.Second)
	adm := newAdmin(adminAddr)
	defer adm.close()
	ready := func(ctx context.Context) error {
		var st lb.Status
		if err := adm.get(ctx, "/status", &st); err != nil {
			return err
		}
		if st.Routing.Routable < r.sc.Fleet.Instances {
			return fmt.Errorf("%d of %d instances routable", st.Routing.Routable, r.sc.Fleet.Instances)
		}
		for _, in := range st.Instances {
			if in.Weight < 1 {
				return fmt.Errorf("instance %s still in slow start", in.ID)
			}
		}
		return nil
	}
	if err := waitFor(ctx, 30*time.Second+r.sc.Fleet.Boot, up, ready); err != nil {
		return nil, fmt.Errorf("the system did not become ready: %w (see %s)", err, ulog.Name())
	}
	r.logf("ready: %d instances routable", r.sc.Fleet.Instances)

	pr, err := r.drive(ctx, "http://"+lbAddr+"/v1/login", bc, adm, up)
	if err != nil {
		return nil, err
	}
	r.logf("stopping")
	return pr, nil
}

// drive runs the scenario's schedule and load against a ready system.
func (r *runner) drive(ctx context.Context, url string, bc *backendsim.Client, adm *admin, up *child) (*ProfileRun, error) {
	sc := r.sc
	t0 := time.Now()
	led := newLedger(t0)
	pol := &poller{a: adm, t0: t0}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: sc.Client.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          2048,
		MaxIdleConnsPerHost:   2048,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: sc.Client.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: &transport{base: tr, l: led}}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	pollCtx, stopPoll := context.WithCancel(runCtx)
	var pollWG sync.WaitGroup
	pollWG.Go(func() { pol.run(pollCtx, sampleEvery) })
	pollWG.Go(func() { r.progress(pollCtx, t0, led, pol) })

	g, gctx := errgroup.WithContext(runCtx)
	var (
		resMu   sync.Mutex
		results []loadgen.Result
		loadWG  sync.WaitGroup
	)
	loadDone := make(chan struct{})
	for _, seg := range sc.segments() {
		loadWG.Add(1)
		g.Go(func() error {
			defer loadWG.Done()
			if err := sleepUntil(gctx, t0.Add(seg.from)); err != nil {
				return err
			}
			res, err := loadgen.Run(gctx, loadgen.Config{
				URL:     url,
				Method:  http.MethodPost,
				Header:  http.Header{"Content-Type": {"application/json"}},
				Body:    func(i int) []byte { return fmt.Appendf(nil, `{"ticket":"valid-drill-%d"}`, i%100000) },
				Rate:    seg.rps,
				Timeout: sc.Client.Timeout,
				Client:  client,
				Retry: loadgen.RetryPolicy{
					Mode:       loadgen.RetryMode(sc.Client.Retry.Mode),
					MaxRetries: sc.Client.Retry.Max,
					Delay:      sc.Client.Retry.Delay,
				},
				Duration: seg.to - seg.from,
			}, nil)
			resMu.Lock()
			results = append(results, res)
			resMu.Unlock()
			return err
		})
	}
	go func() {
		loadWG.Wait()
		close(loadDone)
	}()
	g.Go(func() error { return r.schedule(gctx, t0, bc, adm) })
	g.Go(func() error {
		// The system must outlive the load: `up` exiting is a failure.
		select {
		case <-up.Done():
			return fmt.Errorf("spillway up exited during the drill: %v (see %s)", up.Err(), filepath.Join(r.dir, "up.log"))
		case <-gctx.Done():
			return nil
		case <-loadDone:
			return nil
		}
	})
	err := g.Wait()
	stopPoll()
	pollWG.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}

	pr := &ProfileRun{Profile: r.profile, Start: t0, Events: r.events, Samples: pol.all()}
	for _, res := range results {
		pr.Load.add(res)
	}
	pr.attempts = led.all()
	pr.analyze(sc)
	return pr, nil
}

// schedule applies each phase at its time: backend mode, kills.
func (r *runner) schedule(ctx context.Context, t0 time.Time, bc *backendsim.Client, adm *admin) error {
	for i, p := range r.sc.Phases {
		if err := sleepUntil(ctx, t0.Add(p.At)); err != nil {
			return err
		}
		var what []string
		if p.RPS > 0 {
			what = append(what, fmt.Sprintf("%s logins/s", fmtRate(p.RPS)))
		}
		if p.Backend != "" {
			if err := bc.SetMode(ctx, p.Backend, r.sc.Backend.Latency); err != nil {
				return fmt.Errorf("phase %q: set the backend's mode: %w", p.Name, err)
			}
			what = append(what, "backend "+p.Backend)
		}
		if p.Kill > 0 {
			killed, err := r.kill(ctx, adm, p.Kill)
			if err != nil {
				return fmt.Errorf("phase %q: %w", p.Name, err)
			}
			what = append(what, "killed "+strings.Join(killed, ", "))
		}
		r.event(t0, "phase", "phase %d %q: %s", i+1, p.Name, strings.Join(what, ", "))
	}
	return nil
}

// kill sends SIGKILL to n running instances, lowest slots first.
func (r *runner) kill(ctx context.Context, adm *admin, n int) ([]string, error) {
	procs, err := adm.processes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	procs = slices.DeleteFunc(procs, func(p fleetProcess) bool { return p.State != "running" || p.PID <= 0 })
	slices.SortFunc(procs, func(a, b fleetProcess) int { return a.Slot - b.Slot })
	var killed []string
	for _, p := range procs[:min(n, len(procs))] {
		if err := killPID(p.PID); err != nil {
			return killed, fmt.Errorf("kill instance %s (pid %d): %w", p.ID, p.PID, err)
		}
		killed = append(killed, fmt.Sprintf("%s (pid %d)", p.ID, p.PID))
	}
	return killed, nil
}

// progress prints a live line every second.
func (r *runner) progress(ctx context.Context, t0 time.Time, led *ledger, pol *poller) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var total, ok uint64
		if pts := led.live.Series(1); len(pts) == 1 {
			total, ok = pts[0].Total, pts[0].Counts[health.OutcomeOK.String()]
		}
		okPct := "  -"
		if total > 0 {
			okPct = fmt.Sprintf("%3.0f%%", 100*float64(ok)/float64(total))
		}
		s, _ := pol.last()
		r.logf("%6.1fs  %5d answers/s  ok %s  routable %d/%d  running %d  replaced %d  edge %s",
			time.Since(t0).Seconds(), total, okPct, s.Routable, r.sc.Fleet.Instances, s.Running, s.Replacements, s.Shedding)
	}
}

// segment is a stretch of constant load.
type segment struct {
	from, to time.Duration
	rps      float64
}

// segments splits the load into stretches of constant rate.
func (s *Scenario) segments() []segment {
	var out []segment
	end := s.Duration()
	for _, p := range s.Phases {
		if p.RPS <= 0 {
			continue
		}
		if n := len(out); n > 0 {
			out[n-1].to = p.At
		}
		out = append(out, segment{from: p.At, to: end, rps: p.RPS})
	}
	return out
}

// peakRPS is the highest rate of first attempts.
func (s *Scenario) peakRPS() float64 {
	m := 0.0
	for _, p := range s.Phases {
		m = max(m, p.RPS)
	}
	return m
}

func fmtRate(r float64) string { return fmt.Sprintf("%g", r) }

// waitFor calls check until it succeeds, the timeout passes, c exits or
// ctx is done.
func waitFor(ctx context.Context, timeout time.Duration, c *child, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Done():
			return fmt.Errorf("%s exited: %v", c.name, c.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func sleepUntil(ctx context.Context, at time.Time) error {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
