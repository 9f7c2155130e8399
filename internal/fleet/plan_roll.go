package fleet

import (
	"fmt"
	"time"
)

// roll is a rolling restart under way: one slot at a time, a new process
// (the surge) is started next to the old one; once the new one is ready
// it takes the slot and the old one is stopped, and the next slot waits
// until the old one has exited, so the surge is one and the number of
// ready instances never drops.
type roll struct {
	begin time.Time // processes started before it are restarted
	slot  int       // the slot in progress, -1 before the first
	old   *member   // the slot's process being replaced
	surge *member   // its new process, until ready
	// deadline is when a new process that is not ready yet is abandoned.
	deadline time.Time
	// draining: the new process took the slot; waiting for old to exit.
	draining bool
}

// Roll begins a rolling restart at now: every slot's process started
// before now is replaced in turn, new process first. It returns
// ErrRestartInProgress while one is under way, ErrNotRunning after
// Shutdown. The restart ends with an
// ActRollDone: Err nil once every slot is done, wrapping ErrNotReady when a
// new process did not become ready within ready_timeout or exited first
// (it is stopped, and the old one kept), or the start error.
func (p *Plan) Roll(now time.Time) ([]Action, error) {
	if p.down {
		return nil, ErrNotRunning
	}
	if p.roll != nil {
		return nil, ErrRestartInProgress
	}
	p.roll = &roll{begin: now, slot: -1}
	return p.rollNext(now), nil
}

// CancelRoll ends the rolling restart under way, if any, with err: a new
// process that is not ready yet is stopped; an old one being stopped goes
// on stopping.
func (p *Plan) CancelRoll(err error, now time.Time) []Action {
	r := p.roll
	if r == nil {
		return nil
	}
	var out []Action
	if m := r.surge; m != nil && m.slot.surge == m {
		out = append(out, p.stop(m, "rolling restart abandoned"))
	}
	return append(out, p.endRoll(fmt.Errorf("rolling restart: slot %d: %w", r.slot, err)))
}

// rollNext starts the new process of the next slot whose process is older
// than the restart, or ends the restart when none is left.
func (p *Plan) rollNext(now time.Time) []Action {
	r := p.roll
	for i := r.slot + 1; i < len(p.slots); i++ {
		s := p.slots[i]
		if s.cur == nil || !s.cur.startedAt.Before(r.begin) {
			continue // restarting, or already new
		}
		m := p.newMember(s, now)
		s.surge = m
		r.slot, r.old, r.surge = i, s.cur, m
		r.deadline, r.draining = now.Add(p.cfg.ReadyTimeout), false
		return []Action{{Kind: ActStart, Slot: i, ID: m.id, Surge: true}}
	}
	return []Action{p.endRoll(nil)}
}

// rollReady moves the restart on once its new process is ready: the new
// process takes the slot (unless it already did, its predecessor having
// exited) and the old one is stopped; the next slot waits for its exit.
func (p *Plan) rollReady(now time.Time) []Action {
	r := p.roll
	m := r.surge
	s := m.slot
	var out []Action
	if s.surge == m {
		s.surge = nil
		if cur := s.cur; cur != nil {
			out = append(out,
				p.stop(cur, ReasonRolling),
				Action{Kind: ActReplaced, Slot: s.index, ID: cur.id, Reason: ReasonRolling, Successor: m.id})
		}
		s.cur, s.restartAt = m, time.Time{}
		p.setPrev(s, nil)
		p.rails.Recover(s.key)
	}
	r.surge, r.draining = nil, true
	if r.old.state == StateReplaced {
		out = append(out, p.rollNext(now)...) // the old one has exited already
	}
	return out
}

// rollTick abandons a new process that is not ready by the deadline.
func (p *Plan) rollTick(now time.Time) []Action {
	r := p.roll
	if r == nil || r.draining || now.Before(r.deadline) {
		return nil
	}
	m := r.surge
	var out []Action
	if m.slot.surge == m {
		out = append(out, p.stop(m, "rolling restart abandoned"))
	}
	return append(out, p.endRoll(fmt.Errorf("rolling restart: slot %d: %w: %s not ready after %s", r.slot, ErrNotReady, m.id, p.cfg.ReadyTimeout)))
}

func (p *Plan) endRoll(err error) Action {
	p.roll = nil
	return Action{Kind: ActRollDone, Err: err}
}
