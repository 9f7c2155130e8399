package lb

import (
	"context"
	"math"
	"time"
)

// Peers tells a balancer its part of the fleet's capacity when several
// balancers stand in front of the same instances: each would otherwise
// admit the whole reported capacity, and together let in a multiple of
// what the instances carry. registry.Peers counts the balancers
// registered in etcd.
//
// Share returns the current share and a channel that is closed once it
// has changed (call Share again for the new one). It is called from the
// balancer's goroutines and must return quickly. A source that loses
// sight of the other balancers keeps the last share it knew.
type Peers interface {
	Share() (PeerShare, <-chan struct{})
}

// PeerShare is a balancer's part of the fleet's reported capacity.
type PeerShare struct {
	// Share is in (0, 1]: this balancer's weight over the sum of the
	// weights of the live balancers, itself included. Values outside
	// (0, 1] count as 1.
	Share float64 `json:"share"`
	// Peers counts the live balancers, itself included.
	Peers int `json:"peers"`
}

// alone is the share of a balancer without Peers.
var alone = PeerShare{Share: 1, Peers: 1}

// normalized is s with its share in (0, 1].
func (s PeerShare) normalized() PeerShare {
	if !(s.Share > 0) || s.Share > 1 {
		s.Share = 1
	}
	s.Peers = max(s.Peers, 1)
	return s
}

// sharedLimit is this balancer's part of the fleet's reported capacity:
// floor(capacity × share), at least 1 (a balancer with a share admits
// something, or its clients would only ever see 503) unless the fleet
// reports no capacity at all.
func sharedLimit(capacity int, share float64) int {
	if !(share > 0) || share >= 1 || capacity <= 0 {
		return capacity
	}
	// The epsilon keeps 9 × (1/3) at 3 whatever the rounding of 1/3.
	return max(1, int(math.Floor(float64(capacity)*share+1e-9)))
}

// runPeers re-evaluates whenever this balancer's share of the fleet's
// capacity changes, until ctx is done.
func (b *Balancer) runPeers(ctx context.Context) error {
	for {
		sh, changed := b.peers.Share()
		sh = sh.normalized()
		b.mu.Lock()
		if sh != b.share {
			b.log.Info("capacity share changed", "share", sh.Share, "peers", sh.Peers, "was", b.share.Share)
			b.share = sh
			b.evaluateLocked(time.Now())
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}
