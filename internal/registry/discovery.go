package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

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

	mu        sync.Mutex
	connected bool
	down      bool // etcd was lost and not yet back: warned once
	lastSync  time.Time
}

// NewDiscovery returns a Discovery of the instances registered under
// prefix, read through cli.
func NewDiscovery(cli *clientv3.Client, prefix string, opts Options) *Discovery {
	return &Discovery{cli: cli, dir: instancesDir(prefix), opts: opts.withDefaults()}
}

// Connected reports whether etcd answered the last request (the last
// read, watch event or probe).
func (d *Discovery) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

// SourceStatus implements lb.SourceReporter: whether etcd answers, and
// when the set was last known to be current.
func (d *Discovery) SourceStatus() lb.SourceStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return lb.SourceStatus{Source: Scheme, Connected: d.connected, LastSync: d.lastSync}
}

// LastSync returns when the set was last known to be current: the last
// read, watch event or successful probe. Zero before the first read.
func (d *Discovery) LastSync() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastSync
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
	publish := func(set map[string]Record) {
		insts := instances(set)
		if sent && slices.Equal(insts, last) {
			return
		}
		update(insts)
		last, sent = insts, true
	}
	for attempt := 0; ; {
		rev, set, err := d.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.lost(err)
			if !sleep(ctx, d.opts.Backoff(attempt)) {
				return nil
			}
			attempt++
			continue
		}
		attempt = 0
		d.synced()
		publish(set)
		err = d.follow(ctx, rev, set, publish)
		if ctx.Err() != nil {
			return nil
		}
		d.opts.Logger.Debug("registry: reading the prefix afresh", "prefix", d.dir, "reason", err)
	}
}

// read gets every key under the prefix, and the revision it read at.
func (d *Discovery) read(ctx context.Context) (int64, map[string]Record, error) {
	rctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	res, err := d.cli.Get(rctx, d.dir, clientv3.WithPrefix())
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", d.dir, err)
	}
	set := make(map[string]Record, len(res.Kvs))
	for _, kv := range res.Kvs {
		d.put(set, string(kv.Key), kv.Value)
	}
	return res.Header.Revision, set, nil
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

// errResync ends follow when etcd answers again after a probe failed:
// whatever the watch missed, a fresh read has.
var errResync = errors.New("etcd answers again")

// follow watches the prefix from rev+1, applying each change to set and
// publishing it, and probes etcd every ProbeInterval. It returns when ctx
// is done, or with why the prefix must be read afresh.
func (d *Discovery) follow(ctx context.Context, rev int64, set map[string]Record, publish func(map[string]Record)) error {
	return followPrefix(ctx, d.cli, d.dir, rev, d.opts, prefixHooks{
		put:     func(key string, value []byte) { d.put(set, key, value) },
		del:     func(key string) { delete(set, key) },
		publish: func() { publish(set) },
		synced:  d.synced,
		lost:    d.lost,
	})
}

// prefixHooks are what followPrefix does with what it sees: a key put or
// deleted, the end of a batch of changes (publish), etcd answering
// (synced) or not (lost).
type prefixHooks struct {
	put     func(key string, value []byte)
	del     func(key string)
	publish func()
	synced  func()
	lost    func(error)
}

// followPrefix watches dir from rev+1, passing each change to h, and
// probes etcd every opts.ProbeInterval (a watch alone never notices etcd
// going away). It returns nil when ctx is done, or with why the prefix
// must be read afresh: the watch failed or closed, or etcd answers again
// after a failed probe (errResync). Discovery and Peers both follow their
// prefix with it.
func followPrefix(ctx context.Context, cli *clientv3.Client, dir string, rev int64, opts Options, h prefixHooks) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	tick := time.NewTicker(opts.ProbeInterval)
	defer tick.Stop()
	probeFailed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if err := wr.Err(); err != nil {
				h.lost(err)
				return fmt.Errorf("watch: %w", err)
			}
			if wr.IsProgressNotify() {
				continue
			}
			for _, ev := range wr.Events {
				key := string(ev.Kv.Key)
				switch ev.Type {
				case clientv3.EventTypePut:
					h.put(key, ev.Kv.Value)
				case clientv3.EventTypeDelete:
					h.del(key)
				}
			}
			if !probeFailed {
				h.synced()
			}
			h.publish()
		case <-tick.C:
			if err := probePrefix(ctx, cli, dir, opts); err != nil {
				if ctx.Err() == nil {
					h.lost(err)
					probeFailed = true
				}
				continue
			}
			if probeFailed {
				return errResync
			}
			h.synced()
		}
	}
}

// probePrefix asks etcd for a linearizable count of dir's keys: it
// answers only with a leader.
func probePrefix(ctx context.Context, cli *clientv3.Client, dir string, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, min(opts.Timeout, opts.ProbeInterval))
	defer cancel()
	_, err := cli.Get(ctx, dir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}

// lost records that etcd did not answer; the first time in an outage it
// logs a warning.
func (d *Discovery) lost(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.connected = false
	if !d.down {
		d.down = true
		d.opts.Logger.Warn("registry: etcd unreachable; keeping the last set of instances", "endpoints", strings.Join(d.cli.Endpoints(), ","), "prefix", d.dir, "error", err)
	}
}

// synced records that etcd answered and the set is current.
func (d *Discovery) synced() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		d.down = false
		d.opts.Logger.Info("registry: etcd answers again; set read afresh", "prefix", d.dir, "last_sync", d.lastSync)
	}
	d.connected = true
	d.lastSync = d.opts.Now()
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
