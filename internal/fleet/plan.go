package fleet

import (
	"fmt"
	"slices"
	"time"
)

// Plan is the fleet's decision layer: it keeps the state of every slot
// and of every process in it, takes observations with the time they were
// made (Started, StartFailed, Ready, Checked, Exited, Tick, and SetHosts,
// which Tick acts on) and operator commands (Boot, Roll, CancelRoll,
// Shutdown), and answers each with the Actions to take, in order. Its
// schedule (Config.Schedule) sets how many slots it keeps: Boot and Tick
// scale it (plan_scale.go). It starts nothing, reads no clock and keeps no
// goroutine: the Fleet runs the processes and the checks, feeds the plan,
// applies its actions and turns them into logs, events and metrics; a
// simulation can drive it on virtual time.
//
// Contract with the caller:
//
//   - An ActStart is applied at once, and its outcome reported before the
//     next observation: Started on success, StartFailed otherwise. Either
//     may return more actions, to apply before the rest of the batch.
//   - Tick is called no later than Next, and at least every check interval
//     (the freeze may change by time alone, or elsewhere).
//   - Observations about an ID the plan does not know (any more) are
//     ignored.
//
// A Plan is not safe for concurrent use: the Fleet calls it under its lock.
type Plan struct {
	cfg    Config
	rails  Guardrails
	slots  []*slot
	byID   map[string]*member
	nextID int
	// held: an ActBudgetExhausted was returned since the last replacement.
	held bool
	roll *roll
	// down: Shutdown was called; observations change nothing.
	down bool

	// size is the number of slots kept: slots[:size] are the fleet's,
	// slots[size:] were scaled away and are listed until their processes
	// have exited. Config.Size, or more while a schedule window is open.
	size  int
	sched *schedule
	hosts int  // live hosts, for fleet-scope windows; at least 1
	want  want // the schedule's verdict at the last Boot or Tick
}

// slot is one of the places of the fleet: Size of them, and more while
// the schedule asks for more. Its process changes; the slot stays.
type slot struct {
	index    int
	key      string    // the slot's key in the guardrails
	cur      *member   // the serving process; nil while waiting to restart
	surge    *member   // a rolling restart's new process, not yet promoted
	retiring []*member // processes told to stop that have not exited
	prev     *member   // the last exited process, until cur is running

	backoff     *Backoff
	restartAt   time.Time // when to start cur again; zero: no restart due
	restarts    int
	addrRetries int
}

// member is one process of a slot, as the plan sees it.
type member struct {
	id        string
	slot      *slot
	state     State
	reason    string // why it is stopping or was replaced
	restarts  int    // the slot's restarts before it started
	startedAt time.Time
	checks    *Checks
	last      Probe
	ready     bool
	// replaces is the unhealthy process this one was started to replace:
	// it is stopped once this one's start is reported (either way).
	replaces *member
}

// maxAddrRetries bounds the immediate restarts, with fresh ports, of an
// instance whose port was taken between the fleet choosing it and the
// instance binding it. Beyond that the exit counts as a crash.
const maxAddrRetries = 3

// NewPlan returns the plan of a fleet configured by cfg (with its defaults
// set), deciding replacements through rails; nil rails are
// NewGuardrails(&cfg). It fails if cfg does not validate.
func NewPlan(cfg Config, rails Guardrails) (*Plan, error) {
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rails == nil {
		rails = NewGuardrails(&cfg)
	}
	sched, err := newSchedule(cfg.Schedule, cfg.ScheduleLead)
	if err != nil {
		return nil, err
	}
	p := &Plan{cfg: cfg, rails: rails, byID: map[string]*member{}, size: cfg.Size, sched: sched, hosts: 1}
	for i := range cfg.Size {
		p.slots = append(p.slots, p.newSlot(i))
	}
	p.want = want{n: cfg.Size, hosts: 1}
	return p, nil
}

func (p *Plan) newSlot(i int) *slot {
	return &slot{index: i, key: fmt.Sprintf("slot-%d", i), backoff: NewBackoff(p.cfg.Backoff)}
}

// Boot starts every slot: Size of them, or more if a schedule window is
// open at now (an ActScaled comes first then).
func (p *Plan) Boot(now time.Time) []Action {
	var out []Action
	if w := p.evaluate(now); w.n > p.size {
		out = append(out, p.scaled(w))
		p.grow(w.n)
	}
	for _, s := range p.slots[:p.size] {
		m := p.newMember(s, now)
		s.cur = m
		out = append(out, Action{Kind: ActStart, Slot: s.index, ID: m.id})
	}
	return out
}

// newMember names a new process of s, started at now.
func (p *Plan) newMember(s *slot, now time.Time) *member {
	p.nextID++
	m := &member{
		id:        fmt.Sprintf("i-%d", p.nextID),
		slot:      s,
		state:     StateStarting,
		restarts:  s.restarts,
		startedAt: now,
		checks:    NewChecks(p.cfg.Check.UnhealthyThreshold, p.cfg.Grace, now),
	}
	p.byID[m.id] = m
	return m
}

// Started reports that the process of an ActStart runs.
func (p *Plan) Started(id string, now time.Time) []Action {
	m := p.member(id)
	if m == nil || m.replaces == nil {
		return nil
	}
	old := m.replaces
	m.replaces = nil
	return []Action{
		{Kind: ActStop, Slot: old.slot.index, ID: old.id, Reason: old.reason},
		{Kind: ActReplaced, Slot: old.slot.index, ID: old.id, Reason: old.reason, Successor: id},
	}
}

// StartFailed reports that the process of an ActStart could not be
// started. A slot's serving process is tried again after the crash
// backoff; a rolling restart's new one ends the restart.
func (p *Plan) StartFailed(id string, err error, now time.Time) []Action {
	m := p.member(id)
	if m == nil || m.state != StateStarting {
		return nil
	}
	s := m.slot
	delete(p.byID, id)
	var out []Action
	switch {
	case s.surge == m:
		s.surge = nil
		out = append(out, Action{Kind: ActStartFailed, Slot: s.index, ID: id, Surge: true, Err: err})
		if r := p.roll; r != nil && r.surge == m {
			out = append(out, p.endRoll(fmt.Errorf("rolling restart: slot %d: %w", s.index, err)))
		}
	case s.cur == m:
		s.cur = nil
		d := s.backoff.Exited(now, now)
		s.restartAt = now.Add(d)
		out = append(out, Action{Kind: ActStartFailed, Slot: s.index, ID: id, Err: err, After: d})
	}
	if old := m.replaces; old != nil {
		out = append(out,
			Action{Kind: ActStop, Slot: s.index, ID: old.id, Reason: old.reason},
			Action{Kind: ActReplaced, Slot: s.index, ID: old.id, Reason: old.reason, Err: err})
	}
	return out
}

// Ready reports that a process's traffic check passed at now. Only the
// first pass of a process counts.
func (p *Plan) Ready(id string, now time.Time) []Action {
	m := p.member(id)
	if m == nil || m.ready || (m.state != StateStarting && m.state != StateRunning) {
		return nil
	}
	m.ready, m.state = true, StateRunning
	s := m.slot
	if s.cur == m {
		p.setPrev(s, nil)
	}
	out := []Action{{Kind: ActReady, Slot: s.index, ID: id, After: now.Sub(m.startedAt)}}
	if r := p.roll; r != nil && r.surge == m {
		out = append(out, p.rollReady(now)...)
	}
	return out
}

// Checked reports the result of a process's replacement check (the
// liveness check, or the traffic check with replace_on: traffic) taken at
// now. A slot's serving process that fails it threshold times in a row
// after its grace period is replaced, if the guardrails allow.
func (p *Plan) Checked(id string, c Probe, now time.Time) []Action {
	m := p.member(id)
	if m == nil || (m.state != StateStarting && m.state != StateRunning) {
		return nil
	}
	tr := m.checks.Observe(c.OK, now)
	m.last = c
	m.last.Failures = m.checks.Failures()
	s := m.slot
	if s.cur != m {
		return nil // a rolling restart's new instance is judged by the restart
	}
	// For the freeze an instance is failing from its first counted failure,
	// not from its threshold: instances failing together are seen as
	// correlated before the first of them would be replaced.
	switch {
	case c.OK:
		p.rails.Recover(s.key)
	case m.checks.Failures() > 0:
		p.rails.Fail(s.key, now)
	}
	var out []Action
	switch tr {
	case Recovered:
		out = append(out, Action{Kind: ActRecovered, Slot: s.index, ID: id})
	case BecameUnhealthy:
		out = append(out, Action{Kind: ActUnhealthy, Slot: s.index, ID: id, Check: m.last})
	}
	out = append(out, p.updateFreeze(now)...)
	if m.checks.Unhealthy() {
		out = append(out, p.replace(m, now)...)
	}
	return out
}

// replace replaces m, the unhealthy serving process of its slot, if the
// guardrails allow it: the successor starts first, then m is stopped
// (once the start is reported).
func (p *Plan) replace(m *member, now time.Time) []Action {
	s := m.slot
	switch p.rails.Request(now) {
	case HoldFrozen:
		return nil // the freeze was reported when it began
	case HoldBudget:
		if p.held {
			return nil
		}
		p.held = true
		return []Action{{Kind: ActBudgetExhausted, Slot: s.index, ID: m.id}}
	}
	p.held = false
	p.rails.Gone(s.key, now)
	p.retire(m, p.cfg.ReplaceOn) // ReasonLiveness or ReasonTraffic
	next := p.newMember(s, now)
	next.replaces = m
	s.cur = next
	return []Action{{Kind: ActStart, Slot: s.index, ID: next.id}}
}

// retire takes m out of service: it is stopping for reason and listed
// until it exits.
func (p *Plan) retire(m *member, reason string) {
	s := m.slot
	if s.cur == m {
		s.cur = nil
	}
	if s.surge == m {
		s.surge = nil
	}
	m.state, m.reason = StateStopping, reason
	s.retiring = append(s.retiring, m)
}

// stop retires m and returns the action that stops it.
func (p *Plan) stop(m *member, reason string) Action {
	p.retire(m, reason)
	return Action{Kind: ActStop, Slot: m.slot.index, ID: m.id, Reason: reason}
}

// updateFreeze re-evaluates the freeze and reports a change. When it ends,
// every serving process's failures so far are forgiven.
func (p *Plan) updateFreeze(now time.Time) []Action {
	frozen, changed := p.rails.Update(now)
	if !changed {
		return nil
	}
	n := p.rails.Failing(now)
	if frozen {
		return []Action{{Kind: ActFrozen, Failing: n}}
	}
	for _, s := range p.slots {
		if s.cur != nil {
			s.cur.checks.Forgive()
		}
	}
	return []Action{{Kind: ActUnfrozen, Failing: n}}
}

// Exited reports that a process exited at now, how it is told by x.
func (p *Plan) Exited(id string, x Exit, now time.Time) []Action {
	m := p.member(id)
	if m == nil || m.state == StateReplaced {
		return nil
	}
	s := m.slot
	if m.state == StateStopping {
		m.state = StateReplaced
		s.retiring = slices.DeleteFunc(s.retiring, func(q *member) bool { return q == m })
		if s.index >= p.size { // its slot was scaled away
			p.forget(m)
			p.trim()
		} else if s.cur == nil || !s.cur.ready {
			p.setPrev(s, m)
		} else {
			p.forget(m)
		}
		out := []Action{{Kind: ActStopped, Slot: s.index, ID: id, Reason: m.reason, Detail: x.Status}}
		if r := p.roll; r != nil && r.draining && r.old == m {
			out = append(out, p.rollNext(now)...)
		}
		return out
	}
	// It exited unasked.
	m.state, m.reason = StateReplaced, "exited: "+x.Status
	crash := Action{Kind: ActCrashed, Slot: s.index, ID: id, Detail: x.Status}
	if x.Output != "" {
		crash.Detail += ": " + x.Output
	}
	if s.surge == m {
		s.surge = nil
		p.forget(m)
		crash.Surge = true
		out := []Action{crash}
		if r := p.roll; r != nil && r.surge == m {
			out = append(out, p.endRoll(fmt.Errorf("rolling restart: slot %d: %w: %s exited: %s", s.index, ErrNotReady, id, x.Status)))
		}
		return out
	}
	if s.cur != m {
		p.forget(m)
		return []Action{crash}
	}
	s.cur = nil
	p.setPrev(s, m)
	if s.surge != nil {
		// A rolling restart's new instance was starting: it takes over.
		s.cur, s.surge = s.surge, nil
		crash.Successor = s.cur.id
		p.rails.Fail(s.key, now)
		p.rails.Gone(s.key, now)
		return append([]Action{crash}, p.updateFreeze(now)...)
	}
	var freeze []Action
	if x.AddrInUse && !m.ready && s.addrRetries < maxAddrRetries {
		s.addrRetries++
		crash.PortTaken = true
	} else {
		s.addrRetries = 0
		p.rails.Fail(s.key, now)
		p.rails.Gone(s.key, now)
		freeze = p.updateFreeze(now)
		crash.After = s.backoff.Exited(m.startedAt, now)
	}
	s.restartAt = now.Add(crash.After)
	return append([]Action{crash}, freeze...)
}

// Tick starts the processes whose restart is due, ends a rolling restart
// whose new instance is late, scales the fleet to its schedule, and
// re-evaluates the freeze.
func (p *Plan) Tick(now time.Time) []Action {
	if p.down {
		return nil
	}
	var out []Action
	for _, s := range p.slots {
		if s.restartAt.IsZero() || s.cur != nil || now.Before(s.restartAt) {
			continue
		}
		s.restartAt = time.Time{}
		s.restarts++
		m := p.newMember(s, now)
		s.cur = m
		out = append(out, Action{Kind: ActStart, Slot: s.index, ID: m.id, Restart: true})
	}
	out = append(out, p.rollTick(now)...)
	out = append(out, p.scale(now)...)
	return append(out, p.updateFreeze(now)...)
}

// Next is when Tick next has something to do by time alone (a restart is
// due, a rolling restart's new instance is late, a schedule window's lead
// begins or a window closes, as of the last Boot or Tick); zero if nothing
// is scheduled.
func (p *Plan) Next() time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, s := range p.slots {
		if s.cur == nil {
			earlier(s.restartAt)
		}
	}
	if r := p.roll; r != nil && !r.draining {
		earlier(r.deadline)
	}
	earlier(p.want.next)
	return next
}

// Shutdown marks every process the fleet still runs as stopping (reason
// "fleet stopping", unless it was already stopping) and returns their IDs.
// A rolling restart under way ends without an ActRollDone. Observations
// and commands after Shutdown are ignored.
func (p *Plan) Shutdown() []string {
	p.roll, p.down = nil, true
	var ids []string
	for _, s := range p.slots {
		var own []*member
		for _, m := range append([]*member{s.cur, s.surge}, s.retiring...) {
			if m == nil {
				continue
			}
			own = append(own, m)
			if m.state != StateStopping {
				m.state, m.reason = StateStopping, "fleet stopping"
			}
			ids = append(ids, m.id)
		}
		p.setPrev(s, nil)
		s.cur, s.surge, s.retiring = nil, nil, own
		s.restartAt = time.Time{}
	}
	return ids
}

// Stopped reports that every process Shutdown returned has exited: the
// plan forgets them all.
func (p *Plan) Stopped() {
	for _, s := range p.slots {
		for _, m := range s.retiring {
			delete(p.byID, m.id)
		}
		s.retiring = nil
	}
}

// setPrev makes m (or nobody) the slot's last exited process, and forgets
// the one it replaces.
func (p *Plan) setPrev(s *slot, m *member) {
	old := s.prev
	s.prev = m
	if old != nil && old != m {
		p.forget(old)
	}
}

// forget drops m unless its slot still lists it.
func (p *Plan) forget(m *member) {
	s := m.slot
	if m == s.cur || m == s.surge || m == s.prev || slices.Contains(s.retiring, m) {
		return
	}
	delete(p.byID, m.id)
}

// member returns the process id, or nil if the plan does not list it or
// is shut down.
func (p *Plan) member(id string) *member {
	if p.down {
		return nil
	}
	return p.byID[id]
}

// Known reports whether the plan lists the process id: it runs, or is the
// last exited process of its slot.
func (p *Plan) Known(id string) bool { return p.byID[id] != nil }

// Frozen reports whether correlated failures freeze replacement, as of
// the last update.
func (p *Plan) Frozen() bool { return p.rails.Frozen() }

// Announced returns the IDs of the processes to announce to the load
// balancer, in slot order: started and not told to stop, ready or not.
func (p *Plan) Announced() []string {
	var out []string
	for _, s := range p.slots {
		for _, m := range []*member{s.cur, s.surge} {
			if m != nil && (m.state == StateStarting || m.state == StateRunning) {
				out = append(out, m.id)
			}
		}
	}
	return out
}

// Status describes every process the plan lists, in slot order: for each
// slot its last exited process while the successor is not running yet,
// processes being stopped, the current one and a rolling restart's new
// one. PID and addresses are the caller's to fill in.
func (p *Plan) Status() []ProcessStatus {
	var out []ProcessStatus
	for _, s := range p.slots {
		ms := append([]*member{s.prev}, s.retiring...)
		for _, m := range append(ms, s.cur, s.surge) {
			if m == nil {
				continue
			}
			out = append(out, ProcessStatus{
				ID: m.id, Slot: s.index, State: m.state, Reason: m.reason,
				Restarts: m.restarts, StartedAt: m.startedAt, LastCheck: m.last,
			})
		}
	}
	return out
}
