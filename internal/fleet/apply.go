package fleet

import (
	"errors"
	"fmt"
	"time"
)

// applyLocked applies the plan's actions in order; the outcome of a start
// goes back to the plan at once, and what it answers is applied next.
func (f *Fleet) applyLocked(acts []Action, now time.Time) {
	if len(acts) == 0 {
		return
	}
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		if more := f.doLocked(a, now); len(more) > 0 {
			acts = append(more, acts...)
		}
	}
	f.pruneLocked()
	f.publishLocked()
}

// pruneLocked forgets the processes the plan no longer lists.
func (f *Fleet) pruneLocked() {
	for id := range f.procs {
		if !f.plan.Known(id) {
			delete(f.procs, id)
		}
	}
}

// doLocked applies one action: it starts or stops a process, ends a
// rolling restart, or logs, records and counts what the plan decided. It
// returns what the plan answers to the outcome of a start.
func (f *Fleet) doLocked(a Action, now time.Time) []Action {
	pid := 0
	if p := f.procs[a.ID]; p != nil {
		pid = p.pid
	}
	size := f.plan.Target() // the instances kept now: the shares are of it
	switch a.Kind {
	case ActStart:
		if a.Restart {
			f.m.restarts.Inc()
		}
		if err := f.startLocked(a, now); err != nil {
			return f.plan.StartFailed(a.ID, err, now)
		}
		return f.plan.Started(a.ID, now)
	case ActStop:
		if p := f.procs[a.ID]; p != nil {
			f.stopLocked(p)
		}
	case ActRollDone:
		if f.rollDone != nil {
			f.rollDone <- a.Err
			f.rollDone = nil
		}
	case ActStartFailed:
		switch {
		case errors.Is(a.Err, ErrNotRunning): // the fleet is stopping
		case a.Surge:
			f.log.Error("start of rolling restart's new instance failed", "slot", a.Slot, "err", a.Err)
		default:
			f.log.Error("start failed", "slot", a.Slot, "err", a.Err, "retry_in", a.After)
		}
	case ActReady:
		after := a.After.Round(time.Millisecond)
		f.eventLocked(Event{Time: now, Kind: EventReady, Instance: a.ID, PID: pid, Detail: fmt.Sprintf("%s after start", after)})
		f.log.Info("instance ready", "instance", a.ID, "after", after)
	case ActUnhealthy:
		f.log.Warn("instance unhealthy", "instance", a.ID, "check", a.Check.Target,
			"failures", a.Check.Failures, "err", a.Check.Error)
	case ActRecovered:
		f.log.Info("instance recovered", "instance", a.ID)
	case ActReplaced:
		detail := "successor " + a.Successor
		if a.Err != nil {
			detail = "successor failed to start: " + a.Err.Error()
		}
		f.m.replacements.WithLabelValues(a.Reason).Inc()
		f.eventLocked(Event{Time: now, Kind: EventReplaced, Instance: a.ID, PID: pid, Reason: a.Reason, Detail: detail})
		f.log.Warn("instance replaced", "instance", a.ID, "reason", a.Reason, "detail", detail)
	case ActBudgetExhausted:
		budget := f.cfg.Budget.Max.Of(size)
		f.eventLocked(Event{Time: now, Kind: EventBudgetExhausted, Instance: a.ID, PID: pid,
			Detail: fmt.Sprintf("%d replacements per %s spent; keeping the unhealthy instance", budget, f.cfg.Budget.Window)})
		f.log.Warn("replacement budget exhausted; keeping unhealthy instance", "instance", a.ID,
			"budget_max", budget, "budget_window", f.cfg.Budget.Window)
	case ActFrozen:
		f.m.frozen.Set(1)
		f.eventLocked(Event{Time: now, Kind: EventFrozen,
			Detail: fmt.Sprintf("%d of %d instances failed within %s: shared cause, replacing nothing", a.Failing, size, f.cfg.Freeze.Window)})
		f.log.Warn("fleet frozen: correlated failures, replacing nothing", "failing", a.Failing, "size", size,
			"share", f.cfg.Freeze.Share, "window", f.cfg.Freeze.Window)
	case ActUnfrozen:
		f.m.frozen.Set(0)
		f.eventLocked(Event{Time: now, Kind: EventUnfrozen,
			Detail: fmt.Sprintf("%d of %d instances failing; their failures so far are forgiven", a.Failing, size)})
		f.log.Info("fleet unfrozen: failures cleared", "failing", a.Failing, "size", size)
	case ActScaled:
		f.m.target.Set(float64(a.Target))
		f.eventLocked(Event{Time: now, Kind: EventScaled, Detail: fmt.Sprintf("%d → %d instances: %s", a.From, a.Target, a.Detail)})
		f.log.Info("fleet scaled by schedule", "from", a.From, "to", a.Target, "window", a.Window, "detail", a.Detail)
	case ActCrashed:
		f.eventLocked(Event{Time: now, Kind: EventCrashed, Instance: a.ID, PID: pid, Detail: a.Detail})
		switch {
		case a.Surge:
			f.log.Warn("new instance exited during rolling restart", "instance", a.ID, "exit", a.Detail)
		case a.Successor != "":
			f.log.Warn("instance exited; rolling restart's new instance takes over", "instance", a.ID, "exit", a.Detail, "successor", a.Successor)
		case a.PortTaken:
			f.log.Warn("instance port taken; restarting with new ports", "instance", a.ID, "exit", a.Detail)
		default:
			f.log.Warn("instance exited", "instance", a.ID, "exit", a.Detail, "restart_in", a.After)
		}
	case ActStopped:
		f.log.Info("instance stopped", "instance", a.ID, "reason", a.Reason, "exit", a.Detail)
	}
	return nil
}
