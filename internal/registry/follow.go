package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PrefixHooks are what Follow does with what it sees under its prefix.
// Follow calls them from its own goroutine, one at a time; a nil hook is
// skipped.
type PrefixHooks struct {
	// Reset: a fresh read of the whole prefix has succeeded; forget what
	// the earlier reads and events gave. Puts of every key follow, then
	// Publish.
	Reset func()
	// Put: a key holds kv (from a read or a watch event), kv.ModRevision
	// included.
	Put func(kv *mvccpb.KeyValue)
	// Del: key was deleted (or its lease expired).
	Del func(key string)
	// Publish: a read, or a batch of watch events, has been applied; the
	// prefix is now known as of revision rev.
	Publish func(rev int64)
	// Synced: etcd answered (a read, a watch event, a probe).
	Synced func()
	// Lost: etcd did not answer (a read, a probe, the watch failed).
	Lost func(error)
}

// Follow reads every key under dir (Reset, a Put for each, Publish), then
// watches dir and passes each change on (Put, Del, then Publish per batch),
// probing etcd every opts.ProbeInterval: a watch alone never notices etcd
// going away. While etcd does not answer it calls Lost, keeps what it
// gave, and retries with opts.Backoff; once etcd answers again it reads
// dir afresh. It returns nil when ctx is done, never an error. Discovery,
// Peers and the fleet-wide guardrails (package fleetwide) all follow
// their prefix with it.
func Follow(ctx context.Context, cli *clientv3.Client, dir string, opts Options, h PrefixHooks) error {
	opts = opts.withDefaults()
	h = h.withDefaults()
	for attempt := 0; ; {
		rev, err := ReadPrefix(ctx, cli, dir, opts, h)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.Lost(err)
			if !sleep(ctx, opts.Backoff(attempt)) {
				return nil
			}
			attempt++
			continue
		}
		attempt = 0
		err = followPrefix(ctx, cli, dir, rev, opts, h)
		if ctx.Err() != nil {
			return nil
		}
		opts.Logger.Debug("registry: reading the prefix afresh", "prefix", dir, "reason", err)
	}
}

func (h PrefixHooks) withDefaults() PrefixHooks {
	if h.Reset == nil {
		h.Reset = func() {}
	}
	if h.Put == nil {
		h.Put = func(*mvccpb.KeyValue) {}
	}
	if h.Del == nil {
		h.Del = func(string) {}
	}
	if h.Publish == nil {
		h.Publish = func(int64) {}
	}
	if h.Synced == nil {
		h.Synced = func() {}
	}
	if h.Lost == nil {
		h.Lost = func(error) {}
	}
	return h
}

// ReadPrefix gets every key under dir, within opts.Timeout (or ctx's
// deadline), and once it has them all passes them to h (Reset, Put each,
// Synced, Publish); on error it calls no hook. It returns the revision it
// read at. Follow starts with it; a first read before following (Peers.
// Refresh) is it alone.
func ReadPrefix(ctx context.Context, cli *clientv3.Client, dir string, opts Options, h PrefixHooks) (int64, error) {
	opts = opts.withDefaults()
	h = h.withDefaults()
	rctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res, err := cli.Get(rctx, dir, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	h.Reset()
	for _, kv := range res.Kvs {
		h.Put(kv)
	}
	h.Synced()
	h.Publish(res.Header.Revision)
	return res.Header.Revision, nil
}

// errResync ends followPrefix when etcd answers again after a probe
// failed: whatever the watch missed, a fresh read has.
var errResync = errors.New("etcd answers again")

// followPrefix watches dir from rev+1, passing each change to h, and
// probes etcd every opts.ProbeInterval. It returns nil when ctx is done,
// or with why the prefix must be read afresh: the watch failed or closed,
// or etcd answers again after a failed probe (errResync).
func followPrefix(ctx context.Context, cli *clientv3.Client, dir string, rev int64, opts Options, h PrefixHooks) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	// cli.Watch returns only once etcd has opened the watch stream (the
	// client waits for a connection, until wctx is done): called inline,
	// an etcd lost between the read and the watch would stop the probes
	// too, and the follower would stay "connected" through the outage. It
	// runs apart; its goroutine ends with wctx, and is waited for.
	opened := make(chan clientv3.WatchChan, 1)
	var wg sync.WaitGroup
	wg.Go(func() { opened <- cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) })
	defer wg.Wait()
	defer cancel()
	var wch clientv3.WatchChan // nil, so never ready, until opened
	tick := time.NewTicker(opts.ProbeInterval)
	defer tick.Stop()
	probeFailed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case wch = <-opened:
			opened = nil
		case wr, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if err := wr.Err(); err != nil {
				h.Lost(err)
				return fmt.Errorf("watch: %w", err)
			}
			if wr.IsProgressNotify() {
				continue
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case clientv3.EventTypePut:
					h.Put(ev.Kv)
				case clientv3.EventTypeDelete:
					h.Del(string(ev.Kv.Key))
				}
			}
			if !probeFailed {
				h.Synced()
			}
			h.Publish(wr.Header.Revision)
		case <-tick.C:
			if err := probePrefix(ctx, cli, dir, opts); err != nil {
				if ctx.Err() == nil {
					h.Lost(err)
					probeFailed = true
				}
				continue
			}
			if probeFailed {
				return errResync
			}
			h.Synced()
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
