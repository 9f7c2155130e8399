package lb_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// fakePeers is an lb.Peers whose share the test sets.
type fakePeers struct {
	mu      sync.Mutex
	sh      lb.PeerShare
	changed chan struct{}
}

var _ lb.Peers = (*fakePeers)(nil)

func newFakePeers(sh lb.PeerShare) *fakePeers {
	return &fakePeers{sh: sh, changed: make(chan struct{})}
}

func (f *fakePeers) Share() (lb.PeerShare, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sh, f.changed
}

func (f *fakePeers) set(sh lb.PeerShare) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sh = sh
	close(f.changed)
	f.changed = make(chan struct{})
}

// TestPeersSplitCapacity: with a share of the fleet, the edge bound that
// follows the instances' reports is floor(capacity × share), at least 1;
// it follows the share as it changes; the fixed fallback is not split.
func TestPeersSplitCapacity(t *testing.T) {
	_, simURL := startSim(t)
	// Two instances reporting 5 each: a fleet capacity of 10.
	fleet := startFleet(t, 2, simURL, func(c *login.Config) { c.Admission.Limit = 5 })
	peers := newFakePeers(lb.PeerShare{Share: 0.5, Peers: 2})
	b := startLBWith(t, testConfig(lbInstances(fleet)...), lb.Options{Peers: peers})
	b.waitRoutable(t, 2)

	limit := func(want int, share float64, n int) {
		t.Helper()
		testkit.WaitFor(t, 2*time.Second, "capacity limit", func() bool {
			c := b.Status().Capacity
			return c.Bounded && c.Limit == want && c.Share == share && c.Peers == n
		})
		if got := scrape(t, b.admin+"/metrics", "spillway_lb_capacity_share_ratio"); got != share {
			t.Errorf("spillway_lb_capacity_share_ratio = %v, want %v", got, share)
		}
	}
	limit(5, 0.5, 2)
	peers.set(lb.PeerShare{Share: 1.0 / 3, Peers: 3})
	limit(3, 1.0/3, 3)
	peers.set(lb.PeerShare{Share: 0.01, Peers: 100})
	limit(1, 0.01, 100) // never 0: a balancer with a share admits something
	peers.set(lb.PeerShare{Share: 1, Peers: 1})
	limit(10, 1, 1)
}

// TestPeersFallbackNotSplit: admission.fallback_limit is this balancer's
// own, whatever its share.
func TestPeersFallbackNotSplit(t *testing.T) {
	u := startUpstream(t, http.NotFoundHandler())
	cfg := testConfig(u.lbInstance())
	cfg.Admission.FallbackLimit = 8
	b := startLBWith(t, cfg, lb.Options{Peers: newFakePeers(lb.PeerShare{Share: 0.5, Peers: 2})})
	b.waitRoutable(t, 1)
	testkit.WaitFor(t, 2*time.Second, "fallback limit", func() bool { return b.Status().Capacity.Limit == 8 })
	if c := b.Status().Capacity; c.Share != 0.5 || c.Peers != 2 {
		t.Errorf("capacity %+v, want share 0.5 of 2", c)
	}
}
