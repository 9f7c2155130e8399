package registry

import (
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// link is what a follower of etcd (Discovery, Peers, Decisions) knows of
// its connection: whether etcd answered the last request, since when it
// has not, and when what the follower holds was last known current. The
// follower reports each answer (synced) and each failure (lost) and logs
// the two edges of an outage that they return, once each. The zero value
// is a link that has never synced. Its methods are safe for concurrent
// use; its lock is a leaf, so they may be called with the follower's own
// mutex held.
type link struct {
	mu        sync.Mutex
	connected bool
	down      bool      // etcd was lost and not yet back
	lostAt    time.Time // when, while down
	lastSync  time.Time
}

// Connected reports whether etcd answered the last request (the last
// read, watch event or probe).
func (l *link) Connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected
}

// LastSync returns when what the follower holds was last known to be
// current: the last read, watch event or successful probe. Zero before
// the first read.
func (l *link) LastSync() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSync
}

// state returns Connected, LastSync and, while etcd is lost, when it was
// lost (else zero), read together.
func (l *link) state() (connected bool, lastSync, lostAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected, l.lastSync, l.lostAt
}

// lost records that etcd did not answer at now. It reports whether this
// begins an outage: the caller then warns, once for the outage.
func (l *link) lost(now time.Time) (began bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected = false
	if l.down {
		return false
	}
	l.down, l.lostAt = true, now
	return true
}

// synced records that etcd answered at now: what the follower holds is
// current. It reports whether this ends an outage, and the last sync
// before it, for the caller's log.
func (l *link) synced(now time.Time) (lastSync time.Time, back bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lastSync, back = l.lastSync, l.down
	l.down, l.lostAt = false, time.Time{}
	l.connected, l.lastSync = true, now
	return lastSync, back
}

// endpoints is cli's endpoints as one log value.
func endpoints(cli *clientv3.Client) string { return strings.Join(cli.Endpoints(), ",") }
