//go:build unix

package registry

import (
	"context"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func lbRecord(id string, weight float64) LBRecord {
	return LBRecord{ID: id, Admin: "127.0.0.1:8081", Weight: weight, Started: time.Now().UTC().Truncate(time.Second)}
}

// TestPeersShare: a balancer's share is its weight over the live
// balancers' (itself counted before its key appears); a balancer that
// deregisters leaves the sum; while etcd is lost the share stays.
func TestPeersShare(t *testing.T) {
	e, cli, opts := startEtcd(t)
	const prefix = "/peers"

	p := NewPeers(cli, prefix, "a", 1, opts)
	if sh, _ := p.Share(); sh != (lb.PeerShare{Share: 1, Peers: 1}) {
		t.Fatalf("before any read: %+v, want alone", sh)
	}
	// b (weight 3) is there before a registers: a counts itself anyway.
	b, err := RegisterLB(context.Background(), cli, prefix, lbRecord("b", 3), opts)
	if err != nil {
		t.Fatal(err)
	}
	stopB := testkit.Go(t, "keep-alive of b", 5*time.Second, b.Run)
	defer stopB()
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	share := func() lb.PeerShare { sh, _ := p.Share(); return sh }
	if sh := share(); sh != (lb.PeerShare{Share: 0.25, Peers: 2}) {
		t.Fatalf("after Refresh: %+v, want 1/(1+3) of 2", sh)
	}
	testkit.Go(t, "peers", 5*time.Second, p.Run)
	a, err := RegisterLB(context.Background(), cli, prefix, lbRecord("a", 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "keep-alive of a", 5*time.Second, a.Run)
	// A third, c, comes and goes: the channel tells each change.
	_, changed := p.Share()
	c, err := RegisterLB(context.Background(), cli, prefix, lbRecord("c", 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(2 * time.Second):
		t.Fatal("no change told within 2s of c registering")
	}
	if sh := share(); sh != (lb.PeerShare{Share: 0.2, Peers: 3}) {
		t.Errorf("with c: %+v, want 1/5 of 3", sh)
	}
	if err := c.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "c gone", func() bool { return share() == lb.PeerShare{Share: 0.25, Peers: 2} })

	// etcd lost: the share stays, well past b's TTL.
	e.Stop()
	testkit.WaitFor(t, 3*time.Second, "etcd lost", func() bool { return !p.Connected() })
	time.Sleep(opts.TTL + 500*time.Millisecond) // long enough for b's lease to have lapsed, had etcd run
	if sh := share(); sh != (lb.PeerShare{Share: 0.25, Peers: 2}) {
		t.Errorf("etcd lost: %+v, want the last share, 0.25 of 2", sh)
	}
	e.Restart()
	testkit.WaitFor(t, 5*time.Second, "etcd back", p.Connected)

	// b drains: a has the whole capacity.
	stopB()
	if err := b.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "b gone", func() bool { return share() == lb.PeerShare{Share: 1, Peers: 1} })
}

func TestLBRecordValidate(t *testing.T) {
	for _, r := range []LBRecord{
		{ID: "", Admin: "127.0.0.1:1", Weight: 1},
		{ID: "a/b", Admin: "127.0.0.1:1", Weight: 1},
		{ID: "a", Admin: "x", Weight: 1},
		{ID: "a", Admin: "127.0.0.1:1", Weight: 0},
		{ID: "a", Admin: "127.0.0.1:1", Weight: -1},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v: valid, want an error", r)
		}
	}
	if r := lbRecord("a", 0.5); r.Validate() != nil {
		t.Errorf("%+v: %v", r, r.Validate())
	}
}
