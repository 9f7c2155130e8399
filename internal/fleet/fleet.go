package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// Announcement is what the fleet announces to the load balancer for one
// instance process: its stable ID and its addresses (host:port). Health is the address that
// serves /readyz and /health: the health port, or the service port when the
// traffic check is configured there (the 2018 shared-port configuration).
type Announcement struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Health  string `json:"health"`
}

// Source is a changing set of instances, as the load balancer's discovery
// consumes it.
type Source interface {
	// Instances returns the current set.
	Instances() []Announcement
	// Watch calls fn with the current set, then again after each change,
	// until ctx is done.
	Watch(ctx context.Context, fn func([]Announcement)) error
}

var _ Source = (*Fleet)(nil)

// Probe is one health check the fleet made of an instance, and its
// outcome. (The load balancer's checks are its own: lb.CheckResult.)
type Probe struct {
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

// ProcessStatus describes one instance process: a slot lists its serving
// process, and for a while those it replaces.
type ProcessStatus struct {
	ID string `json:"id"`
	// Slot is the place in the fleet (0 to the target - 1) the process
	// fills; slots above Size exist while the schedule asks for them.
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
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at"`
	LastCheck Probe     `json:"last_check"`
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
	// Hosts returns the number of live hosts whose fleets share the
	// fleet-scope windows of fleet.schedule (this one included): this host
	// keeps ceil(instances / hosts) of such a window's instances. Called
	// at boot and at every tick (at least every check interval), without
	// the fleet's lock held; it should answer from memory. Nil, or an
	// answer below 1, counts as 1.
	Hosts func() int
	// Guardrails decide health-based replacements (the freeze and the
	// budget). Nil: NewGuardrails of the configuration, this process's
	// own. A shared implementation (package fleetwide) makes them one for
	// every host's fleet; its methods are called with the fleet's lock
	// held (see Guardrails).
	Guardrails Guardrails
}

// Lifecycle phases of a Fleet.
const (
	phaseNew = iota
	phaseRunning
	phaseStopping
	phaseStopped
)

// Fleet supervises the instances. Build it with New and call Run once. It
// is the shell around a Plan: it runs the processes and their checks,
// feeds what it sees to the plan, applies the plan's actions and turns
// them into logs, events and metrics.
type Fleet struct {
	cfg   Config
	argv  []string
	log   *slog.Logger
	out   io.Writer
	env   []string // added to every instance's environment
	hosts func() int
	// clock is the time the plan is fed; time.Now but in tests.
	clock func() time.Time
	outMu sync.Mutex
	m     *metrics
	probe *prober

	results chan probeResult
	exits   chan *proc
	kick    chan struct{} // the plan's next deadline may be earlier; capacity 1
	quit    chan struct{} // closed when Run stops taking results and exits
	wg      sync.WaitGroup
	started atomic.Bool

	mu       sync.Mutex
	phase    int
	spawn    *procgroup.Spawner // set by Run
	baseCtx  context.Context    // parent of the probers' contexts; canceled at shutdown
	plan     *Plan
	rails    Guardrails       // the plan's
	procs    map[string]*proc // the processes the plan knows, by ID
	rollDone chan error       // the rolling restart's outcome goes there; nil when none runs
	events   ring
	changed  chan struct{} // closed and replaced at each change
}

// New builds a Fleet from cfg (start it from DefaultConfig): the derived
// defaults are resolved (Resolve), then cfg is validated. It starts
// nothing.
func New(cfg Config, opts Options) (*Fleet, error) {
	cfg.Resolve()
	rails := opts.Guardrails
	if rails == nil {
		rails = NewGuardrails(&cfg)
	}
	plan, err := NewPlan(cfg, rails)
	if err != nil {
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
	m.target.Set(float64(cfg.Size))
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{
		cfg:     cfg,
		argv:    argv,
		log:     log,
		out:     opts.Output,
		env:     slices.Clone(opts.Env),
		hosts:   opts.Hosts,
		clock:   time.Now,
		m:       m,
		probe:   newProber(cfg.Check.Timeout),
		results: make(chan probeResult),
		exits:   make(chan *proc),
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		plan:    plan,
		rails:   rails,
		procs:   map[string]*proc{},
		changed: make(chan struct{}),
	}, nil
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

	hosts := f.hostCount() // outside the lock
	f.mu.Lock()
	f.phase = phaseRunning
	f.spawn = spawn
	f.baseCtx = base
	now := f.clock()
	f.plan.SetHosts(hosts)
	var bootErr error
	for _, a := range f.plan.Boot(now) {
		if a.Kind != ActStart {
			f.doLocked(a, now)
			continue
		}
		err := f.startLocked(a, now)
		if err == nil {
			f.applyLocked(f.plan.Started(a.ID, now), now)
			continue
		}
		if bootErr == nil {
			bootErr = fmt.Errorf("fleet: boot: %w", err)
			f.phase = phaseStopping // start no more
		}
		f.plan.StartFailed(a.ID, err, now) // nothing to act on: the fleet stops
	}
	f.publishLocked()
	f.mu.Unlock()

	if bootErr == nil {
		f.log.Info("fleet running", "size", f.cfg.Size, "target", f.Schedule().Target, "schedule_windows", len(f.cfg.Schedule),
			"replace_on", f.cfg.ReplaceOn, "grace", f.cfg.Grace)
		f.loop(ctx)
	}
	f.shutdown(cancelBase)
	f.probe.close()
	return bootErr
}

// loop feeds check results, exits and timers to the plan until ctx is done.
func (f *Fleet) loop(ctx context.Context) {
	timer := time.NewTimer(f.cfg.Check.Interval)
	defer timer.Stop()
	for {
		var handle func(now time.Time)
		select {
		case <-ctx.Done():
			return
		case r := <-f.results:
			handle = func(now time.Time) { f.resultLocked(r, now) }
		case p := <-f.exits:
			handle = func(now time.Time) {
				p.stopProbes()
				f.applyLocked(f.plan.Exited(p.id, p.exit(), now), now)
			}
		case <-timer.C:
			hosts := f.hostCount() // outside the lock
			handle = func(now time.Time) {
				f.plan.SetHosts(hosts)
				f.applyLocked(f.plan.Tick(now), now)
			}
		case <-f.kick:
			handle = func(time.Time) {}
		}
		f.mu.Lock()
		now := f.clock()
		handle(now)
		timer.Reset(f.nextWakeLocked(now))
		f.mu.Unlock()
	}
}

// hostCount asks Options.Hosts, if set, how many hosts are live.
func (f *Fleet) hostCount() int {
	if f.hosts == nil {
		return 1
	}
	return max(1, f.hosts())
}

// kickLoop makes the loop recompute when it next ticks.
func (f *Fleet) kickLoop() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// nextWakeLocked is how long until the plan's next deadline, at most one
// check interval (the freeze is re-evaluated at least that often).
func (f *Fleet) nextWakeLocked(now time.Time) time.Duration {
	d := f.cfg.Check.Interval
	if next := f.plan.Next(); !next.IsZero() {
		d = min(d, max(0, next.Sub(now)))
	}
	return d
}

// resultLocked feeds one round of checks of one instance to the plan.
func (f *Fleet) resultLocked(r probeResult, now time.Time) {
	if r.ready {
		f.applyLocked(f.plan.Ready(r.p.id, now), now)
	}
	if r.hasCheck {
		f.applyLocked(f.plan.Checked(r.p.id, r.check, now), now)
	}
}

// publishLocked refreshes the instance gauge and wakes the watchers.
func (f *Fleet) publishLocked() {
	f.m.instances.Set(float64(len(f.instancesLocked())))
	close(f.changed)
	f.changed = make(chan struct{})
}

// eventLocked appends e to the recent events.
func (f *Fleet) eventLocked(e Event) { f.events.add(e) }

// Instances returns the announced instances: started and not told to stop,
// ready or not (the load balancer's own checks and slow start decide when
// one gets traffic), in slot order.
func (f *Fleet) Instances() []Announcement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.instancesLocked()
}

func (f *Fleet) instancesLocked() []Announcement {
	var out []Announcement
	for _, id := range f.plan.Announced() {
		if p := f.procs[id]; p != nil {
			out = append(out, Announcement{ID: p.id, Service: p.service, Health: p.addr(f.cfg.Check.Traffic.Port)})
		}
	}
	return out
}

// Watch calls fn with the announced instances at once and again after each
// change (changes in quick succession may be delivered as one), from the
// calling goroutine. It returns ctx.Err() when ctx is done, or nil after
// delivering the final, empty set once the fleet has stopped.
func (f *Fleet) Watch(ctx context.Context, fn func([]Announcement)) error {
	var last []Announcement
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
func (f *Fleet) Status() []ProcessStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.plan.Status()
	for i := range out {
		if p := f.procs[out[i].ID]; p != nil {
			out[i].PID, out[i].Service, out[i].Health = p.pid, p.service, p.health
		}
	}
	return out
}

// Schedule reports how many instances the fleet keeps and the schedule
// window that sets it, as of the last tick.
func (f *Fleet) Schedule() ScheduleStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plan.Schedule()
}

// Frozen reports whether correlated failures freeze replacement now.
func (f *Fleet) Frozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plan.Frozen()
}

// BudgetRemaining is the number of health-based replacements the
// guardrails allow now, -1 when the budget is unlimited; ok is false when
// the guardrails do not tell (they have no Remaining(now time.Time) int
// method, as LocalGuardrails has).
func (f *Fleet) BudgetRemaining() (n int, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rails.(interface{ Remaining(time.Time) int })
	if !ok {
		return 0, false
	}
	return r.Remaining(time.Now()), true
}

// Events returns the recent events (at most EventCapacity) with Seq
// greater than after, oldest first. Events(0) returns all of them.
func (f *Fleet) Events(after uint64) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events.since(after)
}
