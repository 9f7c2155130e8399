package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure Register and NewDiscovery. The zero value is the
// defaults.
type Options struct {
	// TTL is a registration's lease TTL: how long its key outlives an
	// instance that stops keeping it alive. etcd counts whole seconds: it
	// is rounded up. Default DefaultTTL (5 s).
	TTL time.Duration
	// Timeout bounds each request to etcd (a grant, a put, a read, a
	// probe). Default 2 s.
	Timeout time.Duration
	// ProbeInterval is how often a Discovery asks etcd whether it answers
	// while it watches: a watch alone does not notice etcd going away.
	// Default 1 s.
	ProbeInterval time.Duration
	// Backoff spaces retries while etcd does not answer. Default
	// DefaultBackoff.
	Backoff Backoff
	// Logger receives warnings (etcd lost, once per outage) and notices
	// (etcd back). Default: discard.
	Logger *slog.Logger
	// Now is the clock of Discovery.LastSync. Default time.Now.
	Now func() time.Time
}

// Defaults returns o with each zero field set to its default.
func (o Options) Defaults() Options { return o.withDefaults() }

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.Logger == nil {
		o.Logger = discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ttlSeconds is ttl in etcd's unit, rounded up.
func ttlSeconds(ttl time.Duration) int64 {
	return int64((ttl + time.Second - 1) / time.Second)
}

// Registration is one instance's (or balancer's) key in etcd, kept alive
// by Run and removed by Deregister. Make it with Register (or
// RegisterLB).
type Registration struct {
	cli   *clientv3.Client
	key   string
	value string
	opts  Options

	stopped  context.Context // done once Deregister was called
	stopRuns context.CancelFunc

	mu     sync.Mutex
	lease  clientv3.LeaseID // the lease the key is attached to
	closed bool             // Deregister was called

	own bool // cli is the registration's own (RegisterAt): Close closes it
}

// Register puts rec under prefix (the key PREFIX/instances/ID) with a
// lease of opts.TTL, and returns the registration; Run keeps it alive. It
// fails when rec is invalid or etcd does not grant the lease and take the
// key within opts.Timeout (or ctx's deadline, if sooner).
func Register(ctx context.Context, cli *clientv3.Client, prefix string, rec Record, opts Options) (*Registration, error) {
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	return registerKey(ctx, cli, Key(prefix, rec.ID), rec, opts)
}

// RegisterAt dials target and registers rec there (Register) with a
// client of its own, under a lease of ttl, logging to log; Close releases
// the client. It is what a login instance's Registrar does.
func RegisterAt(ctx context.Context, target Target, rec Record, ttl time.Duration, log *slog.Logger) (*Registration, error) {
	cli, err := Dial(target)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	r, err := Register(ctx, cli, target.Prefix, rec, Options{TTL: ttl, Logger: log})
	if err != nil {
		cli.Close()
		return nil, err
	}
	r.own = true
	return r, nil
}

// Close closes the etcd client of a registration made by RegisterAt; it
// does nothing for one made with the caller's client. Call it after Run
// has returned.
func (r *Registration) Close() error {
	if !r.own {
		return nil
	}
	return r.cli.Close()
}

// RegisterLB puts a balancer's rec under prefix (the key PREFIX/lbs/ID)
// with a lease of opts.TTL, as Register does for an instance; Peers
// counts the balancers registered so.
func RegisterLB(ctx context.Context, cli *clientv3.Client, prefix string, rec LBRecord, opts Options) (*Registration, error) {
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	return registerKey(ctx, cli, LBKey(prefix, rec.ID), rec, opts)
}

// registerKey puts rec, in JSON, at key under a lease, and returns the
// registration.
func registerKey(ctx context.Context, cli *clientv3.Client, key string, rec any, opts Options) (*Registration, error) {
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	r := &Registration{cli: cli, key: key, value: string(value), opts: opts.withDefaults()}
	r.stopped, r.stopRuns = context.WithCancel(context.Background())
	lease, err := r.put(ctx)
	if err != nil {
		return nil, fmt.Errorf("register %s at etcd %s: %w", r.key, strings.Join(cli.Endpoints(), ","), err)
	}
	r.lease = lease
	return r, nil
}

// Key returns the registration's key.
func (r *Registration) Key() string { return r.key }

// put grants a lease and puts the key under it.
func (r *Registration) put(ctx context.Context) (clientv3.LeaseID, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	g, err := r.cli.Grant(ctx, ttlSeconds(r.opts.TTL))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	if _, err := r.cli.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		r.revoke(g.ID) // or it expires
		return 0, fmt.Errorf("put %s: %w", r.key, err)
	}
	return g.ID, nil
}

// revoke revokes lease, best effort, within opts.Timeout.
func (r *Registration) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	_, _ = r.cli.Revoke(ctx, lease)
}

// Run keeps the registration alive until ctx is done or Deregister is
// called, and returns nil then; the key then lives out its lease unless
// Deregister revoked it. When etcd stops answering for longer than the
// TTL, or the lease is gone, Run logs a warning and registers again, under
// a new lease, as soon as etcd answers (retrying per opts.Backoff). It
// returns an error only when the etcd client was closed under it. Call it
// once.
func (r *Registration) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.stopped, cancel)()
	log := r.opts.Logger.With("key", r.key)
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	for {
		// The channel closes when ctx is done, or when etcd has not
		// renewed the lease for a TTL (it may have expired), or it is gone.
		if ch, err := r.cli.KeepAlive(ctx, lease); err == nil {
			for range ch {
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := r.cli.Ctx().Err(); err != nil {
			return fmt.Errorf("registry: etcd client closed: %w", err)
		}
		lost := time.Now()
		log.Warn("registry: etcd lease lost (etcd unreachable, or the lease expired); registering again when etcd answers", "lease", fmt.Sprintf("%x", int64(lease)))
		for attempt := 0; ; attempt++ {
			var err error
			if lease, err = r.put(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if err := r.cli.Ctx().Err(); err != nil {
				return fmt.Errorf("registry: etcd client closed: %w", err)
			}
			log.Debug("registry: register again failed", "attempt", attempt+1, "error", err)
			if !sleep(ctx, r.opts.Backoff(attempt)) {
				return nil
			}
		}
		r.mu.Lock()
		closed := r.closed
		if !closed {
			r.lease = lease
		}
		r.mu.Unlock()
		if closed {
			r.revoke(lease) // Deregister ran meanwhile, on the old lease
			return nil
		}
		log.Info("registry: registered again", "lease", fmt.Sprintf("%x", int64(lease)), "outage", time.Since(lost).Round(time.Millisecond))
	}
}

// Deregister removes the key at once, by revoking its lease, and stops
// Run. Call it when the instance starts draining, before its listener
// closes, so balancers stop sending to it. If etcd does not answer within
// opts.Timeout (or ctx's deadline), it returns the error, and the key
// expires with its lease instead. Later calls do nothing.
func (r *Registration) Deregister(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	lease := r.lease
	r.mu.Unlock()
	r.stopRuns()
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("deregister %s: revoke lease: %w", r.key, err)
	}
	return nil
}
