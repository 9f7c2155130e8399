package health

// This file holds the /health long poll: a reader that already holds the
// report of a version waits until the version changes (or its wait ends)
// instead of asking again and again. The model is Consul's blocking
// queries (?index=&wait=) and Kubernetes' watches: the load balancer
// learns a change within a round trip and, when nothing changes, polls no
// more often than it did without the long poll.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// MaxWait bounds the wait of one /health long poll; a longer wait asked
// for is cut to it.
const MaxWait = 30 * time.Second

// maxWaiters bounds the /health requests that wait at once. Past it a
// request is answered at once, as a plain poll: the readers of /health
// are a few load balancers, so this is a guard against a runaway client,
// not a limit anyone should meet.
const maxWaiters = 64

// recheckInterval is how often a waiting /health request re-reads the
// report, so that a change no one announced with Notify (the end of the
// warm-up, a dependency whose owner does not call Notify) is seen within
// it.
const recheckInterval = 100 * time.Millisecond

// changes broadcasts Notify to waiting requests: ch is closed and replaced
// at each call.
type changes struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting int
}

// wait returns the channel that the next Notify closes.
func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// enter counts a waiter in, unless maxWaiters are waiting already.
func (c *changes) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting >= maxWaiters {
		return false
	}
	c.waiting++
	return true
}

func (c *changes) leave() {
	c.mu.Lock()
	c.waiting--
	c.mu.Unlock()
}

// Notify tells the /health requests waiting for a change (a long poll,
// see Report.Version) that the report may have changed, so they answer
// now rather than at their next re-read (within 100 ms). Call it when a
// dependency's state changes: guard.Options.OnChange is the intended
// caller. Start and Drain call it themselves. Cheap; safe to call at any
// time from any goroutine, and harmless when nothing changed (the waiters
// compare versions and wait on).
func (s *Server) Notify() { s.changes.notify() }

// reportVersion returns Report.Version for the parts of r that a reader
// acts on: the phase and each dependency's state and breaker, in
// registration order (order is part of the version; it never changes
// once registered). Load figures and times are left out: they change all
// the time.
func reportVersion(r *Report, deps []dependency) string {
	h := fnv.New64a()
	h.Write([]byte(r.Phase))
	if !r.Ready {
		h.Write([]byte{0, '!'}) // a closed readiness gate (AddReadinessGate)
	}
	for _, d := range deps {
		dep := r.Dependencies[d.name]
		for _, s := range [...]string{d.name, dep.State, dep.Breaker} {
			h.Write([]byte{0})
			h.Write([]byte(s))
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// errBadPoll: a /health query with a wait that is not a duration.
var errBadPoll = errors.New("wait must be a duration such as 2s, at least 0")

// pollParams reads /health's query: wait (a Go duration, cut to MaxWait)
// and version. wait is 0 (answer at once) unless both are given.
func pollParams(rawQuery string) (wait time.Duration, version string, err error) {
	if rawQuery == "" {
		return 0, "", nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, "", errBadPoll
	}
	version = q.Get("version")
	if w := q.Get("wait"); w != "" {
		if wait, err = time.ParseDuration(w); err != nil || wait < 0 {
			return 0, "", errBadPoll
		}
	}
	if version == "" {
		return 0, "", nil
	}
	return min(wait, MaxWait), version, nil
}

// awaitChange returns the report once its version differs from version,
// or when wait has elapsed or ctx is done (the current report either
// way). It waits only if fewer than maxWaiters are waiting already.
func (s *Server) awaitChange(ctx context.Context, w http.ResponseWriter, version string, wait time.Duration) Report {
	if !s.changes.enter() {
		return s.Report()
	}
	defer s.changes.leave()
	// The server's own read and write timeouts are set for probes; a long
	// poll outlives them. The background read that watches for the client
	// closing would otherwise time out and cancel ctx.
	rc := http.NewResponseController(w)
	end := time.Now().Add(wait + writeTimeout)
	_ = rc.SetReadDeadline(end)
	_ = rc.SetWriteDeadline(end)

	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(recheckInterval)
	defer recheck.Stop()
	for {
		changed := s.changes.wait() // before the read: no Notify is missed
		if r := s.Report(); r.Version != version {
			return r
		}
		select {
		case <-changed:
		case <-recheck.C:
		case <-deadline.C:
			return s.Report()
		case <-ctx.Done():
			return s.Report()
		}
	}
}
