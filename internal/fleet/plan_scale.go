package fleet

import "time"

// Scaling to the schedule. The Plan keeps p.size slots: Config.Size, or
// more while a window of Config.Schedule (or its lead) is open. When the
// schedule asks for more, new slots (or slots scaled away whose processes
// are still stopping) get a process each at once, through the same start,
// ready and replacement machinery as the others. When it asks for fewer,
// the slots above the new size are emptied, the newest (highest) first:
// their processes are stopped gracefully for ReasonScaleDown, a pending
// restart is dropped, and each slot's failure stops counting for the
// freeze. Never below Config.Size (the schedule never asks for less), and
// never while a rolling restart is under way: the scale-down waits for the
// first Tick after it ends.

// SetHosts tells the plan how many hosts are live (at least 1; less counts
// as 1). Fleet-scope windows are split over them; the next Tick acts on a
// change.
func (p *Plan) SetHosts(n int) { p.hosts = max(1, n) }

// evaluate asks the schedule what to keep at now, and remembers it.
func (p *Plan) evaluate(now time.Time) want {
	p.want = p.sched.update(now, p.cfg.Size, p.hosts)
	return p.want
}

// scale moves the number of slots kept towards the schedule's verdict at
// now: up at once, down unless a rolling restart is under way.
func (p *Plan) scale(now time.Time) []Action {
	w := p.evaluate(now)
	switch {
	case w.n > p.size:
		return p.scaleUp(w, now)
	case w.n < p.size && p.roll == nil:
		return p.scaleDown(w)
	}
	return nil
}

// scaleUp starts a process in each slot from p.size up to w.n.
func (p *Plan) scaleUp(w want, now time.Time) []Action {
	out := []Action{p.scaled(w)}
	from := p.size
	p.grow(w.n)
	for _, s := range p.slots[from:p.size] {
		m := p.newMember(s, now)
		s.cur = m
		out = append(out, Action{Kind: ActStart, Slot: s.index, ID: m.id})
	}
	return out
}

// grow keeps n slots (n > p.size), adding those it lacks. A slot scaled
// away whose process is still stopping is taken back as it is.
func (p *Plan) grow(n int) {
	for i := len(p.slots); i < n; i++ {
		p.slots = append(p.slots, p.newSlot(i))
	}
	p.resize(n)
}

// scaleDown empties the slots from p.size-1 down to w.n, newest first.
func (p *Plan) scaleDown(w want) []Action {
	out := []Action{p.scaled(w)}
	for i := p.size - 1; i >= w.n; i-- {
		s := p.slots[i]
		s.restartAt = time.Time{}
		if s.cur != nil {
			out = append(out, p.stop(s.cur, ReasonScaleDown))
		}
		p.setPrev(s, nil)
		p.rails.Recover(s.key)
	}
	p.resize(w.n)
	p.trim()
	return out
}

// resize makes n the number of slots kept, and tells the guardrails.
func (p *Plan) resize(n int) {
	p.size = n
	if r, ok := p.rails.(Resizer); ok {
		r.Resize(n)
	}
}

// trim drops the slots above p.size that no process is left in, from the
// end (a slot's index is its place, so one still stopping keeps those
// below it listed).
func (p *Plan) trim() {
	for n := len(p.slots); n > p.size; n-- {
		s := p.slots[n-1]
		if s.cur != nil || s.surge != nil || len(s.retiring) > 0 {
			return
		}
		p.setPrev(s, nil)
		p.slots = p.slots[:n-1]
	}
}

// scaled reports the change from p.size to w.n.
func (p *Plan) scaled(w want) Action {
	a := Action{Kind: ActScaled, From: p.size, Target: w.n, Detail: w.describe(p.cfg.Size)}
	if w.w != nil {
		a.Window = w.w.cfg.Name
	}
	return a
}

// Target is the number of slots the plan keeps: Config.Size, or more
// while a schedule window is open.
func (p *Plan) Target() int { return p.size }

// Schedule describes the target and the window that sets it, as of the
// last Boot or Tick.
func (p *Plan) Schedule() ScheduleStatus {
	w := p.want
	st := ScheduleStatus{Size: p.cfg.Size, Target: p.size, Wanted: w.n, Hosts: p.hosts, NextChange: w.next}
	if w.w != nil {
		st.Window, st.Opens, st.Closes = w.w.cfg.Name, w.open, w.close
	}
	return st
}
