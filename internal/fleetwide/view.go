package fleetwide

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/registry"
)

// view is what the follower has read of PREFIX/fleet/: the other hosts,
// their failures and the budget key.
type view struct {
	hosts    map[string]hostRecord          // by host ID, without this host
	failures map[string]map[string]*failure // by host ID, then slot key
	budget   budgetState
}

func newView() *view {
	return &view{hosts: map[string]hostRecord{}, failures: map[string]map[string]*failure{}}
}

// clone returns a deep copy of v.
func (v *view) clone() *view {
	c := &view{hosts: maps.Clone(v.hosts), failures: make(map[string]map[string]*failure, len(v.failures)), budget: v.budget}
	for id, fs := range v.failures {
		cfs := make(map[string]*failure, len(fs))
		for slot, f := range fs {
			cf := *f
			cfs[slot] = &cf
		}
		c.failures[id] = cfs
	}
	return c
}

// follower applies what registry.Follow reads to a view of its own, and
// publishes a copy of it to the guardrails after each read or batch of
// events: the fleet never sees half a read.
type follower struct {
	g        *Guardrails
	v        *view
	overflow bool // a bound of the view was hit: warned once
}

// hooks apply what the follower reads under PREFIX/fleet/ to the view.
func (g *Guardrails) hooks() registry.PrefixHooks {
	fw := &follower{g: g, v: newView()}
	return registry.PrefixHooks{
		Reset:   func() { fw.v = newView() },
		Put:     func(kv *mvccpb.KeyValue) { fw.put(string(kv.Key), kv.Value, kv.ModRevision) },
		Del:     fw.del,
		Publish: func(int64) { fw.publish() },
		Synced:  g.synced,
		Lost:    g.lost,
	}
}

// publish makes a copy of the follower's view the guardrails' view. A
// budget state that a transaction of this host has already passed is
// kept.
func (fw *follower) publish() {
	c := fw.v.clone()
	g := fw.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hosts, g.failures = c.hosts, c.failures
	if c.budget.rev >= g.budget.rev {
		g.budget = c.budget
	}
}

// put applies a key of PREFIX/fleet/ to the view. This host's own keys
// are skipped: its own state is the truth.
func (fw *follower) put(key string, value []byte, rev int64) {
	g, v := fw.g, fw.v
	kind, rest, _ := strings.Cut(strings.TrimPrefix(key, g.dir), "/")
	switch kind {
	case "budget":
		if rest == "" && rev >= v.budget.rev {
			v.budget = budgetState{rev: rev, spent: g.decodeBudget(value)}
		}
	case "hosts":
		if rest == g.id {
			return
		}
		var h hostRecord
		err := json.Unmarshal(value, &h)
		switch {
		case err != nil:
		case h.ID != rest:
			err = fmt.Errorf("id %q is not the key's last segment", h.ID)
		case h.Size < 1 || h.Size > fleet.MaxSize:
			err = fmt.Errorf("size %d: want 1 to %d", h.Size, fleet.MaxSize)
		}
		if err != nil {
			g.opts.Etcd.Logger.Warn("fleetwide: host record skipped", "key", key, "error", err)
			delete(v.hosts, rest)
			return
		}
		if _, ok := v.hosts[rest]; !ok && len(v.hosts) >= MaxHosts {
			fw.full(key)
			return
		}
		v.hosts[rest] = h
	case "failures":
		id, slot, ok := strings.Cut(rest, "/")
		if !ok || id == g.id || slot == "" {
			return
		}
		var f failure
		if err := json.Unmarshal(value, &f); err != nil || f.At.IsZero() {
			g.opts.Etcd.Logger.Warn("fleetwide: failure record skipped", "key", key, "error", err)
			return
		}
		fs := v.failures[id]
		if fs == nil {
			if len(v.failures) >= MaxHosts {
				fw.full(key)
				return
			}
			fs = map[string]*failure{}
			v.failures[id] = fs
		}
		if _, ok := fs[slot]; !ok && len(fs) >= fleet.MaxSize {
			fw.full(key)
			return
		}
		fs[slot] = &f
	}
}

// full logs, once, that a key was ignored because the view is full.
func (fw *follower) full(key string) {
	if !fw.overflow {
		fw.overflow = true
		fw.g.opts.Etcd.Logger.Warn("fleetwide: view full; key ignored", "key", key, "max_hosts", MaxHosts, "max_failures_per_host", fleet.MaxSize)
	}
}

// del applies a deleted key of PREFIX/fleet/ to the view.
func (fw *follower) del(key string) {
	v := fw.v
	kind, rest, _ := strings.Cut(strings.TrimPrefix(key, fw.g.dir), "/")
	switch kind {
	case "budget":
		if rest == "" {
			v.budget = budgetState{}
		}
	case "hosts":
		delete(v.hosts, rest)
	case "failures":
		if id, slot, ok := strings.Cut(rest, "/"); ok {
			if fs := v.failures[id]; fs != nil {
				delete(fs, slot)
				if len(fs) == 0 {
					delete(v.failures, id)
				}
			}
		}
	}
}
