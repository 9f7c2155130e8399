package lb

import (
	"context"
	"errors"
	"maps"
	"time"
)

// Shared shares the operators' decisions, shedding overrides and
// instance drains, among the balancers in front of one fleet, so that a
// change made on any balancer's admin API is applied by all of them.
// registry.Decisions keeps them in etcd. Without one (Options.Shared
// nil) a balancer's decisions are its own.
//
// Current returns the decisions as this balancer last knew them: the
// fleet's, with this balancer's own changes that are not shared yet laid
// over them; and a channel that is closed once they have changed (call
// Current again for the new ones). SetOverride and SetDrained record a
// change made on this balancer: it is in Current when they return, and
// they publish it in the background: they never wait for the store. They
// fail only on a change that cannot be held (ErrTooManyDecisions, an
// invalid name). Status says how the store answers.
//
// A source that loses its store keeps the decisions it knew, and this
// balancer's changes until it can publish them. Every method is called
// from the balancer's goroutines, some with its lock held: each returns
// quickly and never calls back into the Balancer.
type Shared interface {
	Current() (SharedDecisions, <-chan struct{})
	SetOverride(dependency string, o Override) error
	SetDrained(id string, drained bool) error
	Status() SharedStatus
}

// ErrTooManyDecisions: a Shared holds no more overrides, or drains.
var ErrTooManyDecisions = errors.New("too many decisions")

// OriginLocal is the origin of a decision that is not shared: made on a
// balancer without Shared, or made here and not published yet.
const OriginLocal = "local"

// SharedDecisions are the operators' decisions in force.
type SharedDecisions struct {
	// Overrides are the dependencies whose shedding override is not
	// auto, by name.
	Overrides map[string]OverrideDecision
	// Drains are the drained instances, by id (the service address),
	// whether or not this balancer knows them: a drain applies to an
	// instance as soon as it appears.
	Drains map[string]Decision
}

// Decision says where and when an operator's decision was taken.
type Decision struct {
	// Origin is the id of the balancer whose admin API took it, or
	// OriginLocal when it is not shared.
	Origin string `json:"origin"`
	// At is when it was taken.
	At time.Time `json:"at"`
	// Pending: taken here while the store was out of reach, and not
	// shared yet; Origin is OriginLocal.
	Pending bool `json:"pending,omitempty"`
}

// OverrideDecision is a shedding override in force.
type OverrideDecision struct {
	Mode Override `json:"mode"`
	Decision
}

// SharedStatus is the state of the store of shared decisions, for
// /status.
type SharedStatus struct {
	// Store names the kind of store, e.g. "etcd".
	Store string `json:"store"`
	// Self is this balancer's id: the origin of the decisions it shares.
	Self string `json:"self"`
	// Connected: the store answered its last read or probe.
	Connected bool `json:"connected"`
	// LastSync is when the decisions were last known to be current.
	LastSync time.Time `json:"last_sync,omitzero"`
	// Pending counts this balancer's changes not shared yet.
	Pending int `json:"pending"`
	// Superseded counts this balancer's changes that were dropped
	// because another balancer had changed the same decision first.
	Superseded uint64 `json:"superseded"`
}

// logFleetDecisionsLocked logs what changed from prev to next, the
// decisions Shared tells of: other balancers' (this one's own changes are
// in b.decisions before Shared tells of them).
func (b *Balancer) logFleetDecisionsLocked(prev, next SharedDecisions) {
	foreign := func(d Decision) bool { return d.Origin != b.sharedSelf && d.Origin != OriginLocal }
	for name, o := range next.Overrides {
		if p, ok := prev.Overrides[name]; (!ok || p != o) && foreign(o.Decision) {
			b.log.Info("shared: shedding override from another balancer", "dependency", name, "mode", string(o.Mode), "origin", o.Origin, "at", o.At)
		}
	}
	for name := range prev.Overrides {
		if _, ok := next.Overrides[name]; !ok {
			b.log.Info("shared: shedding override back to auto", "dependency", name)
		}
	}
	for id, d := range next.Drains {
		if p, ok := prev.Drains[id]; (!ok || p != d) && foreign(d) {
			b.log.Info("shared: instance drained by another balancer", "instance", id, "origin", d.Origin, "at", d.At)
		}
	}
	for id := range prev.Drains {
		if _, ok := next.Drains[id]; !ok {
			b.log.Info("shared: instance undrained", "instance", id)
		}
	}
}

// applyDecisionsLocked makes the shedder's overrides and the pool's
// drains those of b.decisions, and evaluates. A drained instance that
// the pool does not know is drained when it appears (setInstances).
func (b *Balancer) applyDecisionsLocked(now time.Time) {
	for name, o := range b.shedder.Overrides() {
		if _, ok := b.decisions.Overrides[name]; !ok && o != OverrideAuto {
			_ = b.shedder.SetOverride(name, OverrideAuto, now) // a tracked name: cannot fail
		}
	}
	cur := b.shedder.Overrides()
	for name, o := range b.decisions.Overrides {
		if cur[name] == o.Mode {
			continue
		}
		if err := b.shedder.SetOverride(name, o.Mode, now); err != nil {
			b.log.Warn("shared: shedding override not applied", "dependency", name, "mode", string(o.Mode), "error", err)
		}
	}
	b.applyDrainsLocked(now)
	b.evaluateLocked(now)
}

// applyDrainsLocked drains the pool's instances that b.decisions drains,
// and undrains the others.
func (b *Balancer) applyDrainsLocked(now time.Time) {
	for _, id := range b.pool.IDs() {
		_, want := b.decisions.Drains[id]
		if drained, _ := b.pool.Drained(id); drained != want {
			_ = b.pool.SetDrained(id, want, now) // a known id: cannot fail
		}
	}
}

// runShared applies the fleet's decisions whenever they change, until
// ctx is done.
func (b *Balancer) runShared(ctx context.Context) error {
	for {
		d, changed := b.shared.Current()
		b.mu.Lock()
		b.logFleetDecisionsLocked(b.decisions, d)
		b.decisions = d
		b.applyDecisionsLocked(time.Now())
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// setLocalOverrideLocked records an override taken on this balancer
// without Shared, copying the map (Status reads it without the lock).
func (b *Balancer) setLocalOverrideLocked(dep string, o Override, now time.Time) {
	m := maps.Clone(b.decisions.Overrides)
	if m == nil {
		m = map[string]OverrideDecision{}
	}
	if o == OverrideAuto {
		delete(m, dep)
	} else {
		m[dep] = OverrideDecision{Mode: o, Decision: Decision{Origin: OriginLocal, At: now}}
	}
	b.decisions.Overrides = m
}

// setLocalDrainLocked records a drain taken on this balancer without
// Shared, copying the map (Status reads it without the lock).
func (b *Balancer) setLocalDrainLocked(id string, drained bool, now time.Time) {
	m := maps.Clone(b.decisions.Drains)
	if m == nil {
		m = map[string]Decision{}
	}
	if drained {
		m[id] = Decision{Origin: OriginLocal, At: now}
	} else {
		delete(m, id)
	}
	b.decisions.Drains = m
}
