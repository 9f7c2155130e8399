package fleetwide

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/membership"
	"github.com/spillway-dev/spillway/internal/registry"
)

var _ fleet.Guardrails = (*Guardrails)(nil)

// DefaultRequestTimeout bounds Request's transaction when
// Options.RequestTimeout is zero.
const DefaultRequestTimeout = 500 * time.Millisecond

// Bounds of the view: hosts beyond MaxHosts, and failures of a host
// beyond fleet.MaxSize, are ignored (and logged); the budget key keeps at
// most maxSpent times.
const (
	MaxHosts = 1024
	maxSpent = 4096
)

// Options are a Guardrails' settings and collaborators. The zero value is
// the defaults, but for Host.
type Options struct {
	// HostID names this host's fleet among the others: the last segment
	// of its keys. Default HOSTNAME-PID (a restarted fleet is a new host;
	// the old one's keys expire with its lease).
	HostID string
	// Host is the address its instances listen on (fleet.host), recorded
	// in its host key for operators.
	Host string
	// Etcd configures the etcd side: TTL of the host's lease (default
	// 5 s), Timeout of each background request, ProbeInterval, Backoff,
	// Logger and Now (see registry.Options).
	Etcd registry.Options
	// RequestTimeout bounds Request's budget transaction, retries
	// included. Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Registerer receives the metrics. Nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Guardrails are the fleet-wide fleet.Guardrails of one host's fleet. See
// the package comment.
type Guardrails struct {
	cli     *clientv3.Client
	dir     string // PREFIX/fleet/
	id      string
	record  string // this host's key's value
	size    int
	share   float64 // freeze share; < 0 never freezes
	window  time.Duration
	max     fleet.Amount
	noLimit bool // budget.max is 0: every replacement is allowed
	bwindow time.Duration
	opts    Options
	m       *metrics

	kick    chan struct{} // the publisher has something to write; capacity 1
	started atomic.Bool

	mu sync.Mutex
	// This host's state.
	own     map[string]*failure // by slot key; at most the fleet's size
	frozen  bool
	mine    []time.Time // replacements granted to this host, in the budget window
	pending []time.Time // of those, granted by the fallback and not yet in the budget key
	running bool        // Run runs: etcd may be asked
	// The view of the others, as the follower last published it (view.go).
	hosts     map[string]hostRecord          // by host ID, without this host
	failures  map[string]map[string]*failure // by host ID, then slot key
	budget    budgetState
	connected bool
	down      bool      // etcd was lost and not yet back: warned once
	lostAt    time.Time // when, if down
	lastSync  time.Time
}

// failure is one slot's failure, as fleet.Freeze keeps it and as its key
// holds it.
type failure struct {
	At   time.Time `json:"at"`
	Live bool      `json:"live"` // the failing instance is still running
}

// counts reports whether f counts at now, for a freeze window w.
func (f *failure) counts(now time.Time, w time.Duration) bool {
	return f.Live || now.Sub(f.At) < w
}

// hostRecord is the value of a host's key.
type hostRecord struct {
	ID      string    `json:"id"`
	Host    string    `json:"host,omitempty"`
	Size    int       `json:"size"`
	Started time.Time `json:"started"`
}

// budgetRecord is the value of the budget key.
type budgetRecord struct {
	Spent []time.Time `json:"spent"`
}

// budgetState is the budget key as last seen: its mod revision (0: no
// key) and the times it holds.
type budgetState struct {
	rev   int64
	spent []time.Time
}

// New returns the fleet-wide guardrails of this host's fleet, configured
// by cfg (validated, as fleet.New validates it: its size, budget and
// freeze), sharing state through cli under prefix (the etcd URL's,
// "/spillway"). It starts nothing; Run does.
func New(cli *clientv3.Client, prefix string, cfg *fleet.Config, opts Options) (*Guardrails, error) {
	c := *cfg
	c.Resolve()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if opts.HostID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "fleet"
		}
		opts.HostID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if err := membership.ValidateID(opts.HostID); err != nil {
		return nil, fmt.Errorf("fleetwide: host %w", err)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	opts.Etcd = opts.Etcd.Defaults()
	if opts.Etcd.TTL <= 0 {
		opts.Etcd.TTL = registry.DefaultTTL
	}
	rec, err := json.Marshal(hostRecord{ID: opts.HostID, Host: opts.Host, Size: c.Size, Started: opts.Etcd.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("fleetwide: %w", err)
	}
	share := c.Freeze.Share
	if share == 0 {
		share = -1 // 0 disables the freeze
	}
	g := &Guardrails{
		cli:      cli,
		dir:      strings.TrimSuffix(prefix, "/") + "/fleet/",
		id:       opts.HostID,
		record:   string(rec),
		size:     c.Size,
		share:    share,
		window:   c.Freeze.Window,
		max:      c.Budget.Max,
		noLimit:  c.Budget.Max.IsZero(),
		bwindow:  c.Budget.Window,
		opts:     opts,
		kick:     make(chan struct{}, 1),
		own:      map[string]*failure{},
		hosts:    map[string]hostRecord{},
		failures: map[string]map[string]*failure{},
	}
	if g.m, err = newMetrics(g, opts.Registerer); err != nil {
		return nil, fmt.Errorf("fleetwide: register metrics: %w", err)
	}
	return g, nil
}

var _ fleet.Resizer = (*Guardrails)(nil)

// Resize makes size the number of instances this host keeps (its fleet's
// schedule raised or lowered its target): the host's key is rewritten
// with it, so every host's freeze share and percentage budget are of the
// fleet's current size. Called with the fleet's lock held; it does not
// wait for etcd.
func (g *Guardrails) Resize(size int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if size == g.size {
		return
	}
	var rec hostRecord
	if err := json.Unmarshal([]byte(g.record), &rec); err != nil {
		return // g.record is always ours, marshalled by New
	}
	rec.Size = size
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	g.size, g.record = size, string(b)
	g.kickLocked()
}

// Hosts is the number of live hosts sharing the guardrails, this one
// included, as last seen (the last known view while etcd is lost). It
// answers from memory: fleet.Options.Hosts.
func (g *Guardrails) Hosts() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return 1 + len(g.hosts)
}

// HostID is this host's ID: the last segment of its keys.
func (g *Guardrails) HostID() string { return g.id }

func (g *Guardrails) hostKey(id string) string      { return g.dir + "hosts/" + id }
func (g *Guardrails) failureKey(slot string) string { return g.dir + "failures/" + g.id + "/" + slot }
func (g *Guardrails) budgetKey() string             { return g.dir + "budget" }

// Run keeps this host's keys in etcd and follows the others' until ctx is
// done, then revokes the host's lease (its keys go at once) and returns
// nil. Losing etcd is never an error: see the package comment. Call it
// once.
func (g *Guardrails) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("fleetwide: Run called more than once")
	}
	g.mu.Lock()
	g.running = true
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running, g.connected = false, false
		g.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { g.publish(ctx) })
	wg.Go(func() { _ = registry.Follow(ctx, g.cli, g.dir, g.opts.Etcd, g.hooks()) })
	wg.Wait()
	return nil
}

// Refresh reads PREFIX/fleet/ once, within the etcd timeout (or ctx's
// deadline), and fails if etcd does not answer: the first read, before
// the fleet starts, which also tells an operator at once that etcd is out
// of reach. Run reads again.
func (g *Guardrails) Refresh(ctx context.Context) error {
	if _, err := registry.ReadPrefix(ctx, g.cli, g.dir, g.opts.Etcd, g.hooks()); err != nil {
		return fmt.Errorf("fleetwide: read %s at etcd %s: %w", g.dir, strings.Join(g.cli.Endpoints(), ","), err)
	}
	return nil
}

// Fail implements fleet.Guardrails: slot's instance is failing at now.
func (g *Guardrails) Fail(slot string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.own[slot]; ok {
		if !f.Live {
			f.Live, f.At = true, now
			g.kickLocked()
		}
		return
	}
	g.own[slot] = &failure{Live: true, At: now}
	g.kickLocked()
}

// Gone implements fleet.Guardrails: slot's failed instance was replaced
// or exited at now.
func (g *Guardrails) Gone(slot string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.own[slot]; ok && f.Live {
		f.Live, f.At = false, now
		g.kickLocked()
	}
}

// Recover implements fleet.Guardrails: slot's instance passed a check.
func (g *Guardrails) Recover(slot string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.own[slot]; ok {
		delete(g.own, slot)
		g.kickLocked()
	}
}

// Update implements fleet.Guardrails: it re-evaluates the freeze on the
// whole fleet at now.
func (g *Guardrails) Update(now time.Time) (frozen, changed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, total := g.failingLocked(now), g.totalLocked()
	frozen = g.share >= 0 && n >= 2 && float64(n) > g.share*float64(total)
	changed = frozen != g.frozen
	g.frozen = frozen
	return frozen, changed
}

// Failing implements fleet.Guardrails: the failures that count at now,
// on every host.
func (g *Guardrails) Failing(now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failingLocked(now)
}

// Frozen implements fleet.Guardrails: the verdict of the last Update.
func (g *Guardrails) Frozen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.frozen
}

// failingLocked counts the failures at now: this host's, and those of the
// other hosts in the view. This host's gone failures past the window are
// forgotten (their keys deleted).
func (g *Guardrails) failingLocked(now time.Time) int {
	n := 0
	for slot, f := range g.own {
		if !f.counts(now, g.window) {
			delete(g.own, slot)
			g.kickLocked()
			continue
		}
		n++
	}
	for id, fs := range g.failures {
		if _, ok := g.hosts[id]; !ok {
			continue // counted with its host only, as its size is
		}
		for _, f := range fs {
			if g.remoteCountsLocked(f, now) {
				n++
			}
		}
	}
	return n
}

// remoteCountsLocked reports whether another host's failure counts at
// now. While etcd is out of reach, one that was live counts as gone at
// the loss: it counts for a freeze window more, then no longer.
func (g *Guardrails) remoteCountsLocked(f *failure, now time.Time) bool {
	if f.Live && g.down {
		return now.Sub(g.lostAt) < g.window
	}
	return f.counts(now, g.window)
}

// kickLocked wakes the publisher, without waiting.
func (g *Guardrails) kickLocked() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// lost records that etcd did not answer; the first time in an outage it
// logs a warning.
func (g *Guardrails) lost(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.connected = false
	if !g.down {
		g.down, g.lostAt = true, g.opts.Etcd.Now()
		g.opts.Etcd.Logger.Warn("fleetwide: etcd unreachable; deciding on the last known fleet and this host's budget share",
			"endpoints", strings.Join(g.cli.Endpoints(), ","), "prefix", g.dir, "error", err)
	}
}

// synced records that etcd answered and the view is current.
func (g *Guardrails) synced() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		g.down, g.lostAt = false, time.Time{}
		g.opts.Etcd.Logger.Info("fleetwide: etcd answers again; fleet read afresh", "prefix", g.dir, "last_sync", g.lastSync)
	}
	g.connected = true
	g.lastSync = g.opts.Etcd.Now()
}

// Status is the fleet-wide view, for an admin API.
type Status struct {
	// HostID is this host's.
	HostID string `json:"host_id"`
	// Connected: etcd answered the last request. While it is false the
	// view is the last one known and the budget is this host's share.
	Connected bool `json:"connected"`
	// LastSync is when the view was last known to be current.
	LastSync time.Time `json:"last_sync,omitzero"`
	// Hosts are the hosts in the view, this one included, by ID.
	Hosts []HostStatus `json:"hosts"`
	// Size is Σ of their sizes.
	Size int `json:"size"`
	// Failing is the number of failures that count, on every host.
	Failing int `json:"failing"`
	// Frozen is the verdict of the last Update.
	Frozen bool `json:"frozen"`
	// BudgetMax is the fleet-wide budget per window; -1 without limit.
	BudgetMax int `json:"budget_max"`
	// BudgetRemaining is what Request would allow now (-1: no limit).
	BudgetRemaining int `json:"budget_remaining"`
	// Pending are replacements granted while etcd was out of reach, not
	// yet written into the budget key.
	Pending int `json:"pending,omitempty"`
}

// HostStatus is one host of the view.
type HostStatus struct {
	ID      string `json:"id"`
	Host    string `json:"host,omitempty"`
	Size    int    `json:"size"`
	Failing int    `json:"failing"`
	Self    bool   `json:"self,omitempty"`
}

// Status returns the view at Options.Etcd.Now.
func (g *Guardrails) Status() Status {
	now := g.opts.Etcd.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{
		HostID:          g.id,
		Connected:       g.running && g.connected,
		LastSync:        g.lastSync,
		Size:            g.totalLocked(),
		Failing:         g.failingLocked(now),
		Frozen:          g.frozen,
		BudgetMax:       g.maxLocked(),
		BudgetRemaining: g.remainingLocked(now),
		Pending:         len(prune(g.pending, now, g.bwindow)),
	}
	var self hostRecord
	_ = json.Unmarshal([]byte(g.record), &self)
	st.Hosts = append(st.Hosts, HostStatus{ID: g.id, Host: self.Host, Size: g.size, Failing: len(g.own), Self: true})
	for _, id := range slices.Sorted(maps.Keys(g.hosts)) {
		h := g.hosts[id]
		n := 0
		for _, f := range g.failures[id] {
			if g.remoteCountsLocked(f, now) {
				n++
			}
		}
		st.Hosts = append(st.Hosts, HostStatus{ID: id, Host: h.Host, Size: h.Size, Failing: n})
	}
	slices.SortFunc(st.Hosts, func(a, b HostStatus) int { return strings.Compare(a.ID, b.ID) })
	return st
}
