package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/membership"
)

var _ lb.Shared = (*Decisions)(nil)

// Bounds of the decisions a Decisions holds: what etcd holds beyond them
// is skipped (and logged), and a change beyond them is refused with
// lb.ErrTooManyDecisions.
const (
	MaxOverrides = 256
	MaxDrains    = lb.MaxInstances
)

// overridesDir and drainsDir are the directories of decision keys under
// a prefix, with their trailing slash.
func overridesDir(prefix string) string { return prefix + "/overrides/" }
func drainsDir(prefix string) string    { return prefix + "/drains/" }

// OverrideKey returns the key of dependency's shedding override under
// prefix.
func OverrideKey(prefix, dependency string) string { return overridesDir(prefix) + dependency }

// DrainKey returns the key of the drain of the instance id (its service
// address) under prefix.
func DrainKey(prefix, id string) string { return drainsDir(prefix) + id }

// DecisionRecord is the value of a decision's key: a shedding override's
// (Mode) or a drain's (Drained), who took it and when.
type DecisionRecord struct {
	// Mode is an override's: "on" or "off" (auto is no key).
	Mode lb.Override `json:"mode,omitempty"`
	// Drained is a drain's: true (undrained is no key).
	Drained bool `json:"drained,omitempty"`
	// Origin is the id of the balancer whose admin API took it.
	Origin string `json:"origin"`
	// At is when.
	At time.Time `json:"at"`
}

// kind is a kind of decision: an index into the per-kind arrays.
type kind int

const (
	kindOverride kind = iota
	kindDrain
	numKinds
)

var kindNames = [numKinds]string{"override", "drain"}

// stored is a decision as etcd holds it, and the key's mod revision.
type stored struct {
	rec DecisionRecord
	rev int64
}

// change is a decision taken on this balancer, until every balancer can
// see it in etcd.
type change struct {
	kind kind
	name string
	key  string
	rec  *DecisionRecord // nil: no key (auto, undrained)
	// base is the key's mod revision the change was taken over (0: no
	// key): it is published only if etcd still has that one.
	base int64
	seq  uint64    // this balancer's change counter when taken
	at   time.Time // when
	// sent is the revision of the write that published it (0: not yet);
	// the change is forgotten once the watch has reached it.
	sent int64
}

// Decisions is an lb.Shared: the operators' decisions for the balancers
// in front of one fleet, kept in etcd under its prefix, so that a change
// made on any balancer's admin API is applied by all of them.
//
//   - A shedding override other than auto is the key
//     PREFIX/overrides/DEPENDENCY, {"mode":"on"|"off","origin":ID,"at":T};
//     back to auto deletes it. A drain is PREFIX/drains/INSTANCE,
//     {"drained":true,"origin":ID,"at":T}, INSTANCE being the instance's
//     service address (the balancer's instance id); undrain deletes it.
//     The keys have no lease: a decision outlives the balancer that took
//     it. ID is the balancer's id, as under PREFIX/lbs/.
//   - A change is in Current as soon as it is made, and published in the
//     background: SetOverride and SetDrained never wait for etcd. While
//     etcd does not answer, changes wait (Pending in Current and Status)
//     and are published, retrying with opts.Backoff, once it answers.
//   - Conflicts: every balancer applies what etcd holds, the write of the
//     highest revision. A change is published only over the value it was
//     taken over (a transaction comparing the key's mod revision): if
//     another balancer changed the same decision meanwhile (while this
//     one could not reach etcd, say), that change stands, and this one is
//     dropped, logged and counted (Status.Superseded). An operator's
//     decision never silently undoes one taken after it, with a view this
//     one lacked.
//   - Losing etcd keeps every decision as it was; once etcd answers both
//     directories are read afresh. A change still waiting when Run
//     returns is lost (logged).
//
// Make it with NewDecisions; its methods are safe for concurrent use. Run
// follows etcd and publishes until its context is done; call it once.
type Decisions struct {
	cli  *clientv3.Client
	dirs [numKinds]string
	id   string
	opts Options
	kick chan struct{} // a change to publish, or etcd back
	link link

	mu         sync.Mutex
	stored     [numKinds]map[string]stored // by name, as last read or watched
	seen       [numKinds]int64             // the revision each directory is known at
	pending    map[string]*change          // by key
	seq        uint64
	changed    chan struct{} // closed and replaced when Current changes
	superseded uint64
}

// NewDecisions returns the Decisions of the balancer id (the origin of
// its changes) under prefix.
func NewDecisions(cli *clientv3.Client, prefix, id string, opts Options) *Decisions {
	d := &Decisions{
		cli: cli, id: id, opts: opts.withDefaults(),
		dirs:    [numKinds]string{overridesDir(prefix), drainsDir(prefix)},
		kick:    make(chan struct{}, 1),
		pending: map[string]*change{},
		changed: make(chan struct{}),
	}
	for k := range d.stored {
		d.stored[k] = map[string]stored{}
	}
	return d
}

// Current implements lb.Shared.
func (d *Decisions) Current() (lb.SharedDecisions, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := lb.SharedDecisions{
		Overrides: make(map[string]lb.OverrideDecision, len(d.stored[kindOverride])),
		Drains:    make(map[string]lb.Decision, len(d.stored[kindDrain])),
	}
	for name, s := range d.stored[kindOverride] {
		v.Overrides[name] = lb.OverrideDecision{Mode: s.rec.Mode, Decision: lb.Decision{Origin: s.rec.Origin, At: s.rec.At}}
	}
	for name, s := range d.stored[kindDrain] {
		v.Drains[name] = lb.Decision{Origin: s.rec.Origin, At: s.rec.At}
	}
	for _, c := range d.pending {
		dec := lb.Decision{Origin: d.id, At: c.at}
		if c.sent == 0 {
			dec.Origin, dec.Pending = lb.OriginLocal, true
		}
		switch {
		case c.kind == kindOverride && c.rec == nil:
			delete(v.Overrides, c.name)
		case c.kind == kindOverride:
			v.Overrides[c.name] = lb.OverrideDecision{Mode: c.rec.Mode, Decision: dec}
		case c.rec == nil:
			delete(v.Drains, c.name)
		default:
			v.Drains[c.name] = dec
		}
	}
	return v, d.changed
}

// Status implements lb.Shared.
func (d *Decisions) Status() lb.SharedStatus {
	connected, lastSync, _ := d.link.state()
	d.mu.Lock()
	defer d.mu.Unlock()
	return lb.SharedStatus{Store: Scheme, Self: d.id, Connected: connected, LastSync: lastSync,
		Pending: d.pendingLocked(), Superseded: d.superseded}
}

// pendingLocked counts the changes not published yet.
func (d *Decisions) pendingLocked() int {
	n := 0
	for _, c := range d.pending {
		if c.sent == 0 {
			n++
		}
	}
	return n
}

// SetOverride implements lb.Shared: auto deletes the key.
func (d *Decisions) SetOverride(dependency string, o lb.Override) error {
	if !lb.ValidDependencyName(dependency) {
		return fmt.Errorf("dependency %q: not a dependency name", dependency)
	}
	if _, err := lb.ParseOverride(string(o)); err != nil {
		return err
	}
	var rec *DecisionRecord
	if o != lb.OverrideAuto {
		rec = &DecisionRecord{Mode: o, Origin: d.id, At: d.opts.Now().UTC()}
	}
	return d.set(kindOverride, dependency, rec)
}

// SetDrained implements lb.Shared: undrained deletes the key.
func (d *Decisions) SetDrained(id string, drained bool) error {
	if err := membership.ValidateID(id); err != nil {
		return fmt.Errorf("instance: %w", err)
	}
	var rec *DecisionRecord
	if drained {
		rec = &DecisionRecord{Drained: true, Origin: d.id, At: d.opts.Now().UTC()}
	}
	return d.set(kindDrain, id, rec)
}

// set records a change taken here and wakes the publisher.
func (d *Decisions) set(k kind, name string, rec *DecisionRecord) error {
	key := d.dirs[k] + name
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.pending[key]
	if _, ok := d.stored[k][name]; rec == nil && c == nil && !ok {
		return nil // no key, and none wanted
	}
	if rec != nil && c == nil {
		if _, ok := d.stored[k][name]; !ok && d.countLocked(k) >= maxOf(k) {
			return fmt.Errorf("%s of %q: %d held: %w", kindNames[k], name, maxOf(k), lb.ErrTooManyDecisions)
		}
	}
	if c == nil || c.sent > 0 {
		// A new change, over what this balancer last saw of the key:
		// etcd's, or its own write that the watch has not brought yet.
		base := d.stored[k][name].rev
		if c != nil {
			base = max(base, c.sent)
		}
		c = &change{kind: k, name: name, key: key, base: base}
		d.pending[key] = c
	}
	d.seq++
	c.rec, c.seq, c.at, c.sent = rec, d.seq, d.opts.Now().UTC(), 0
	if rec != nil {
		c.at = rec.At
	}
	d.notifyLocked()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

func maxOf(k kind) int {
	if k == kindOverride {
		return MaxOverrides
	}
	return MaxDrains
}

// countLocked counts the decisions of kind k in force, roughly: those in
// etcd and those waiting.
func (d *Decisions) countLocked(k kind) int {
	n := len(d.stored[k])
	for _, c := range d.pending {
		if _, ok := d.stored[k][c.name]; c.kind == k && !ok {
			n++
		}
	}
	return n
}

func (d *Decisions) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Refresh reads both directories once, within opts.Timeout (or ctx's
// deadline): the first read, so that a balancer starts with the
// fleet's decisions. Run reads again.
func (d *Decisions) Refresh(ctx context.Context) error {
	for k := range numKinds {
		if _, err := ReadPrefix(ctx, d.cli, d.dirs[k], d.opts, d.hooks(k)); err != nil {
			d.lost(err)
			return err
		}
	}
	return nil
}

// Run follows both directories and publishes this balancer's changes
// until ctx is done; it returns nil then (it never returns an error).
func (d *Decisions) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for k := range numKinds {
		wg.Go(func() { _ = Follow(ctx, d.cli, d.dirs[k], d.opts, d.hooks(k)) })
	}
	wg.Go(func() { d.publishLoop(ctx) })
	wg.Wait()
	d.mu.Lock()
	n := d.pendingLocked()
	d.mu.Unlock()
	if n > 0 {
		d.opts.Logger.Warn("registry: stopping with decisions not shared", "pending", n)
	}
	return nil
}

// hooks keep the decisions of kind k as etcd has them.
func (d *Decisions) hooks(k kind) PrefixHooks {
	var set map[string]stored
	return PrefixHooks{
		Reset:   func() { set = map[string]stored{} },
		Put:     func(kv *mvccpb.KeyValue) { d.put(k, set, string(kv.Key), kv.Value, kv.ModRevision) },
		Del:     func(key string) { delete(set, strings.TrimPrefix(key, d.dirs[k])) },
		Publish: func(rev int64) { d.publish(k, set, rev) },
		Synced:  d.synced,
		Lost:    d.lost,
	}
}

// put adds the decision at key to set, or logs why not (and drops what
// the key held before).
func (d *Decisions) put(k kind, set map[string]stored, key string, value []byte, rev int64) {
	name := strings.TrimPrefix(key, d.dirs[k])
	var r DecisionRecord
	err := json.Unmarshal(value, &r)
	if err == nil {
		err = membership.ValidateID(r.Origin)
	}
	if err == nil {
		switch k {
		case kindOverride:
			if !lb.ValidDependencyName(name) {
				err = fmt.Errorf("%q is not a dependency name", name)
			} else if r.Mode != lb.OverrideOn && r.Mode != lb.OverrideOff {
				if r.Mode == lb.OverrideAuto {
					delete(set, name) // auto: as good as no key
					return
				}
				err = fmt.Errorf("mode %q: want on or off", r.Mode)
			}
		case kindDrain:
			if err = membership.ValidateID(name); err == nil && !r.Drained {
				delete(set, name) // not drained: as good as no key
				return
			}
		}
	}
	if _, ok := set[name]; err == nil && !ok && len(set) >= maxOf(k) {
		err = fmt.Errorf("more than %d held", maxOf(k))
	}
	if err != nil {
		d.opts.Logger.Warn("registry: decision skipped", "key", key, "error", err)
		delete(set, name)
		return
	}
	set[name] = stored{rec: r, rev: rev}
}

// publish makes set the decisions of kind k as etcd has them at rev, and
// forgets this balancer's published changes that the watch has reached.
func (d *Decisions) publish(k kind, set map[string]stored, rev int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stored[k] = maps.Clone(set)
	d.seen[k] = max(d.seen[k], rev)
	for key, c := range d.pending {
		if c.kind == k && c.sent > 0 && c.sent <= d.seen[k] {
			delete(d.pending, key)
		}
	}
	d.notifyLocked()
}

// publishLoop publishes the changes taken here until ctx is done: at
// once, and while etcd does not answer with opts.Backoff, or as soon as
// it answers again.
func (d *Decisions) publishLoop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for attempt := 0; ; {
		retry.Stop()
		var again <-chan time.Time
		if err := d.publishPending(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.opts.Logger.Debug("registry: decisions not published yet", "error", err, "attempt", attempt+1)
			retry.Reset(d.opts.Backoff(attempt))
			again = retry.C
			attempt++
		} else {
			attempt = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-again:
		}
	}
}

// publishPending writes every change not published yet, each over the
// revision it was taken over; it stops at the first error (etcd does not
// answer).
func (d *Decisions) publishPending(ctx context.Context) error {
	d.mu.Lock()
	var todo []change
	for _, c := range d.pending {
		if c.sent == 0 {
			todo = append(todo, *c)
		}
	}
	d.mu.Unlock()
	for _, c := range todo {
		op := clientv3.OpDelete(c.key)
		if c.rec != nil {
			value, err := json.Marshal(c.rec)
			if err != nil {
				return fmt.Errorf("decision %s: %w", c.key, err)
			}
			op = clientv3.OpPut(c.key, string(value))
		}
		tctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		res, err := d.cli.Txn(tctx).If(clientv3.Compare(clientv3.ModRevision(c.key), "=", c.base)).Then(op).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w", c.key, err)
		}
		d.published(c, res.Succeeded, res.Header.Revision)
	}
	return nil
}

// published records the outcome of publishing c at rev: written, or
// superseded by another balancer's change of the same key.
func (d *Decisions) published(c change, ok bool, rev int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pending[c.key]
	if p == nil {
		return
	}
	switch {
	case !ok:
		// Another balancer changed the key after this one last saw it:
		// its change stands, and so do those taken here over the same
		// stale view since.
		delete(d.pending, c.key)
		d.superseded++
		d.opts.Logger.Warn("registry: decision superseded: another balancer changed it first; applying theirs", "key", c.key, "taken_at", c.at, "over_revision", c.base)
	case p.seq != c.seq:
		p.base = rev // a newer change, over the one just written
		select {
		case d.kick <- struct{}{}:
		default:
		}
	case d.seen[c.kind] >= rev:
		delete(d.pending, c.key) // the watch has it already
	default:
		p.sent = rev
	}
	d.notifyLocked()
}

// lost records that etcd did not answer; the first time in an outage it
// logs a warning.
func (d *Decisions) lost(err error) {
	if d.link.lost(d.opts.Now()) {
		d.opts.Logger.Warn("registry: etcd unreachable; keeping the decisions in force, sharing changes when it answers", "endpoints", endpoints(d.cli), "prefix", d.dirs[kindOverride], "error", err)
	}
}

// synced records that etcd answered; when it is back, the publisher is
// woken.
func (d *Decisions) synced() {
	last, back := d.link.synced(d.opts.Now())
	if !back {
		return
	}
	d.mu.Lock()
	pending := d.pendingLocked()
	d.mu.Unlock()
	d.opts.Logger.Info("registry: etcd answers again; decisions read afresh", "pending", pending, "last_sync", last)
	select {
	case d.kick <- struct{}{}:
	default:
	}
}
