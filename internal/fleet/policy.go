package fleet

import "time"

// The fleet's policies are the plain types in this file, which the Plan
// (plan.go) combines. None of them reads the clock, opens a socket or
// starts a goroutine: every method that depends on time takes now. None is
// safe for concurrent use; the supervisor calls them under its lock.

// Checks judges one instance from its consecutive health check results: it
// becomes unhealthy after Threshold failures in a row once its grace period
// is over, and healthy again at the next passing check. Failures during the
// grace period are not counted.
type Checks struct {
	threshold int
	grace     time.Duration
	startedAt time.Time

	fails     int
	unhealthy bool
}

// Transition is what one check result changed.
type Transition int

// The transitions.
const (
	// Unchanged: the instance's verdict is what it was.
	Unchanged Transition = iota
	// BecameUnhealthy: this failure reached the threshold.
	BecameUnhealthy
	// Recovered: an unhealthy instance passed a check.
	Recovered
)

// NewChecks returns the judge of an instance started at startedAt.
// threshold below 1 counts as 1.
func NewChecks(threshold int, grace time.Duration, startedAt time.Time) *Checks {
	return &Checks{threshold: max(1, threshold), grace: grace, startedAt: startedAt}
}

// InGrace reports whether a check result at now is inside the grace period.
func (c *Checks) InGrace(now time.Time) bool { return now.Sub(c.startedAt) < c.grace }

// Observe records a check result taken at now.
func (c *Checks) Observe(ok bool, now time.Time) Transition {
	if ok {
		c.fails = 0
		if c.unhealthy {
			c.unhealthy = false
			return Recovered
		}
		return Unchanged
	}
	if c.InGrace(now) {
		return Unchanged
	}
	c.fails++
	if c.fails >= c.threshold && !c.unhealthy {
		c.unhealthy = true
		return BecameUnhealthy
	}
	return Unchanged
}

// Forgive forgets the failures counted so far: the next failure is the
// first again. The supervisor forgives every instance when a freeze ends,
// because their failures were the shared cause's doing; an instance that is
// still failing then needs a full threshold of fresh failures before it is
// replaced, time enough to recover from the shared cause as the others did.
func (c *Checks) Forgive() { c.fails, c.unhealthy = 0, false }

// Unhealthy reports whether the instance has failed its threshold and not
// passed a check since.
func (c *Checks) Unhealthy() bool { return c.unhealthy }

// Failures is the number of consecutive failures counted (after grace).
func (c *Checks) Failures() int { return c.fails }

// Budget allows at most max replacements in any sliding window. A negative
// max allows every replacement. The zero Budget allows none; use NewBudget.
type Budget struct {
	max    int
	window time.Duration
	spent  []time.Time // times of the replacements in the window, oldest first; len <= max unless SetMax lowered it
}

// NewBudget returns a budget of max replacements per window; max < 0 means
// unlimited.
func NewBudget(max int, window time.Duration) *Budget {
	return &Budget{max: max, window: window}
}

// Take spends one replacement at now if the budget allows it, and reports
// whether it did.
func (b *Budget) Take(now time.Time) bool {
	if b.max < 0 {
		return true
	}
	b.prune(now)
	if len(b.spent) >= b.max {
		return false
	}
	b.spent = append(b.spent, now)
	return true
}

// Remaining is the number of replacements allowed at now, or -1 when the
// budget is unlimited.
func (b *Budget) Remaining(now time.Time) int {
	if b.max < 0 {
		return -1
	}
	b.prune(now)
	return b.max - len(b.spent)
}

// SetMax changes the replacements allowed per window (max < 0: every
// one). Those already spent in the window still count.
func (b *Budget) SetMax(max int) { b.max = max }

func (b *Budget) prune(now time.Time) {
	i := 0
	for i < len(b.spent) && now.Sub(b.spent[i]) >= b.window {
		i++
	}
	if i > 0 {
		b.spent = append(b.spent[:0], b.spent[i:]...)
	}
}

// Freeze detects correlated failures. It tracks failures by key (the
// supervisor uses the instance slot, so a crash-looping slot counts once)
// and is frozen while the number of counted failures exceeds share × size
// and is at least two. A failure counts while its instance is running and
// failing, and for window after the instance is gone (replaced or exited)
// unless the key's next instance passes a check first. A negative share
// never freezes.
type Freeze struct {
	share  float64
	window time.Duration
	size   int

	failures map[string]*failure
	frozen   bool
}

type failure struct {
	live bool      // the failing instance is still running
	at   time.Time // when it failed, or when it went
}

// NewFreeze returns a freeze for a fleet of size instances.
func NewFreeze(share float64, window time.Duration, size int) *Freeze {
	return &Freeze{share: share, window: window, size: size, failures: make(map[string]*failure)}
}

// Resize makes size the fleet size the share is of; the next Update
// applies it.
func (f *Freeze) Resize(size int) { f.size = size }

// Fail records that key's instance is failing at now: a check failed
// (after its grace period) or its process exited. Repeated calls while it
// keeps failing change nothing.
func (f *Freeze) Fail(key string, now time.Time) {
	if e, ok := f.failures[key]; ok {
		if !e.live {
			e.live, e.at = true, now
		}
		return
	}
	f.failures[key] = &failure{live: true, at: now}
}

// Gone records that key's failed instance was replaced or exited at now.
// Its failure keeps counting for the window. Gone without Fail does nothing.
func (f *Freeze) Gone(key string, now time.Time) {
	if e, ok := f.failures[key]; ok && e.live {
		e.live, e.at = false, now
	}
}

// Recover records that key's instance passed a check: its failure no longer
// counts.
func (f *Freeze) Recover(key string) { delete(f.failures, key) }

// Failing is the number of failures that count at now.
func (f *Freeze) Failing(now time.Time) int {
	n := 0
	for k, e := range f.failures {
		if !e.live && now.Sub(e.at) >= f.window {
			delete(f.failures, k)
			continue
		}
		n++
	}
	return n
}

// Update re-evaluates the freeze at now and reports whether it is frozen
// and whether that changed since the last Update.
func (f *Freeze) Update(now time.Time) (frozen, changed bool) {
	n := f.Failing(now)
	frozen = f.share >= 0 && n >= 2 && float64(n) > f.share*float64(f.size)
	changed = frozen != f.frozen
	f.frozen = frozen
	return frozen, changed
}

// Frozen reports the state at the last Update.
func (f *Freeze) Frozen() bool { return f.frozen }

// Decision is the guardrails' answer to a replacement request.
type Decision int

// The decisions.
const (
	// Replace: go ahead; one replacement of the budget is spent.
	Replace Decision = iota
	// HoldFrozen: failures are correlated; replace nothing.
	HoldFrozen
	// HoldBudget: the replacement budget is spent for now.
	HoldBudget
)

// String returns the decision's name.
func (d Decision) String() string {
	switch d {
	case Replace:
		return "replace"
	case HoldFrozen:
		return "frozen"
	case HoldBudget:
		return "budget_exhausted"
	}
	return "unknown"
}

// Guardrails stand in front of every health-based replacement: the
// correlated-failure freeze and the replacement budget. They are the seam
// where these decisions become fleet-wide (issue #12: every host's fleet
// sharing one budget and one view of failures through etcd): the Plan
// reports each slot's failures by key, re-evaluates the freeze, and asks
// before each replacement; it reads nothing else of their state.
//
// LocalGuardrails keeps both in this process. A shared implementation
// answers from its local view of the shared state (kept current by a
// watch, so losing etcd leaves the last state known) and publishes its own
// changes without blocking: every method is called with the fleet's lock
// held. The Plan calls Update at every check result and tick, so a change
// made elsewhere is seen within a check interval.
type Guardrails interface {
	// Fail records that key's instance is failing at now: a check failed
	// after its grace period, or its process exited.
	Fail(key string, now time.Time)
	// Gone records that key's failed instance was replaced or exited at
	// now; its failure keeps counting for the freeze window.
	Gone(key string, now time.Time)
	// Recover records that key's instance passed a check.
	Recover(key string)
	// Update re-evaluates the freeze at now and reports whether it is
	// frozen and whether that changed since the last Update.
	Update(now time.Time) (frozen, changed bool)
	// Failing is the number of failures that count at now.
	Failing(now time.Time) int
	// Frozen reports the state at the last Update.
	Frozen() bool
	// Request asks to replace one unhealthy instance at now; Replace
	// spends one replacement of the budget.
	Request(now time.Time) Decision
}

var _ Guardrails = (*LocalGuardrails)(nil)

// LocalGuardrails are the Guardrails of one fleet process: a Freeze over
// its own slots and a Budget of its own.
type LocalGuardrails struct {
	Freeze *Freeze
	Budget *Budget

	// budgetOf is the budget for a fleet of a given size (budget.max may
	// be a percentage); nil leaves the budget as it is on Resize.
	budgetOf func(size int) int
}

// NewGuardrails builds the local guardrails of a validated configuration.
func NewGuardrails(c *Config) *LocalGuardrails {
	amount := c.Budget.Max
	budgetOf := func(size int) int { return int(disabledBelowZero(float64(amount.Of(size)))) }
	return &LocalGuardrails{
		Freeze:   NewFreeze(disabledBelowZero(c.Freeze.Share), c.Freeze.Window, c.Size),
		Budget:   NewBudget(budgetOf(c.Size), c.Budget.Window),
		budgetOf: budgetOf,
	}
}

// Request asks to replace one unhealthy instance at now. The freeze, as of
// its last Update (the caller updates it first, to see the transition), is
// consulted first, so a frozen fleet spends no budget.
func (g *LocalGuardrails) Request(now time.Time) Decision {
	if g.Freeze.Frozen() {
		return HoldFrozen
	}
	if !g.Budget.Take(now) {
		return HoldBudget
	}
	return Replace
}

// Remaining calls Budget.Remaining: the replacements allowed at now, -1
// when the budget is unlimited.
func (g *LocalGuardrails) Remaining(now time.Time) int { return g.Budget.Remaining(now) }

// Fail calls Freeze.Fail.
func (g *LocalGuardrails) Fail(key string, now time.Time) { g.Freeze.Fail(key, now) }

// Gone calls Freeze.Gone.
func (g *LocalGuardrails) Gone(key string, now time.Time) { g.Freeze.Gone(key, now) }

// Recover calls Freeze.Recover.
func (g *LocalGuardrails) Recover(key string) { g.Freeze.Recover(key) }

// Update calls Freeze.Update.
func (g *LocalGuardrails) Update(now time.Time) (frozen, changed bool) { return g.Freeze.Update(now) }

// Failing calls Freeze.Failing.
func (g *LocalGuardrails) Failing(now time.Time) int { return g.Freeze.Failing(now) }

// Frozen calls Freeze.Frozen.
func (g *LocalGuardrails) Frozen() bool { return g.Freeze.Frozen() }

// Resizer is implemented by Guardrails whose limits are shares of the
// fleet's size. The Plan calls Resize with the number of instances it
// keeps whenever its schedule (Config.Schedule) changes that number, so
// the shares are of the current target rather than of size. It is
// optional: Guardrails that do not implement it keep their limits.
type Resizer interface {
	Resize(size int)
}

var _ Resizer = (*LocalGuardrails)(nil)

// Resize makes size the fleet size of the freeze's share and, when
// budget.max is a percentage, of the budget (built by NewGuardrails).
func (g *LocalGuardrails) Resize(size int) {
	g.Freeze.Resize(size)
	if g.budgetOf != nil {
		g.Budget.SetMax(g.budgetOf(size))
	}
}

// Backoff spaces the restarts of one slot whose process keeps exiting: base,
// doubling per consecutive exit up to max; a process that ran at least
// reset before exiting starts the sequence over.
type Backoff struct {
	base, max, reset time.Duration
	exits            int
}

// NewBackoff returns a backoff with the configured delays.
func NewBackoff(c BackoffConfig) *Backoff {
	return &Backoff{base: c.Base, max: c.Max, reset: c.Reset}
}

// Exited records that a process started at startedAt exited at now and
// returns how long to wait before starting the next one.
func (b *Backoff) Exited(startedAt, now time.Time) time.Duration {
	if now.Sub(startedAt) >= b.reset {
		b.exits = 0
	}
	b.exits++
	d := b.base
	for i := 1; i < b.exits && d < b.max; i++ {
		if d > b.max/2 {
			d = b.max // doubling would pass max, or overflow
			break
		}
		d *= 2
	}
	return min(d, b.max)
}

// Exits is the number of consecutive exits counted.
func (b *Backoff) Exits() int { return b.exits }

// disabledBelowZero maps the file's "0 disables" onto the policies', which
// take a negative value for "disabled".
func disabledBelowZero(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}
