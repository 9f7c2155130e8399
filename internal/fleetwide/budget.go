package fleetwide

// This file holds the fleet-wide replacement budget: one key, taken in an
// etcd transaction, or this host's share while etcd is out of reach.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/fleet"
)

// totalLocked is the fleet's size: this host's and the others' in the
// view.
func (g *Guardrails) totalLocked() int {
	n := g.size
	for _, h := range g.hosts {
		n += h.Size
	}
	return n
}

// maxLocked is the fleet-wide budget per window, -1 for no limit.
func (g *Guardrails) maxLocked() int {
	if g.noLimit {
		return -1
	}
	return g.max.Of(g.totalLocked())
}

// localShareLocked is this host's part of a fleet-wide budget of max:
// floor(max × size / Σ sizes), and at least one.
func (g *Guardrails) localShareLocked(limit int) int {
	return max(1, int(math.Floor(float64(limit)*float64(g.size)/float64(g.totalLocked()))))
}

// Request implements fleet.Guardrails: it asks to replace one unhealthy
// instance at now. Frozen (as of the last Update): HoldFrozen. Otherwise
// it takes one replacement of the fleet-wide budget in an etcd
// transaction, within RequestTimeout; when etcd is out of reach it
// decides on this host's share (see the package comment).
func (g *Guardrails) Request(now time.Time) fleet.Decision {
	g.mu.Lock()
	if g.frozen {
		g.mu.Unlock()
		g.m.requests.WithLabelValues(resultFrozen).Inc()
		return fleet.HoldFrozen
	}
	limit := g.maxLocked()
	if limit < 0 {
		g.mu.Unlock()
		g.m.requests.WithLabelValues(resultGranted).Inc()
		return fleet.Replace
	}
	g.mine = prune(g.mine, now, g.bwindow)
	ask := g.running && g.connected
	b := budgetState{rev: g.budget.rev, spent: slices.Clone(g.budget.spent)}
	g.mu.Unlock()

	if ask {
		granted, err := g.take(now, limit, b)
		if err == nil {
			g.mu.Lock()
			if granted {
				g.mine = append(g.mine, now)
			}
			g.mu.Unlock()
			return g.decided(granted, resultGranted, resultExhausted)
		}
		g.lost(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	spent := len(prune(slices.Concat(g.budget.spent, g.pending), now, g.bwindow))
	if len(g.mine) >= g.localShareLocked(limit) || spent >= limit {
		return g.decided(false, resultFallbackGranted, resultFallbackExhausted)
	}
	g.mine = append(g.mine, now)
	g.pending = append(prune(g.pending, now, g.bwindow), now)
	g.kickLocked()
	return g.decided(true, resultFallbackGranted, resultFallbackExhausted)
}

// decided counts a budget decision and returns it.
func (g *Guardrails) decided(granted bool, yes, no string) fleet.Decision {
	if granted {
		g.m.requests.WithLabelValues(yes).Inc()
		return fleet.Replace
	}
	g.m.requests.WithLabelValues(no).Inc()
	return fleet.HoldBudget
}

// take spends one replacement of the budget at now, in a transaction
// that holds only if the budget key is still at b's revision; on a
// conflict it goes on from what the key holds, until RequestTimeout.
// b's revision is the last one seen: a stale one costs one round trip
// more. It reports whether the budget allowed it.
func (g *Guardrails) take(now time.Time, limit int, b budgetState) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.RequestTimeout)
	defer cancel()
	key := g.budgetKey()
	for {
		spent := prune(b.spent, now, g.bwindow)
		if len(spent) >= limit {
			// The key only grows within a window: what was exhausted is.
			return false, nil
		}
		var (
			ok  bool
			err error
		)
		if b, ok, err = g.swapBudget(ctx, key, b.rev, append(spent, now)); err != nil {
			return false, fmt.Errorf("budget transaction on %s: %w", key, err)
		}
		if ok {
			return true, nil
		}
		g.setBudget(b)
	}
}

// swapBudget writes spent as the budget key's value in a transaction
// that holds only if the key is still at revision rev (0: absent). If it
// holds, it keeps the new state (setBudget) and returns it, ok; if not, it
// returns what the key holds instead.
func (g *Guardrails) swapBudget(ctx context.Context, key string, rev int64, spent []time.Time) (b budgetState, ok bool, err error) {
	val, err := json.Marshal(budgetRecord{Spent: spent})
	if err != nil {
		return budgetState{}, false, err
	}
	res, err := g.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return budgetState{}, false, err
	}
	if res.Succeeded {
		b = budgetState{rev: res.Header.Revision, spent: spent}
		g.setBudget(b)
		return b, true, nil
	}
	return g.budgetOf(res.Responses[0].GetResponseRange().Kvs), false, nil
}

// budgetOf is the budget key's state as a read found it: kvs holds the
// key, or nothing when it is absent.
func (g *Guardrails) budgetOf(kvs []*mvccpb.KeyValue) budgetState {
	if len(kvs) == 0 {
		return budgetState{}
	}
	return budgetState{rev: kvs[0].ModRevision, spent: g.decodeBudget(kvs[0].Value)}
}

// setBudget keeps b as the budget key's state unless a later revision is
// known already.
func (g *Guardrails) setBudget(b budgetState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.rev >= g.budget.rev {
		g.budget = b
	}
}

// decodeBudget reads the budget key's value; one that does not decode is
// logged and taken as empty (the next grant overwrites it).
func (g *Guardrails) decodeBudget(value []byte) []time.Time {
	var r budgetRecord
	if err := json.Unmarshal(value, &r); err != nil {
		g.opts.Etcd.Logger.Warn("fleetwide: budget key does not decode; counting it empty", "key", g.budgetKey(), "error", err)
		return nil
	}
	if len(r.Spent) > maxSpent {
		r.Spent = r.Spent[len(r.Spent)-maxSpent:]
	}
	return r.Spent
}

// Remaining is the number of replacements Request would allow at now, as
// far as the view tells (-1: no limit); 0 while frozen is not implied.
func (g *Guardrails) Remaining(now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.remainingLocked(now)
}

func (g *Guardrails) remainingLocked(now time.Time) int {
	limit := g.maxLocked()
	if limit < 0 {
		return -1
	}
	left := limit - len(prune(slices.Concat(g.budget.spent, g.pending), now, g.bwindow))
	if !g.running || !g.connected {
		left = min(left, g.localShareLocked(limit)-len(prune(g.mine, now, g.bwindow)))
	}
	return max(0, left)
}

// prune returns the times of ts within window before now, oldest first,
// in a new slice.
func prune(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	out := make([]time.Time, 0, len(ts)+1)
	for _, t := range ts {
		if now.Sub(t) < window {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}
