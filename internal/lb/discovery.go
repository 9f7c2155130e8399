package lb

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Discovery supplies the set of instances to balance.
//
// Watch calls update with the complete current set at once, then again
// with the complete set after every change, until ctx is done; it then
// returns nil (an error return before that stops the balancer). Calls to
// update are sequential, from Watch's goroutine; update takes the set
// without retaining it and returns quickly. Sets are complete, not deltas:
// an instance missing from one is removed (its requests in flight finish),
// a new one is added pending its first health check, and the others keep
// their state. Entries with invalid addresses or a duplicate service
// address are skipped and logged; at most MaxInstances are used.
//
// Static is the configuration file's list. A fleet that starts instances
// itself can push sets through a Static's Set, or implement Discovery.
type Discovery interface {
	Watch(ctx context.Context, update func([]Instance)) error
}

// SourceReporter is implemented by a Discovery that depends on something
// that can be out of reach (etcd, an API server): the balancer shows its
// SourceStatus on /status and as spillway_lb_discovery_connected. While a
// source is not connected, the balancer keeps serving the set it last
// had.
type SourceReporter interface {
	SourceStatus() SourceStatus
}

// SourceStatus is a discovery source's state, for /status.
type SourceStatus struct {
	// Source names the kind of source, e.g. "etcd".
	Source string `json:"source"`
	// Connected: the source answered its last read or probe.
	Connected bool `json:"connected"`
	// LastSync is when the set was last known to be current (zero before
	// the first read).
	LastSync time.Time `json:"last_sync,omitzero"`
	// UnreachableSince is when the source stopped answering, while it
	// does not (zero while connected).
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

var _ Discovery = (*Static)(nil)

// Static is a Discovery whose set changes only when Set is called. The
// zero value is an empty set. Safe for concurrent use.
type Static struct {
	mu      sync.Mutex
	set     []Instance
	changed chan struct{} // closed and replaced by Set
}

// NewStatic returns a Static holding a copy of insts.
func NewStatic(insts []Instance) *Static {
	return &Static{set: slices.Clone(insts)}
}

// Set replaces the set with a copy of insts; watchers get it promptly.
func (s *Static) Set(insts []Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set = slices.Clone(insts)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// Instances returns a copy of the current set.
func (s *Static) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.set)
}

// Watch implements Discovery. Several watchers may run at once; each sees
// every Set, or at least the latest set after a burst of them.
func (s *Static) Watch(ctx context.Context, update func([]Instance)) error {
	for {
		s.mu.Lock()
		set := slices.Clone(s.set)
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		update(set)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}
