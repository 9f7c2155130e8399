package lb

// This file holds what the balancer says of its dependencies' shedding:
// a log line and an event per state change, a log line per evaluation
// that saw stall refusals.

import (
	"fmt"
	"slices"
	"time"
)

// loggedDep is a dependency's shedding state and stall count as last
// logged.
type loggedDep struct {
	state  ShedState
	stalls int64
}

// shedChangesLocked logs shedding state changes and stalls, and keeps a
// precomputed answer for every tracked dependency.
func (b *Balancer) shedChangesLocked(now time.Time) {
	deps := b.shedder.Status(now)
	answers := *b.answers.Load()
	rebuild := len(answers) != len(deps)
	for _, d := range deps {
		if _, ok := answers[d.Name]; !ok {
			rebuild = true
		}
		prev, seen := b.shedState[d.Name]
		if !seen {
			prev.state = ShedOK
		}
		b.shedState[d.Name] = loggedDep{d.State, d.Stalls}
		if d.Stalls > prev.stalls {
			b.log.Warn("stall: the dependency stopped answering the requests in flight; refused more at the edge",
				"dependency", d.Name, "refused", d.Stalls-prev.stalls, "stall_time", d.StallTime)
		}
		if d.State == prev.state {
			continue
		}
		attrs := []any{"dependency", d.Name, "down", d.Down, "ready", d.Ready, "override", string(d.Override)}
		switch d.State {
		case ShedShedding:
			b.log.Warn("shedding: answering 503 at the edge for requests that need the dependency", attrs...)
			why := fmt.Sprintf("%d of %d ready instances report it down", d.Down, d.Ready)
			if d.Override == OverrideOn {
				why = "forced on by an operator"
			}
			b.event("shedding_on", fmt.Sprintf("%s: %s; answering 503 at the edge", d.Name, why))
		case ShedRecovering:
			if d.Recovery == RecoveryWindow {
				b.log.Info("shedding: dependency back; ramping the admitted share", append(attrs, "recovery", string(d.Recovery), "recovery_end", d.RecoveryEnd)...)
				b.event("shedding_recovering", fmt.Sprintf("%s: back; ramping the admitted share until %s", d.Name, d.RecoveryEnd.Format("15:04:05")))
				break
			}
			b.log.Info("shedding: dependency back; admitting through a congestion window", append(attrs, "recovery", string(d.Recovery), "window", d.Window)...)
			b.event("shedding_recovering", fmt.Sprintf("%s: back; admitting through a congestion window of %g in flight, growing while answers come back in time", d.Name, d.Window))
		case ShedOK:
			b.log.Info("shedding: ended", attrs...)
			b.event("shedding_off", fmt.Sprintf("%s: every request admitted", d.Name))
		}
	}
	if len(b.shedState) > len(deps) {
		for name := range b.shedState {
			if !slices.ContainsFunc(deps, func(d DependencyStatus) bool { return d.Name == name }) {
				delete(b.shedState, name)
			}
		}
	}
	if rebuild {
		m := make(map[string]*answer, len(deps))
		for _, d := range deps {
			m[d.Name] = shedAnswer(d.Name)
		}
		b.answers.Store(&m)
	}
}
