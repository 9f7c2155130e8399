package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// Errors callers branch on.
var (
	// ErrNotRunning: the fleet's Run has not started or has ended.
	ErrNotRunning = errors.New("fleet is not running")
	// ErrRestartInProgress: a rolling restart is already under way.
	ErrRestartInProgress = errors.New("a rolling restart is already in progress")
	// ErrNotReady: a rolling restart's new instance did not become ready
	// within ready_timeout, or exited first; the old instance was kept.
	ErrNotReady = errors.New("new instance did not become ready")
)

// maxAddrRetries bounds the immediate restarts, with fresh ports, of an
// instance whose port was taken between the fleet choosing it and the
// instance binding it. Beyond that the exit counts as a crash.
const maxAddrRetries = 3

// State is an instance process's place in its life.
type State string

// The states.
const (
	// StateStarting: the process runs; its traffic check has not passed yet.
	StateStarting State = "starting"
	// StateRunning: its traffic check has passed at least once.
	StateRunning State = "running"
	// StateStopping: it got SIGTERM (replacement, rolling restart or the
	// fleet stopping) and is draining; no longer announced.
	StateStopping State = "stopping"
	// StateReplaced: it exited (asked or not) and its slot has a successor
	// that is not running yet, or is waiting out the restart backoff. It is
	// listed until the successor is running.
	StateReplaced State = "replaced"
)

// Instance is what the fleet announces to the load balancer: an instance's
// stable ID and its addresses (host:port). Health is the address that
// serves /readyz and /health: the health port, or the service port when the
// traffic check is configured there (the 2018 shared-port configuration).
type Instance struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Health  string `json:"health"`
}

// Source is a changing set of instances, as the load balancer's discovery
// consumes it.
type Source interface {
	// Instances returns the current set.
	Instances() []Instance
	// Watch calls fn with the current set, then again after each change,
	// until ctx is done.
	Watch(ctx context.Context, fn func([]Instance)) error
}

var _ Source = (*Fleet)(nil)

// CheckResult is the outcome of one health check.
type CheckResult struct {
	Time time.Time `json:"time"`
	// Target is ADDRESS/PATH.
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	// Status is the HTTP status, 0 when there was no answer.
	Status int `json:"status,omitempty"`
	// Error says why the check failed.
	Error string `json:"error,omitempty"`
	// Failures is the number of consecutive failures counted against the
	// instance (failures during the grace period are not counted).
	Failures int `json:"failures"`
}

// InstanceStatus describes one instance process.
type InstanceStatus struct {
	ID string `json:"id"`
	// Slot is the place in the fleet (0 to Size-1) the process fills.
	Slot int `json:"slot"`
	PID  int `json:"pid"`
	// Service and Health are the addresses given to the instance with
	// --listen and --health-listen.
	Service string `json:"service"`
	Health  string `json:"health"`
	State   State  `json:"state"`
	// Reason says why a stopping or replaced instance is going.
	Reason string `json:"reason,omitempty"`
	// Restarts is how many times the slot's process had exited unasked and
	// been started again before this process started.
	Restarts  int         `json:"restarts"`
	StartedAt time.Time   `json:"started_at"`
	LastCheck CheckResult `json:"last_check"`
}

// Options are a Fleet's dependencies.
type Options struct {
	// Logger receives the fleet's own log. Nil discards it.
	Logger *slog.Logger
	// Registerer receives the fleet's metrics. Nil leaves them unregistered.
	Registerer prometheus.Registerer
	// Output receives the instances' stdout and stderr, each line prefixed
	// with the instance's ID. Nil discards it.
	Output io.Writer
	// Env is added to this process's environment for every instance, as
	// KEY=VALUE entries (a later entry wins). It is the place for secrets,
	// such as a shared signing key, that must not be on a command line.
	Env []string
}

// slot is one of the Size places of the fleet. Its process changes; the
// slot stays. Guarded by Fleet.mu.
type slot struct {
	index    int
	key      string
	cur      *proc   // the serving process; nil while waiting to restart
	surge    *proc   // a rolling restart's new process, not yet promoted
	retiring []*proc // processes told to stop that have not exited
	prev     *proc   // the last exited process, until cur is running

	backoff     *Backoff
	restartAt   time.Time // when to start cur again; zero: no restart due
	restarts    int
	addrRetries int
}

// Lifecycle phases of a Fleet.
const (
	phaseNew = iota
	phaseRunning
	phaseStopping
	phaseStopped
)

// Fleet supervises the instances. Build it with New and call Run once.
type Fleet struct {
	cfg   Config
	argv  []string
	log   *slog.Logger
	out   io.Writer
	env   []string // added to every instance's environment
	outMu sync.Mutex
	m     *metrics
	probe *prober

	results chan probeResult
	exits   chan *proc
	quit    chan struct{} // closed when Run stops taking results and exits
	wg      sync.WaitGroup
	started atomic.Bool
	rolling sync.Mutex

	mu         sync.Mutex
	phase      int
	spawn      *procgroup.Spawner // set by Run
	baseCtx    context.Context    // parent of the probers' contexts; canceled at shutdown
	slots      []*slot
	guard      *Guardrails
	budgetHeld bool // a budget_exhausted event was emitted since the last replacement
	events     ring
	nextID     int
	changed    chan struct{} // closed and replaced at each change
}

// New builds a Fleet from cfg: defaults are applied, then cfg is validated.
// It starts nothing.
func New(cfg Config, opts Options) (*Fleet, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	argv := slices.Clone(cfg.Command)
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("fleet: find this program for the default command: %w", err)
		}
		argv = []string{exe, "login"}
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("fleet: register metrics: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{
		cfg:     cfg,
		argv:    argv,
		log:     log,
		out:     opts.Output,
		env:     slices.Clone(opts.Env),
		m:       m,
		probe:   newProber(cfg.Check.Timeout),
		results: make(chan probeResult),
		exits:   make(chan *proc),
		quit:    make(chan struct{}),
		guard:   NewGuardrails(&cfg),
		changed: make(chan struct{}),
	}
	for i := range cfg.Size {
		f.slots = append(f.slots, &slot{index: i, key: fmt.Sprintf("slot-%d", i), backoff: NewBackoff(cfg.Backoff)})
	}
	return f, nil
}

// Run starts the instances and supervises them until ctx is done, then
// stops every process it started (SIGTERM, then SIGKILL after
// stop_timeout) and returns once all have exited and every goroutine it
// started has ended. It returns nil after a stop, or the error that kept
// the fleet from booting (an instance that cannot be started at all).
func (f *Fleet) Run(ctx context.Context) error {
	if !f.started.CompareAndSwap(false, true) {
		return errors.New("fleet: Run called more than once")
	}
	spawn := procgroup.NewSpawner()
	defer spawn.Close() // after shutdown: every instance has exited
	base, cancelBase := context.WithCancel(context.Background())

	f.mu.Lock()
	f.phase = phaseRunning
	f.spawn = spawn
	f.baseCtx = base
	now := time.Now()
	var bootErr error
	for _, s := range f.slots {
		p, err := f.startLocked(s, now)
		if err != nil {
			bootErr = fmt.Errorf("fleet: boot: %w", err)
			break
		}
		s.cur = p
	}
	f.publishLocked()
	f.mu.Unlock()

	if bootErr == nil {
		f.log.Info("fleet running", "size", f.cfg.Size, "replace_on", f.cfg.ReplaceOn, "grace", f.cfg.Grace)
		f.loop(ctx)
	}
	f.shutdown(cancelBase)
	f.probe.close()
	return bootErr
}

// loop handles check results, exits and timers until ctx is done.
func (f *Fleet) loop(ctx context.Context) {
	timer := time.NewTimer(f.cfg.Check.Interval)
	defer timer.Stop()
	for {
		var handle func(now time.Time)
		select {
		case <-ctx.Done():
			return
		case r := <-f.results:
			handle = func(now time.Time) { f.onResultLocked(r, now) }
		case p := <-f.exits:
			handle = func(now time.Time) { f.onExitLocked(p, now) }
		case <-timer.C:
			handle = f.tickLocked
		}
		f.mu.Lock()
		now := time.Now()
		handle(now)
		timer.Reset(f.nextWakeLocked(now))
		f.mu.Unlock()
	}
}

// nextWakeLocked is how long until a restart is due, at most one check
// interval (the freeze is re-evaluated at least that often).
func (f *Fleet) nextWakeLocked(now time.Time) time.Duration {
	d := f.cfg.Check.Interval
	for _, s := range f.slots {
		if !s.restartAt.IsZero() && s.cur == nil {
			d = min(d, max(0, s.restartAt.Sub(now)))
		}
	}
	return d
}

// tickLocked starts the processes whose restart is due and re-evaluates the
// freeze.
func (f *Fleet) tickLocked(now time.Time) {
	for _, s := range f.slots {
		if s.restartAt.IsZero() || s.cur != nil || now.Before(s.restartAt) {
			continue
		}
		s.restartAt = time.Time{}
		s.restarts++
		f.m.restarts.Inc()
		p, err := f.startLocked(s, now)
		if err != nil {
			d := s.backoff.Exited(now, now)
			f.log.Error("restart failed", "slot", s.index, "err", err, "retry_in", d)
			s.restartAt = now.Add(d)
			continue
		}
		s.cur = p
	}
	f.updateFreezeLocked(now)
	f.publishLocked()
}

// startLocked starts a process for s (without installing it) and its waiter
// and prober.
func (f *Fleet) startLocked(s *slot, now time.Time) (*proc, error) {
	if f.phase != phaseRunning {
		return nil, ErrNotRunning
	}
	addrs, err := procgroup.FreeAddrs(f.cfg.Host, 2)
	if err != nil {
		return nil, err
	}
	f.nextID++
	id := fmt.Sprintf("i-%d", f.nextID)
	argv := slices.Concat(f.argv, []string{"--listen", addrs[0], "--health-listen", addrs[1]}, f.cfg.Args)
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &output{id: id, dst: f.out, dstMu: &f.outMu}
	cmd.Stdout, cmd.Stderr = out, out
	if len(f.env) > 0 {
		cmd.Env = append(os.Environ(), f.env...)
	}
	cmd.WaitDelay = time.Second // bounds Wait if a grandchild keeps the output pipe open
	if err := f.spawn.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &proc{
		id:        id,
		slot:      s,
		cmd:       cmd,
		pid:       cmd.Process.Pid,
		service:   addrs[0],
		health:    addrs[1],
		startedAt: now,
		out:       out,
		state:     StateStarting,
		checks:    NewChecks(f.cfg.Check.UnhealthyThreshold, f.cfg.Grace, now),
		readyCh:   make(chan struct{}),
		exited:    make(chan struct{}),
		restarts:  s.restarts,
	}
	var ctx context.Context
	ctx, p.stopProbes = context.WithCancel(f.baseCtx)
	f.wg.Add(2)
	go f.wait(p)
	go f.probeLoop(ctx, p)
	f.eventLocked(Event{Time: now, Kind: EventStarted, Instance: id, PID: p.pid,
		Detail: fmt.Sprintf("slot %d, pid %d, service %s, health %s", s.index, p.pid, p.service, p.health)})
	f.log.Info("instance started", "instance", id, "slot", s.index, "pid", p.pid, "service", p.service, "health", p.health)
	return p, nil
}

// wait reaps p and reports its exit to the loop.
func (f *Fleet) wait(p *proc) {
	defer f.wg.Done()
	err := p.cmd.Wait()
	procgroup.KillGroup(p.pid)
	p.out.flush()
	p.exitErr, p.exitedAt = err, time.Now()
	close(p.exited)
	select {
	case f.exits <- p:
	case <-f.quit:
	}
}

// probeResult is one round of checks of one instance.
type probeResult struct {
	p        *proc
	hasCheck bool        // check holds a result of the replacement check
	check    CheckResult // the check that replace_on selects
	ready    bool        // the traffic check passed
}

// probeLoop checks p until ctx is done: the replacement check every
// interval and, until p is first ready, its traffic check every 100ms (at
// most every interval) so a new instance's readiness is seen quickly.
func (f *Fleet) probeLoop(ctx context.Context, p *proc) {
	defer f.wg.Done()
	decide := f.cfg.Check.Liveness
	if f.cfg.ReplaceOn == ReplaceOnTraffic {
		decide = f.cfg.Check.Traffic
	}
	traffic := f.cfg.Check.Traffic
	same := decide == traffic

	interval := time.NewTicker(f.cfg.Check.Interval)
	defer interval.Stop()
	fast := time.NewTicker(min(100*time.Millisecond, f.cfg.Check.Interval))
	defer fast.Stop()
	fastC := fast.C
	ready := false
	for {
		var r probeResult
		select {
		case <-ctx.Done():
			return
		case <-interval.C:
			r.hasCheck = true
			r.check = f.probe.check(ctx, p.addr(decide.Port), decide.Path, time.Now)
			r.ready = same && r.check.OK
		case <-fastC:
			r.ready = f.probe.check(ctx, p.addr(traffic.Port), traffic.Path, time.Now).OK
		}
		if ctx.Err() != nil {
			return // a check cut short by the stop says nothing about p
		}
		if r.ready && !ready {
			ready = true
			fast.Stop()
			fastC = nil
		}
		if !r.hasCheck && !r.ready {
			continue
		}
		r.p = p
		select {
		case f.results <- r:
		case <-ctx.Done():
			return
		}
	}
}

// onResultLocked records a check result and acts on it.
func (f *Fleet) onResultLocked(r probeResult, now time.Time) {
	p, s := r.p, r.p.slot
	if p.state != StateStarting && p.state != StateRunning {
		return
	}
	if r.ready && !p.ready {
		p.ready = true
		close(p.readyCh)
		p.state = StateRunning
		if s.cur == p {
			s.prev = nil
		}
		f.eventLocked(Event{Time: now, Kind: EventReady, Instance: p.id, PID: p.pid,
			Detail: fmt.Sprintf("%s after start", now.Sub(p.startedAt).Round(time.Millisecond))})
		f.log.Info("instance ready", "instance", p.id, "after", now.Sub(p.startedAt).Round(time.Millisecond))
		f.publishLocked()
	}
	if !r.hasCheck {
		return
	}
	tr := p.checks.Observe(r.check.OK, now)
	p.last = r.check
	p.last.Failures = p.checks.Failures()
	if s.cur != p {
		return // a rolling restart's new instance is judged by the restart
	}
	// For the freeze an instance is failing from its first counted failure,
	// not from its threshold: instances failing together are seen as
	// correlated before the first of them would be replaced.
	switch {
	case r.check.OK:
		f.guard.Freeze.Recover(s.key)
	case p.checks.Failures() > 0:
		f.guard.Freeze.Fail(s.key, now)
	}
	switch tr {
	case Recovered:
		f.log.Info("instance recovered", "instance", p.id)
	case BecameUnhealthy:
		f.log.Warn("instance unhealthy", "instance", p.id, "check", r.check.Target,
			"failures", p.checks.Failures(), "err", r.check.Error)
	}
	f.updateFreezeLocked(now)
	if p.checks.Unhealthy() {
		f.replaceUnhealthyLocked(p, now)
	}
}

// replaceUnhealthyLocked replaces p, the unhealthy current process of its
// slot, if the guardrails allow it: the successor starts first, then p is
// stopped.
func (f *Fleet) replaceUnhealthyLocked(p *proc, now time.Time) {
	s := p.slot
	switch f.guard.Request(now) {
	case HoldFrozen:
		return // the freeze was logged when it began
	case HoldBudget:
		if !f.budgetHeld {
			f.budgetHeld = true
			f.eventLocked(Event{Time: now, Kind: EventBudgetExhausted, Instance: p.id, PID: p.pid,
				Detail: fmt.Sprintf("%d replacements per %s spent; keeping the unhealthy instance", f.cfg.Budget.Max, f.cfg.Budget.Window)})
			f.log.Warn("replacement budget exhausted; keeping unhealthy instance", "instance", p.id,
				"budget_max", f.cfg.Budget.Max, "budget_window", f.cfg.Budget.Window)
		}
		return
	}
	f.budgetHeld = false
	reason := f.cfg.ReplaceOn // ReasonLiveness or ReasonTraffic
	f.guard.Freeze.Gone(s.key, now)
	next, err := f.startLocked(s, now)
	f.stopLocked(p, reason)
	detail := "successor " + errString(err)
	if err != nil {
		d := s.backoff.Exited(now, now)
		f.log.Error("start successor failed", "instance", p.id, "err", err, "retry_in", d)
		s.restartAt = now.Add(d)
	} else {
		s.cur = next
		detail = "successor " + next.id
	}
	f.m.replacements.WithLabelValues(reason).Inc()
	f.eventLocked(Event{Time: now, Kind: EventReplaced, Instance: p.id, PID: p.pid, Reason: reason, Detail: detail})
	f.log.Warn("instance replaced", "instance", p.id, "reason", reason, "detail", detail)
	f.publishLocked()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return "failed to start: " + err.Error()
}

// updateFreezeLocked re-evaluates the freeze and reports a change.
func (f *Fleet) updateFreezeLocked(now time.Time) {
	frozen, changed := f.guard.Freeze.Update(now)
	if !changed {
		return
	}
	n := f.guard.Freeze.Failing(now)
	if frozen {
		f.m.frozen.Set(1)
		f.eventLocked(Event{Time: now, Kind: EventFrozen,
			Detail: fmt.Sprintf("%d of %d instances failed within %s: shared cause, replacing nothing", n, f.cfg.Size, f.cfg.Freeze.Window)})
		f.log.Warn("fleet frozen: correlated failures, replacing nothing", "failing", n, "size", f.cfg.Size,
			"share", f.cfg.Freeze.Share, "window", f.cfg.Freeze.Window)
		return
	}
	f.m.frozen.Set(0)
	for _, s := range f.slots {
		if s.cur != nil {
			s.cur.checks.Forgive()
		}
	}
	f.eventLocked(Event{Time: now, Kind: EventUnfrozen,
		Detail: fmt.Sprintf("%d of %d instances failing; their failures so far are forgiven", n, f.cfg.Size)})
	f.log.Info("fleet unfrozen: failures cleared", "failing", n, "size", f.cfg.Size)
}

// onExitLocked handles the exit of p.
func (f *Fleet) onExitLocked(p *proc, now time.Time) {
	p.stopProbes()
	s := p.slot
	if p.state == StateStopping {
		p.state = StateReplaced
		s.retiring = slices.DeleteFunc(s.retiring, func(q *proc) bool { return q == p })
		if s.cur == nil || !s.cur.ready {
			s.prev = p
		}
		f.log.Info("instance stopped", "instance", p.id, "reason", p.reason, "exit", errText(p.exitErr))
		f.publishLocked()
		return
	}
	// It exited unasked.
	p.state, p.reason = StateReplaced, "exited: "+errText(p.exitErr)
	detail := errText(p.exitErr)
	if l := p.out.lastLine(); l != "" {
		detail += ": " + l
	}
	f.eventLocked(Event{Time: now, Kind: EventCrashed, Instance: p.id, PID: p.pid, Detail: detail})
	if s.surge == p {
		s.surge = nil // the rolling restart waiting for it sees the exit
		f.log.Warn("new instance exited during rolling restart", "instance", p.id, "exit", detail)
		f.publishLocked()
		return
	}
	if s.cur != p {
		f.publishLocked()
		return
	}
	s.cur, s.prev = nil, p
	if s.surge != nil {
		// A rolling restart's new instance was starting: it takes over.
		s.cur, s.surge = s.surge, nil
		f.guard.Freeze.Fail(s.key, now)
		f.guard.Freeze.Gone(s.key, now)
		f.updateFreezeLocked(now)
		f.log.Warn("instance exited; rolling restart's new instance takes over", "instance", p.id, "exit", detail)
		f.publishLocked()
		return
	}
	var delay time.Duration
	if p.out.addrInUse() && !p.ready && s.addrRetries < maxAddrRetries {
		s.addrRetries++
		f.log.Warn("instance port taken; restarting with new ports", "instance", p.id, "exit", detail)
	} else {
		s.addrRetries = 0
		f.guard.Freeze.Fail(s.key, now)
		f.guard.Freeze.Gone(s.key, now)
		f.updateFreezeLocked(now)
		delay = s.backoff.Exited(p.startedAt, now)
		f.log.Warn("instance exited", "instance", p.id, "exit", detail, "restart_in", delay)
	}
	s.restartAt = now.Add(delay)
	f.publishLocked()
}

func errText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stopLocked detaches p from its slot and stops it gracefully in a
// goroutine: SIGTERM to its process group, then SIGKILL after
// stop_timeout.
func (f *Fleet) stopLocked(p *proc, reason string) {
	s := p.slot
	if s.cur == p {
		s.cur = nil
	}
	if s.surge == p {
		s.surge = nil
	}
	p.state, p.reason = StateStopping, reason
	p.stopProbes()
	s.retiring = append(s.retiring, p)
	f.wg.Add(1)
	go f.stopProc(p)
	f.publishLocked()
}

func (f *Fleet) stopProc(p *proc) {
	defer f.wg.Done()
	if p.hasExited() {
		return
	}
	if err := procgroup.Terminate(p.cmd.Process); err != nil {
		f.log.Warn("SIGTERM failed", "instance", p.id, "pid", p.pid, "err", err)
	}
	t := time.NewTimer(f.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-f.quit: // shutdown takes over
	case <-t.C:
		f.log.Warn("instance did not stop in time; killing", "instance", p.id, "pid", p.pid, "stop_timeout", f.cfg.StopTimeout)
		if err := procgroup.Kill(p.cmd.Process); err != nil && !p.hasExited() {
			f.log.Error("SIGKILL failed", "instance", p.id, "pid", p.pid, "err", err)
		}
	}
}

// shutdown stops every process: SIGTERM to all, SIGKILL to those still
// running after stop_timeout; then waits for every goroutine.
func (f *Fleet) shutdown(cancelBase context.CancelFunc) {
	f.mu.Lock()
	f.phase = phaseStopping
	var live []*proc
	for _, s := range f.slots {
		var own []*proc
		for _, p := range append([]*proc{s.cur, s.surge}, s.retiring...) {
			if p == nil {
				continue
			}
			own = append(own, p)
			if p.state != StateStopping {
				p.state, p.reason = StateStopping, "fleet stopping"
			}
		}
		s.cur, s.surge, s.prev, s.retiring = nil, nil, nil, own
		live = append(live, own...)
	}
	f.publishLocked()
	f.mu.Unlock()

	cancelBase()  // ends the probers
	close(f.quit) // waiters and stoppers stop reporting
	if len(live) > 0 {
		f.log.Info("stopping instances", "count", len(live))
	}
	for _, p := range live {
		if !p.hasExited() {
			if err := procgroup.Terminate(p.cmd.Process); err != nil {
				f.log.Warn("SIGTERM failed", "instance", p.id, "pid", p.pid, "err", err)
			}
		}
	}
	deadline := time.NewTimer(f.cfg.StopTimeout)
	defer deadline.Stop()
	expired := false
	for _, p := range live {
		if expired {
			break
		}
		select {
		case <-p.exited:
		case <-deadline.C:
			expired = true
		}
	}
	if expired {
		for _, p := range live {
			if !p.hasExited() {
				f.log.Warn("instance did not stop in time; killing", "instance", p.id, "pid", p.pid)
				if err := procgroup.Kill(p.cmd.Process); err != nil && !p.hasExited() {
					f.log.Error("SIGKILL failed", "instance", p.id, "pid", p.pid, "err", err)
				}
			}
		}
		for _, p := range live {
			<-p.exited
		}
	}
	f.wg.Wait()

	f.mu.Lock()
	for _, s := range f.slots {
		s.retiring = nil
	}
	f.phase = phaseStopped
	f.publishLocked()
	f.mu.Unlock()
	f.log.Info("fleet stopped")
}

// RollingRestart replaces every instance, one slot at a time: it starts the
// new instance first (a surge of one), waits until its traffic check
// passes, then stops the old one and waits for it to exit before the next
// slot, so the number of ready instances never drops. It does not spend the
// replacement budget. If a new instance is not ready within ready_timeout
// (or exits first) it is stopped, the old one is kept, and the restart
// ends with ErrNotReady. Canceling ctx ends the restart after the slot in
// progress is settled. Only one rolling restart runs at a time.
func (f *Fleet) RollingRestart(ctx context.Context) error {
	if !f.rolling.TryLock() {
		return ErrRestartInProgress
	}
	defer f.rolling.Unlock()
	begin := time.Now()
	f.mu.Lock()
	phase := f.phase
	f.mu.Unlock()
	if phase != phaseRunning {
		return ErrNotRunning
	}
	f.log.Info("rolling restart begins", "size", len(f.slots))
	for _, s := range f.slots {
		if err := f.rollSlot(ctx, s, begin); err != nil {
			f.log.Warn("rolling restart stopped", "slot", s.index, "err", err)
			return fmt.Errorf("rolling restart: slot %d: %w", s.index, err)
		}
	}
	f.log.Info("rolling restart done", "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

func (f *Fleet) rollSlot(ctx context.Context, s *slot, begin time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	if f.phase != phaseRunning {
		f.mu.Unlock()
		return ErrNotRunning
	}
	old := s.cur
	if old == nil || !old.startedAt.Before(begin) {
		f.mu.Unlock()
		return nil // restarting or already new
	}
	next, err := f.startLocked(s, time.Now())
	if err != nil {
		f.mu.Unlock()
		return err
	}
	s.surge = next
	f.publishLocked()
	f.mu.Unlock()

	timeout := time.NewTimer(f.cfg.ReadyTimeout)
	defer timeout.Stop()
	var fail error
	select {
	case <-next.readyCh:
	case <-next.exited:
		fail = fmt.Errorf("%w: %s exited: %s", ErrNotReady, next.id, errText(next.exitErr))
	case <-timeout.C:
		fail = fmt.Errorf("%w: %s not ready after %s", ErrNotReady, next.id, f.cfg.ReadyTimeout)
	case <-ctx.Done():
		fail = ctx.Err()
	case <-f.quit:
		return ErrNotRunning
	}

	f.mu.Lock()
	if f.phase != phaseRunning {
		f.mu.Unlock()
		return ErrNotRunning
	}
	if fail != nil {
		if s.surge == next && !next.hasExited() {
			f.stopLocked(next, "rolling restart abandoned")
		}
		f.mu.Unlock()
		return fail
	}
	now := time.Now()
	if s.surge == next {
		s.surge = nil
		if cur := s.cur; cur != nil {
			f.stopLocked(cur, ReasonRolling)
			f.m.replacements.WithLabelValues(ReasonRolling).Inc()
			f.eventLocked(Event{Time: now, Kind: EventReplaced, Instance: cur.id, PID: cur.pid, Reason: ReasonRolling, Detail: "successor " + next.id})
			f.log.Info("instance replaced", "instance", cur.id, "reason", ReasonRolling, "successor", next.id)
		}
		s.cur, s.prev, s.restartAt = next, nil, time.Time{}
		f.guard.Freeze.Recover(s.key)
		f.publishLocked()
	}
	f.mu.Unlock()

	// Keep the surge at one: the old instance drains before the next slot.
	select {
	case <-old.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-f.quit:
		return ErrNotRunning
	}
}

// eventLocked appends e to the recent events.
func (f *Fleet) eventLocked(e Event) { f.events.add(e) }

// publishLocked refreshes the instance gauge and wakes the watchers.
func (f *Fleet) publishLocked() {
	f.m.instances.Set(float64(len(f.instancesLocked())))
	close(f.changed)
	f.changed = make(chan struct{})
}

// Instances returns the announced instances: started and not told to stop,
// ready or not (the load balancer's own checks and slow start decide when
// one gets traffic), in slot order.
func (f *Fleet) Instances() []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.instancesLocked()
}

func (f *Fleet) instancesLocked() []Instance {
	var out []Instance
	for _, s := range f.slots {
		for _, p := range []*proc{s.cur, s.surge} {
			if p != nil && (p.state == StateStarting || p.state == StateRunning) {
				out = append(out, Instance{ID: p.id, Service: p.service, Health: p.addr(f.cfg.Check.Traffic.Port)})
			}
		}
	}
	return out
}

// Watch calls fn with the announced instances at once and again after each
// change (changes in quick succession may be delivered as one), from the
// calling goroutine. It returns ctx.Err() when ctx is done, or nil after
// delivering the final, empty set once the fleet has stopped.
func (f *Fleet) Watch(ctx context.Context, fn func([]Instance)) error {
	var last []Instance
	first := true
	for {
		f.mu.Lock()
		set, ch, stopped := f.instancesLocked(), f.changed, f.phase == phaseStopped
		f.mu.Unlock()
		if first || !slices.Equal(set, last) {
			fn(set)
			first, last = false, set
		}
		if stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Status describes every process the fleet owns, in slot order: for each
// slot its last exited process while the successor is not running yet,
// processes being stopped, the current one and a rolling restart's new one.
func (f *Fleet) Status() []InstanceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []InstanceStatus
	for _, s := range f.slots {
		ps := append([]*proc{s.prev}, s.retiring...)
		ps = append(ps, s.cur, s.surge)
		for _, p := range ps {
			if p == nil {
				continue
			}
			out = append(out, InstanceStatus{
				ID: p.id, Slot: s.index, PID: p.pid, Service: p.service, Health: p.health,
				State: p.state, Reason: p.reason, Restarts: p.restarts,
				StartedAt: p.startedAt, LastCheck: p.last,
			})
		}
	}
	return out
}

// Frozen reports whether correlated failures freeze replacement now.
func (f *Fleet) Frozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.guard.Freeze.Frozen()
}

// Events returns the recent events (at most EventCapacity) with Seq
// greater than after, oldest first. Events(0) returns all of them.
func (f *Fleet) Events(after uint64) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events.since(after)
}
