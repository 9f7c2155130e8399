package registry

import (
	"context"
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/lb"
)

var (
	_ lb.Discovery      = (*Discovery)(nil)
	_ lb.SourceReporter = (*Discovery)(nil)
)

// Discovery is an lb.Discovery of the instances registered under a
// prefix. Make it with NewDiscovery. Its methods are safe for concurrent
// use; Watch may run more than once, but not at the same time.
type Discovery struct {
	cli  *clientv3.Client
	dir  string // PREFIX/instances/
	opts Options

	link // Connected, LastSync
}

// NewDiscovery returns a Discovery of the instances registered under
// prefix, read through cli.
func NewDiscovery(cli *clientv3.Client, prefix string, opts Options) *Discovery {
	return &Discovery{cli: cli, dir: instancesDir(prefix), opts: opts.withDefaults()}
}

// SourceStatus implements lb.SourceReporter: whether etcd answers, and
// when the set was last known to be current.
func (d *Discovery) SourceStatus() lb.SourceStatus {
	connected, lastSync, lostAt := d.state()
	return lb.SourceStatus{Source: Scheme, Connected: connected, LastSync: lastSync, UnreachableSince: lostAt}
}

// Watch implements lb.Discovery: it reads every registered instance and
// calls update with the set, then watches the prefix and calls update
// with the complete set after each change, until ctx is done (it then
// returns nil; it never returns an error). While etcd does not answer it
// calls update with nothing: the balancer keeps the last set. It retries
// with opts.Backoff and, once etcd answers again, reads the whole prefix
// afresh and calls update if the set changed meanwhile. Before the first
// read succeeds update is not called at all. Records that do not decode
// are skipped and logged.
func (d *Discovery) Watch(ctx context.Context, update func([]lb.Instance)) error {
	var last []lb.Instance
	sent := false
	set := map[string]Record{}
	return Follow(ctx, d.cli, d.dir, d.opts, PrefixHooks{
		Reset: func() { clear(set) },
		Put:   func(kv *mvccpb.KeyValue) { d.put(set, string(kv.Key), kv.Value) },
		Del:   func(key string) { delete(set, key) },
		Publish: func(int64) {
			insts := instances(set)
			if sent && slices.Equal(insts, last) {
				return
			}
			update(insts)
			last, sent = insts, true
		},
		Synced: d.synced,
		Lost:   d.lost,
	})
}

// put adds the record at key to set, or logs why not (and drops what
// the key held before).
func (d *Discovery) put(set map[string]Record, key string, value []byte) {
	r, err := decodeRecord(key, value)
	if err != nil {
		d.opts.Logger.Warn("registry: record skipped", "error", err)
		delete(set, key)
		return
	}
	set[key] = r
}

// lost records that etcd did not answer; the first time in an outage it
// logs a warning.
func (d *Discovery) lost(err error) {
	if d.link.lost(d.opts.Now()) {
		d.opts.Logger.Warn("registry: etcd unreachable; keeping the last set of instances", "endpoints", endpoints(d.cli), "prefix", d.dir, "error", err)
	}
}

// synced records that etcd answered and the set is current.
func (d *Discovery) synced() {
	if last, back := d.link.synced(d.opts.Now()); back {
		d.opts.Logger.Info("registry: etcd answers again; set read afresh", "prefix", d.dir, "last_sync", last)
	}
}

// instances maps set to the balancer's instances, in key order.
func instances(set map[string]Record) []lb.Instance {
	keys := slices.Sorted(maps.Keys(set))
	out := make([]lb.Instance, len(keys))
	for i, k := range keys {
		out[i] = lb.Instance{Service: set[k].Service, Health: set[k].Health}
	}
	return out
}
