package fleetwide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// publisher is the state of the goroutine that writes this host's keys:
// its lease, and what etcd holds under it as far as it knows.
type publisher struct {
	lease   clientv3.LeaseID // 0: none
	alive   <-chan *clientv3.LeaseKeepAliveResponse
	stopKA  context.CancelFunc
	written map[string]string // key → value put under lease
}

// drop forgets the lease: it is gone, or about to be.
func (p *publisher) drop() {
	if p.stopKA != nil {
		p.stopKA()
	}
	p.lease, p.alive, p.stopKA = 0, nil, nil
	clear(p.written)
}

// publish keeps this host's keys in etcd, under one lease, until ctx is
// done; then it revokes the lease. It writes when woken (kick), and
// retries with backoff after a failure; when the lease is lost it takes a
// new one and writes every key again.
func (g *Guardrails) publish(ctx context.Context) {
	p := &publisher{written: map[string]string{}}
	retry := time.NewTimer(0) // the first write, at once
	defer retry.Stop()
	defer func() {
		lease := p.lease
		p.drop()
		if lease != 0 {
			g.revoke(lease)
		}
	}()
	attempt := 0
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-p.alive:
			if ok {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			g.opts.Etcd.Logger.Warn("fleetwide: host lease lost (etcd unreachable for its TTL, or it expired); writing this host's keys again when etcd answers",
				"lease", fmt.Sprintf("%x", int64(p.lease)))
			p.drop()
			retry.Reset(0)
			continue
		case <-g.kick:
		case <-retry.C:
		}
		if err := g.write(ctx, p); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := g.opts.Etcd.Backoff(attempt)
			attempt++
			g.opts.Etcd.Logger.Debug("fleetwide: write failed; retrying", "attempt", attempt, "in", d, "error", err)
			retry.Reset(d)
			continue
		}
		attempt = 0
	}
}

// write brings etcd to this host's state: a lease (granted if there is
// none), its host key and its failures under it, the keys of failures that
// ended deleted, and the replacements granted while etcd was away merged
// into the budget key.
func (g *Guardrails) write(ctx context.Context, p *publisher) error {
	if p.lease == 0 {
		gctx, cancel := context.WithTimeout(ctx, g.opts.Etcd.Timeout)
		res, err := g.cli.Grant(gctx, ttlSeconds(g.opts.Etcd.TTL))
		cancel()
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		kctx, stop := context.WithCancel(ctx)
		ch, err := g.cli.KeepAlive(kctx, res.ID)
		if err != nil {
			stop()
			g.revoke(res.ID)
			return fmt.Errorf("keep lease alive: %w", err)
		}
		p.lease, p.alive, p.stopKA = res.ID, ch, stop
	}
	want := g.desired()
	for _, kv := range want {
		if v, ok := p.written[kv.key]; ok && v == kv.value {
			continue
		}
		if err := g.do(ctx, clientv3.OpPut(kv.key, kv.value, clientv3.WithLease(p.lease))); err != nil {
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				p.drop()
			}
			return err
		}
		p.written[kv.key] = kv.value
	}
	keep := map[string]bool{}
	for _, kv := range want {
		keep[kv.key] = true
	}
	for _, key := range slices.Sorted(maps.Keys(p.written)) {
		if keep[key] {
			continue
		}
		if err := g.do(ctx, clientv3.OpDelete(key)); err != nil {
			return err
		}
		delete(p.written, key)
	}
	return g.mergePending(ctx)
}

// do runs one operation within the etcd timeout.
func (g *Guardrails) do(ctx context.Context, op clientv3.Op) error {
	ctx, cancel := context.WithTimeout(ctx, g.opts.Etcd.Timeout)
	defer cancel()
	if _, err := g.cli.Do(ctx, op); err != nil {
		return fmt.Errorf("%s %s: %w", opName(op), op.KeyBytes(), err)
	}
	return nil
}

func opName(op clientv3.Op) string {
	if op.IsDelete() {
		return "delete"
	}
	return "put"
}

// keyValue is one key this host wants etcd to hold.
type keyValue struct{ key, value string }

// desired is this host's keys: its host key first, then one per failure
// that counts, in slot order.
func (g *Guardrails) desired() []keyValue {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := []keyValue{{g.hostKey(g.id), g.record}}
	for _, slot := range slices.Sorted(maps.Keys(g.own)) {
		v, err := json.Marshal(g.own[slot])
		if err != nil {
			continue // a time.Time always marshals
		}
		out = append(out, keyValue{g.failureKey(slot), string(v)})
	}
	return out
}

// mergePending writes the replacements this host granted while etcd was
// out of reach into the budget key (a transaction on its mod revision,
// retried on a conflict within the etcd timeout), so that every host
// counts them; then it forgets them as pending.
func (g *Guardrails) mergePending(ctx context.Context) error {
	g.mu.Lock()
	pend := slices.Clone(g.pending)
	g.mu.Unlock()
	if len(pend) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.Etcd.Timeout)
	defer cancel()
	key := g.budgetKey()
	res, err := g.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	b := g.budgetOf(res.Kvs)
	for {
		next := prune(slices.Concat(b.spent, pend), g.opts.Etcd.Now(), g.bwindow)
		if len(next) > maxSpent {
			next = next[len(next)-maxSpent:]
		}
		var ok bool
		if b, ok, err = g.swapBudget(ctx, key, b.rev, next); err != nil {
			return fmt.Errorf("merge into %s: %w", key, err)
		}
		if ok {
			break
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range pend {
		if i := slices.IndexFunc(g.pending, t.Equal); i >= 0 {
			g.pending = slices.Delete(g.pending, i, i+1)
		}
	}
	g.opts.Etcd.Logger.Info("fleetwide: replacements granted while etcd was away written into the fleet-wide budget", "count", len(pend))
	return nil
}

// revoke revokes lease, best effort, within the etcd timeout: the host's
// keys go at once.
func (g *Guardrails) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.Etcd.Timeout)
	defer cancel()
	_, _ = g.cli.Revoke(ctx, lease)
}

// ttlSeconds is ttl in etcd's unit, rounded up.
func ttlSeconds(ttl time.Duration) int64 {
	return int64((ttl + time.Second - 1) / time.Second)
}
