package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// prefixHooks are what readPrefix and followPrefix do with what they
// see: a full read begins (reset: forget every key), a key put or
// deleted (with the revision of the change: the key's mod revision, or
// the deletion's), the end of a read or of a batch of changes (publish,
// with the revision the prefix is now known at), etcd
// answering (synced) or not (lost). They are called from one goroutine
// at a time.
type prefixHooks struct {
	reset   func()
	put     func(key string, value []byte, rev int64)
	del     func(key string, rev int64)
	publish func(rev int64)
	synced  func()
	lost    func(error)
}

// runPrefix follows dir until ctx is done: it reads every key under it
// (readPrefix), then follows the changes (followPrefix); while etcd does
// not answer it calls h.lost and retries with opts.Backoff, and whenever
// following ends (the watch failed, or etcd answers again after a failed
// probe) it reads the whole prefix afresh. Discovery, Peers and
// Decisions all follow their prefixes with it.
func runPrefix(ctx context.Context, cli *clientv3.Client, dir string, opts Options, h prefixHooks) {
	for attempt := 0; ; {
		rev, err := readPrefix(ctx, cli, dir, opts, h)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.lost(err)
			if !sleep(ctx, opts.Backoff(attempt)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		err = followPrefix(ctx, cli, dir, rev, opts, h)
		if ctx.Err() != nil {
			return
		}
		opts.Logger.Debug("registry: reading the prefix afresh", "prefix", dir, "reason", err)
	}
}

// readPrefix reads every key under dir, within opts.Timeout, and passes
// them to h (reset, put each, synced, publish); it returns the revision it
// read at. On an error h is not called.
func readPrefix(ctx context.Context, cli *clientv3.Client, dir string, opts Options, h prefixHooks) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res, err := cli.Get(rctx, dir, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	h.reset()
	for _, kv := range res.Kvs {
		h.put(string(kv.Key), kv.Value, kv.ModRevision)
	}
	h.synced()
	h.publish(res.Header.Revision)
	return res.Header.Revision, nil
}

// errResync ends followPrefix when etcd answers again after a probe
// failed: whatever the watch missed, a fresh read has.
var errResync = errors.New("etcd answers again")

// followPrefix watches dir from rev+1, passing each change to h, and
// probes etcd every opts.ProbeInterval (a watch alone never notices etcd
// going away). It returns nil when ctx is done, or with why the prefix
// must be read afresh: the watch failed or closed, or etcd answers again
// after a failed probe (errResync).
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
					h.put(key, ev.Kv.Value, ev.Kv.ModRevision)
				case clientv3.EventTypeDelete:
					h.del(key, ev.Kv.ModRevision)
				}
			}
			if !probeFailed {
				h.synced()
			}
			h.publish(wr.Header.Revision)
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
