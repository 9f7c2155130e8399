package lb

// This file holds the evaluator: the loop that runs Pool.Evaluate on
// its interval and publishes what it decides (shedding plans, the
// routing snapshot) under the balancer's lock.

import (
	"context"
	"fmt"
	"time"
)

// runEvaluator evaluates the pool whenever time alone changes it (an
// ejection ends, a ramp moves, a report goes stale): at Eval.Next.
func (b *Balancer) runEvaluator(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		b.mu.Lock()
		next := b.next
		b.mu.Unlock()
		var fire <-chan time.Time
		if !next.IsZero() {
			t.Reset(max(time.Until(next), 0))
			fire = t.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case <-fire:
			now := time.Now()
			b.mu.Lock()
			b.evaluateLocked(now)
			b.mu.Unlock()
		}
	}
}

// evaluateLocked publishes the routing snapshot and shedding state at now,
// applies the edge capacity to the limiter, updates the gauges, logs what
// changed and schedules the next evaluation.
func (b *Balancer) evaluateLocked(now time.Time) {
	b.pool.SetShare(b.share.Share)
	ev := b.pool.Evaluate(now)
	prev := b.ev
	b.ev = ev
	set := b.set.Load()

	limit := maxEdgeLimit
	switch {
	case ev.Candidates == 0:
		// No limit: requests reach the picker and get no_healthy_instance.
	case ev.Bounded:
		limit = sharedLimit(ev.Capacity, b.share.Share)
	case set.cfg.Admission.FallbackLimit > 0:
		limit = set.cfg.Admission.FallbackLimit
	}
	b.edgeLimit = limit
	b.limiter.Load().SetLimit(limit)
	b.m.setEval(ev, limit, b.share.Share)
	select {
	case b.evaluated <- struct{}{}:
	default:
	}

	if ev.Panic != prev.Panic {
		if ev.Panic {
			b.log.Warn("panic mode on: routing across every instance that accepts connections",
				"routable", ev.Routable, "members", ev.Members, "candidates", ev.Candidates)
			b.event("panic_on", fmt.Sprintf("%d of %d instances routable: routing across all %d that accept connections", ev.Routable, ev.Members, ev.Candidates))
		} else {
			b.log.Info("panic mode off", "routable", ev.Routable, "members", ev.Members)
			b.event("panic_off", fmt.Sprintf("%d of %d instances routable", ev.Routable, ev.Members))
		}
	}
	b.shedChangesLocked(now)
	if b.plans != nil {
		ev.Next = b.publishPlanLocked(now, ev)
	}

	if !ev.Next.Equal(b.next) {
		b.next = ev.Next
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// publishPlanLocked publishes the Plan of the evaluation ev at now to the
// data plane and returns when to evaluate next: ev.Next, or sooner while
// a recovery window ramp moves a share.
func (b *Balancer) publishPlanLocked(now time.Time, ev Eval) time.Time {
	deps, routes, moving := b.shedder.planShares(now)
	health := func(id string) string {
		if h := b.checkers[id]; h != nil {
			return h.inst.Health
		}
		return ""
	}
	insts := b.pool.planInstances(now, ev, health)
	b.settled = b.settled || allChecked(insts)
	b.plans.Publish(Plan{
		At: now, Panic: ev.Panic, Settled: b.settled, Instances: insts,
		Dependencies: deps, Routes: routes,
	})
	next := ev.Next
	if moving {
		if t := now.Add(capacityTick(b.set.Load().cfg.Shedding.RecoveryWindow)); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}
