package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/lb"
)

var _ lb.Peers = (*Peers)(nil)

// Peers is an lb.Peers: it follows the balancers registered under a
// prefix (PREFIX/lbs/, RegisterLB) and gives one of them, self, its share
// of the fleet's capacity, its weight over the sum of the live balancers'
// weights. Self counts with its own weight whether or not its key is
// there yet (or still: it revokes it when it drains).
//
// While etcd does not answer, the share stays what it was: a balancer
// that lost etcd cannot tell whether its peers are gone or only out of
// its sight, and taking the whole capacity in the second case would let
// in a multiple of what the fleet carries. Once etcd answers again, the
// prefix is read afresh. Before the first read the share is 1: make the
// first read (Refresh) before the balancer is built, or accept that it
// admits up to the whole capacity until Run's first read.
//
// Make it with NewPeers; its methods are safe for concurrent use. Run
// follows etcd until its context is done; call it once.
type Peers struct {
	cli    *clientv3.Client
	dir    string // PREFIX/lbs/
	id     string
	weight float64
	opts   Options

	link // Connected, LastSync

	mu      sync.Mutex
	share   lb.PeerShare
	changed chan struct{} // closed and replaced when share changes
}

// NewPeers returns the Peers of the balancer id, of the given weight,
// among those registered under prefix. weight must be finite and above 0.
func NewPeers(cli *clientv3.Client, prefix, id string, weight float64, opts Options) *Peers {
	return &Peers{
		cli: cli, dir: lbsDir(prefix), id: id, weight: weight, opts: opts.withDefaults(),
		share:   lb.PeerShare{Share: 1, Peers: 1},
		changed: make(chan struct{}),
	}
}

// Share implements lb.Peers.
func (p *Peers) Share() (lb.PeerShare, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.share, p.changed
}

// Run reads the balancers registered under the prefix, then watches it,
// updating the share after each change, until ctx is done; it returns
// nil then (it never returns an error). While etcd does not answer it
// keeps the share and retries with opts.Backoff; once etcd answers again
// it reads the prefix afresh.
func (p *Peers) Run(ctx context.Context) error {
	return Follow(ctx, p.cli, p.dir, p.opts, p.hooks())
}

// Refresh reads the balancers registered under the prefix once and
// updates the share, within opts.Timeout (or ctx's deadline): the first
// read, before the balancer is built. Run reads again.
func (p *Peers) Refresh(ctx context.Context) error {
	if _, err := ReadPrefix(ctx, p.cli, p.dir, p.opts, p.hooks()); err != nil {
		p.lost(err)
		return err
	}
	return nil
}

// hooks keep a set of the other balancers' weights, by key, and publish
// the share it gives.
func (p *Peers) hooks() PrefixHooks {
	set := map[string]float64{}
	return PrefixHooks{
		Reset:   func() { clear(set) },
		Put:     func(kv *mvccpb.KeyValue) { p.put(set, string(kv.Key), kv.Value) },
		Del:     func(key string) { delete(set, key) },
		Publish: func(int64) { p.publish(set) },
		Synced:  p.synced,
		Lost:    p.lost,
	}.withDefaults()
}

// put adds the weight of the balancer at key to set, unless it is self
// or does not decode (logged; what the key held before is dropped).
func (p *Peers) put(set map[string]float64, key string, value []byte) {
	var r LBRecord
	err := json.Unmarshal(value, &r)
	if err == nil {
		err = r.Validate()
	}
	if err == nil && !strings.HasSuffix(key, "/"+r.ID) {
		err = fmt.Errorf("id %q is not the key's last segment", r.ID)
	}
	if err != nil {
		p.opts.Logger.Warn("registry: balancer record skipped", "key", key, "error", err)
		delete(set, key)
		return
	}
	if r.ID == p.id {
		return // self counts with its own weight, key or not
	}
	set[key] = r.Weight
}

// publish computes the share from the other balancers in set and, if it
// changed, tells the watchers.
func (p *Peers) publish(set map[string]float64) {
	total := p.weight
	// In key order, so that the same set always sums to the same float.
	for _, k := range slices.Sorted(maps.Keys(set)) {
		total += set[k]
	}
	sh := lb.PeerShare{Share: p.weight / total, Peers: 1 + len(set)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sh == p.share {
		return
	}
	p.opts.Logger.Info("registry: balancers changed; capacity share", "share", sh.Share, "peers", sh.Peers, "was", p.share.Share)
	p.share = sh
	close(p.changed)
	p.changed = make(chan struct{})
}

// lost records that etcd did not answer; the first time in an outage it
// logs a warning.
func (p *Peers) lost(err error) {
	if p.link.lost(p.opts.Now()) {
		sh, _ := p.Share()
		p.opts.Logger.Warn("registry: etcd unreachable; keeping the last capacity share", "endpoints", endpoints(p.cli), "prefix", p.dir, "share", sh.Share, "error", err)
	}
}

// synced records that etcd answered and the set is current.
func (p *Peers) synced() {
	if last, back := p.link.synced(p.opts.Now()); back {
		p.opts.Logger.Info("registry: etcd answers again; balancers read afresh", "prefix", p.dir, "last_sync", last)
	}
}
