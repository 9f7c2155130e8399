package lb

// This file holds the request's path through the Shedder, read on every
// request without its mutex: Admit and Blocked, which only ask, and
// Enter, which also takes a slot of each congestion window the request
// goes through, with the Ticket that gives them back.

import "time"

// Admit reports whether a request that needs dep is admitted at now; u is
// a uniform random number in [0,1), drawn per request, that places the
// request within the admitted share while recovering. Unknown
// dependencies are admitted.
func (s *Shedder) Admit(dep string, now time.Time, u float64) bool {
	d, ok := s.view.Load().deps[dep]
	return !ok || d.admit(now, u)
}

// Blocked reports which dependency, if any, makes the edge shed a request
// for path at now (u as for Admit): the first, by route order or by name,
// of the dependencies the path needs that does not admit it.
func (s *Shedder) Blocked(path string, now time.Time, u float64) (dep string, blocked bool) {
	v := s.view.Load()
	deps := v.all
	if i := v.routes.match(path); i >= 0 {
		deps = v.routeDeps[i]
	}
	for _, d := range deps {
		if !d.admit(now, u) {
			return d.name, true
		}
	}
	return "", false
}

// Refusal is why Enter refused a request: Dep is the dependency (empty:
// not refused); Full says that it is up but its congestion window is
// full, or it is stalled (Stalled: it has stopped answering the requests
// in flight, stall.go): at its capacity, an overloaded answer; neither
// says it is shed (down: a dependency_unavailable answer).
type Refusal struct {
	Dep     string
	Full    bool
	Stalled bool
}

// Enter decides, as Blocked does, whether a request for path at now is
// refused at the edge (u as for Admit), or because a dependency it needs
// is stalled, and, if it is not, takes a slot of the congestion window of
// every dependency it needs that is recovering by feedback; the Ticket
// gives them back. Sent counts it in flight for stall detection.
func (s *Shedder) Enter(path string, now time.Time, u float64) (Ticket, Refusal) {
	v := s.view.Load()
	deps := v.all
	if i := v.routes.match(path); i >= 0 {
		deps = v.routeDeps[i]
	}
	t := Ticket{deps: deps, at: now}
	for _, d := range deps {
		switch {
		case d.win != nil:
			if !d.win.acquire(now) {
				t.Done(now, false, false)
				return Ticket{}, Refusal{Dep: d.name, Full: true}
			}
			if t.win == nil {
				t.win = d.win
			} else {
				t.more = append(t.more, d.win)
			}
		case !d.admit(now, u):
			t.Done(now, false, false)
			return Ticket{}, Refusal{Dep: d.name}
		case d.flow.stalled(now, d.stall, d.minIn):
			t.Done(now, false, false)
			return Ticket{}, Refusal{Dep: d.name, Full: true, Stalled: true}
		}
	}
	return t, Refusal{}
}

// Sent counts the ticket's request in flight to each of its dependencies
// from now, when it is sent to an instance: a request still uploading its
// body to the balancer, or waiting at the edge, is not waiting on them.
// Later calls do nothing.
func (t *Ticket) Sent(now time.Time) {
	if t.flows || !t.sent.IsZero() {
		return
	}
	for _, d := range t.deps {
		d.flow.enter(now)
	}
	t.flows, t.sent = true, now
}

// Done ends the ticket's request. answered is whether an instance
// answered it (or failed it at the gateway), at end (its response
// headers, or the failure), and failed whether that was a 5xx or a
// gateway failure: the windows it holds move by it, and while the
// dependency is ok its latency counts for its baseline. An unanswered
// request (refused later at the edge, its client gone) gives its slots
// back and says nothing. It locks nothing but the windows.
func (t Ticket) Done(end time.Time, answered, failed bool) {
	if t.win != nil {
		t.win.done(t.at, end, answered, failed)
		for _, w := range t.more {
			w.done(t.at, end, answered, failed)
		}
	}
	if t.flows {
		t.leave(end, answered, failed)
	}
	if !answered {
		return
	}
	latency := end.Sub(t.at)
	for _, d := range t.deps {
		if d.obs != nil && d.win == nil {
			d.obs.add(latency, failed)
		}
	}
}

// Answered counts the ticket's request out of the flows of its
// dependencies when its response headers arrive at end (failed: a 5xx):
// what follows (a body, a stream that lasts hours) does not wait on the
// dependency and must not hold a stall open. Done then leaves them alone.
func (t *Ticket) Answered(end time.Time, failed bool) {
	if t.flows {
		t.flows = false
		t.leave(end, true, failed)
	}
}

func (t *Ticket) leave(end time.Time, answered, failed bool) {
	for _, d := range t.deps {
		d.flow.leave(t.sent, end, answered, failed, d.stall)
	}
}
