// Package controller applies a load balancer's decisions to a running
// HAProxy: it takes the Plans an lb.Balancer publishes (Options.DataPlane)
// and converges HAProxy's servers (state, weight, maxconn) and share map
// to them through the Runtime API (internal/haproxy), without a reload.
//
// # Contract
//
//   - Build a Controller with New and call Run once; Run owns the one
//     goroutine of the controller (its own caller's) and returns when its
//     context is done, or at start with an error wrapping ErrMissing when
//     the HAProxy it reaches lacks the backend, a server or the map (or a
//     map key) the configuration it was given names. Nothing needs
//     closing; Run starts no other goroutine.
//   - Convergence: before it changes anything Run reads back what HAProxy
//     holds (show servers state, show stat, show map), then sends only
//     the differences between that and the latest Plan, and keeps what it
//     sent as what HAProxy holds. A controller that restarts therefore
//     sends nothing for what it had already set (no flapping). It reads
//     everything back again, and so re-applies whatever HAProxy lost,
//     when HAProxy restarted (show info's pid or uptime, polled every
//     Options.Poll) or when a command failed.
//   - An instance the Plan has not checked yet (lb.ServerUnknown) is left
//     as HAProxy has it, and so is the share map until the Plan is
//     settled (lb.Plan.Settled: every instance checked once), so that a
//     controller restarted during an outage does not reopen the map; a server the Plan does not name is left alone;
//     an instance without a server is logged once (the configuration
//     must be printed again and HAProxy reloaded to add it).
//   - While the socket is unreachable Run tries again after
//     Options.Backoff's delays (capped), and spillway_controller_haproxy_up
//     is 0. HAProxy keeps the last state it was given meanwhile.
//   - With a dynamic configuration (haproxy.Config.Dynamic) the
//     controller adds a server for an instance that has none (in
//     maintenance, its check on, then driven as any other) and, once the
//     Plan is settled, removes a server that no instance of the Plan
//     names and that Config.Instances does not list: maint first, then
//     "del server" at the first Plan that finds its connections gone.
//   - Every change is logged (msg "haproxy change", snake_case keys) and
//     counted in spillway_controller_changes_total{kind}, kind one of
//     state, weight, maxconn, map, server.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
)

// ErrMissing: the HAProxy the controller talks to lacks the backend, a
// server or the share map (or one of its keys) that it needs.
var ErrMissing = errors.New("haproxy lacks what the controller needs")

// Options are a Controller's collaborators and settings.
type Options struct {
	// Runtime is HAProxy's Runtime API. Required.
	Runtime *haproxy.Runtime
	// Config is the configuration HAProxy was written from
	// (haproxy.Config.Render): its MapFile and routes (MapEntries) are
	// the share map's; its Instances are the servers checked at start
	// (with discovery it may be empty: the Plans' instances are then
	// looked up as they come).
	Config haproxy.Config
	// Plans is the balancer's feed (lb.Options.DataPlane). Required.
	Plans *lb.PlanFeed
	// Logger receives the controller's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the controller's metrics. Default: none kept.
	Registerer prometheus.Registerer
	// Fix is the command that writes a configuration with what the
	// controller needs, quoted in the ErrMissing error ("spillway
	// controller --print-haproxy-config ...").
	Fix string
	// Poll is how often HAProxy's identity (show info) is read, to notice
	// a restart. Default 1s.
	Poll time.Duration
	// Backoff spaces the attempts while HAProxy is unreachable or a
	// command fails. Default DefaultBackoff.
	Backoff Backoff
}

// Backoff is the delay policy between failed attempts: Min after the
// first failure, doubling each time, at most Max.
type Backoff struct {
	Min, Max time.Duration
}

// DefaultBackoff is Options.Backoff's default.
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}

// Delay returns the wait after the attempt-th failure in a row (from 1).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Controller applies Plans to one HAProxy. See the package documentation.
type Controller struct {
	rt      *haproxy.Runtime
	cfg     haproxy.Config
	entries []haproxy.RouteLine
	plans   *lb.PlanFeed
	log     *slog.Logger
	fix     string
	poll    time.Duration
	backoff Backoff
	m       *metrics
	// unknown holds the instances logged as having no server.
	unknown map[string]bool
	// static holds the servers of Config.Instances, never removed.
	static map[string]bool
}

// New returns a Controller, or an error naming a missing option.
func New(opts Options) (*Controller, error) {
	if opts.Runtime == nil {
		return nil, errors.New("controller: no Runtime")
	}
	if opts.Plans == nil {
		return nil, errors.New("controller: no Plans")
	}
	if opts.Config.MapFile == "" {
		return nil, errors.New("controller: no Config.MapFile")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Backoff.Min <= 0 || opts.Backoff.Max < opts.Backoff.Min {
		opts.Backoff = DefaultBackoff
	}
	c := &Controller{
		rt: opts.Runtime, cfg: opts.Config, entries: opts.Config.MapEntries(), plans: opts.Plans,
		log: opts.Logger, fix: opts.Fix, poll: opts.Poll, backoff: opts.Backoff,
		m: newMetrics(), unknown: map[string]bool{}, static: map[string]bool{},
	}
	for _, in := range opts.Config.Instances {
		c.static[haproxy.ServerName(in.Service)] = true
	}
	if opts.Registerer != nil {
		if err := c.m.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("controller: register metrics: %w", err)
		}
	}
	return c, nil
}

// Run converges HAProxy to the latest Plan until ctx is done; see the
// package documentation. It returns nil when ctx ends, or an error
// wrapping ErrMissing at start.
func (c *Controller) Run(ctx context.Context) error {
	var (
		held     *held // what HAProxy holds; nil: read it back first
		reason   = "start"
		started  bool
		failures int
		retry    <-chan time.Time // set while waiting after a failure
	)
	poll := time.NewTicker(c.poll)
	defer poll.Stop()
	fail := func(what string, err error) {
		failures++
		d := c.backoff.Delay(failures)
		c.log.Warn("haproxy: "+what+" failed; trying again", "socket", c.rt.Addr(), "error", err, "attempt", failures, "retry_in", d)
		held = nil
		if started {
			reason = "error"
		}
		retry = time.After(d)
	}
	for {
		if retry == nil {
			if held == nil {
				h, missing, err := c.read(ctx)
				switch {
				case ctx.Err() != nil:
					return nil
				case err != nil:
					c.m.up.Set(0)
					fail("reading its state", err)
				case len(missing) > 0:
					err := c.missingError(missing)
					if !started {
						return err
					}
					c.m.up.Set(0)
					fail("checking its configuration", err)
				default:
					c.m.up.Set(1)
					c.m.resyncs.WithLabelValues(reason).Inc()
					c.log.Info("haproxy state read", "socket", c.rt.Addr(), "reason", reason, "pid", h.info.Pid,
						"version", h.info.Version, "servers", len(h.servers), "map_entries", len(h.shares))
					held, started = h, true
				}
			}
			if held != nil {
				if plan, ok := c.plans.Latest(); ok {
					if err := c.apply(ctx, plan, held); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						c.m.failures.Inc()
						fail("a command", err)
					} else {
						failures = 0
						c.m.applied.Inc()
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-retry:
			retry = nil
		case <-c.plans.Ready():
		case <-poll.C:
			if held == nil || retry != nil {
				continue
			}
			info, err := c.rt.Info(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				c.m.up.Set(0)
				fail("show info", err)
			case info.RestartedSince(held.info):
				c.log.Warn("haproxy restarted: reading its state and applying the plan again", "pid", info.Pid, "previous_pid", held.info.Pid, "uptime_sec", info.UptimeSec)
				held, reason = nil, "haproxy_restart"
			default:
				held.info = info
			}
		}
	}
}

// server is what the controller sets on one server.
type server struct {
	state   lb.ServerState
	weight  int
	maxconn int // 0: none
}

// held is what HAProxy holds, as read back and then as changed.
type held struct {
	info    haproxy.Info
	servers map[string]server // by server name, in BackendName
	shares  []share           // the share map, in HAProxy's order
}

// share is one line of the share map: a route's prefix and its admitted
// share in per-mille (-1: a value that is not a number).
type share struct {
	prefix string
	value  int
}

// read reads HAProxy's state and lists what it lacks.
func (c *Controller) read(ctx context.Context) (*held, []string, error) {
	info, err := c.rt.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	h := &held{info: info, servers: map[string]server{}}
	var missing []string
	servers, err := c.rt.ServersState(ctx, haproxy.BackendName)
	backend := err == nil
	switch {
	case errors.Is(err, haproxy.ErrNotFound):
		missing = append(missing, fmt.Sprintf("backend %q", haproxy.BackendName))
	case err != nil:
		return nil, nil, err
	}
	for _, s := range servers {
		h.servers[s.Name] = server{state: stateOf(s.AdminState), weight: s.Weight}
	}
	if len(servers) > 0 {
		limits, err := c.serverLimits(ctx)
		if err != nil {
			return nil, nil, err
		}
		for name, n := range limits {
			if s, ok := h.servers[name]; ok {
				s.maxconn = n
				h.servers[name] = s
			}
		}
	}
	for _, in := range c.cfg.Instances {
		name := haproxy.ServerName(in.Service)
		if _, ok := h.servers[name]; !ok && backend {
			missing = append(missing, fmt.Sprintf("server %s/%s (instance %s)", haproxy.BackendName, name, in.Service))
		}
	}
	entries, err := c.rt.ShowMap(ctx, c.cfg.MapFile)
	switch {
	case errors.Is(err, haproxy.ErrNotFound):
		return h, append(missing, fmt.Sprintf("map %s", c.cfg.MapFile)), nil
	case err != nil:
		return nil, nil, err
	}
	for _, e := range entries {
		v, err := strconv.Atoi(strings.TrimSpace(e.Value))
		if err != nil {
			v = -1 // replaced
		}
		h.shares = append(h.shares, share{e.Key, v})
	}
	return h, missing, nil
}

// serverLimits reads every server's maxconn (show stat's slim; none: 0)
// in BackendName: show servers state does not carry it.
func (c *Controller) serverLimits(ctx context.Context) (map[string]int, error) {
	const command = "show stat -1 4 -1" // every proxy's servers
	answer, err := c.rt.Exec(ctx, command)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var px, sv, slim = -1, -1, -1
	for line := range strings.SplitSeq(answer, "\n") {
		if h, ok := strings.CutPrefix(line, "# "); ok {
			for i, f := range strings.Split(h, ",") {
				switch f {
				case "pxname":
					px = i
				case "svname":
					sv = i
				case "slim":
					slim = i
				}
			}
			continue
		}
		f := strings.Split(line, ",")
		if px < 0 || sv < 0 || slim < 0 || len(f) <= max(px, sv, slim) {
			continue
		}
		if f[px] != haproxy.BackendName {
			continue
		}
		n, _ := strconv.Atoi(f[slim]) // "" when unlimited: 0
		out[f[sv]] = n
	}
	if px < 0 || sv < 0 || slim < 0 {
		return nil, fmt.Errorf("haproxy command %q: no pxname, svname and slim in the header", command)
	}
	return out, nil
}

func (c *Controller) missingError(missing []string) error {
	msg := fmt.Sprintf("%s at %s: %s", ErrMissing.Error(), c.rt.Addr(), strings.Join(missing, "; "))
	if c.fix != "" {
		msg += "; write the configuration it needs with: " + c.fix
	}
	return &missingError{msg: msg}
}

type missingError struct{ msg string }

func (e *missingError) Error() string { return e.msg }
func (e *missingError) Unwrap() error { return ErrMissing }

// apply sends HAProxy what differs between plan and h, and records each
// change in h. It stops at the first failure.
func (c *Controller) apply(ctx context.Context, plan lb.Plan, h *held) error {
	for _, pi := range plan.Instances {
		name := haproxy.ServerName(pi.ID)
		have, ok := h.servers[name]
		if !ok && c.cfg.Dynamic && pi.Health != "" {
			if err := c.addServer(ctx, name, pi, h); err != nil {
				return err
			}
			have, ok = h.servers[name], true
		}
		if pi.State == lb.ServerUnknown {
			continue
		}
		if !ok {
			if !c.unknown[pi.ID] {
				c.unknown[pi.ID] = true
				c.log.Error("instance has no server in HAProxy: print the configuration again and reload HAProxy",
					"instance", pi.ID, "server", haproxy.BackendName+"/"+name)
			}
			continue
		}
		if err := c.applyServer(ctx, name, pi, have, h); err != nil {
			return err
		}
	}
	if !plan.Settled {
		// The first checks are not all in: the shares could admit what
		// HAProxy sheds (a restart mid-outage). Keep HAProxy's.
		return nil
	}
	if c.cfg.Dynamic {
		if err := c.removeServers(ctx, plan, h); err != nil {
			return err
		}
	}
	return c.applyShares(ctx, plan, h)
}

// applyShares converges the share map. While every route admits all it
// is empty, so that HAProxy's per-request lookup finds nothing and sets
// nothing; otherwise it holds every route, longest prefix first (the
// order map_beg matches in), at its share. Value changes go one "set
// map" each; any other change (filling, emptying, other keys or order)
// replaces the whole map in one commit.
func (c *Controller) applyShares(ctx context.Context, plan lb.Plan, h *held) error {
	var want []share
	for _, e := range c.entries {
		s, ok := plan.Route(e.Prefix)
		if !ok {
			s = plan.Share(e.Dependencies, e.All)
		}
		want = append(want, share{e.Prefix, int(math.Round(s * haproxy.AdmitAll))})
	}
	if !slices.ContainsFunc(want, func(s share) bool { return s.value != haproxy.AdmitAll }) {
		want = nil
	}
	if slices.Equal(want, h.shares) {
		return nil
	}
	samePrefixes := len(want) == len(h.shares)
	for i := range want {
		samePrefixes = samePrefixes && want[i].prefix == h.shares[i].prefix
	}
	if samePrefixes {
		for i, w := range want {
			have := h.shares[i]
			if have.value == w.value {
				continue
			}
			if err := c.rt.SetMap(ctx, c.cfg.MapFile, w.prefix, strconv.Itoa(w.value)); err != nil {
				return err
			}
			h.shares[i] = w
			c.changed("map", "key", w.prefix, have.value, w.value)
		}
		return nil
	}
	entries := make([]haproxy.MapEntry, len(want))
	for i, w := range want {
		entries[i] = haproxy.MapEntry{Key: w.prefix, Value: strconv.Itoa(w.value)}
	}
	if err := c.rt.ReplaceMap(ctx, c.cfg.MapFile, entries); err != nil {
		return err
	}
	c.changed("map", "map", c.cfg.MapFile, shareText(h.shares), shareText(want))
	h.shares = want
	return nil
}

// shareText renders a share map for the change log: "/api/=0 /=1000", or
// "empty".
func shareText(ss []share) string {
	if len(ss) == 0 {
		return "empty"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.prefix + "=" + strconv.Itoa(s.value)
	}
	return strings.Join(parts, " ")
}

// applyServer converges one server. Toward ready the weight and maxconn
// go first, so that the server takes its first requests at its ramp's
// weight; away from ready the state goes first.
func (c *Controller) applyServer(ctx context.Context, name string, pi lb.PlanInstance, have server, h *held) error {
	setState := func() error {
		if have.state == pi.State {
			return nil
		}
		if err := c.rt.SetServerState(ctx, haproxy.BackendName, name, haproxy.State(pi.State)); err != nil {
			return err
		}
		c.changed("state", "server", name, string(have.state), string(pi.State))
		have.state = pi.State
		h.servers[name] = have
		return nil
	}
	if pi.State != lb.ServerReady {
		return setState()
	}
	if pi.Weight > 0 && pi.Weight != have.weight {
		if err := c.rt.SetWeight(ctx, haproxy.BackendName, name, pi.Weight); err != nil {
			return err
		}
		c.changed("weight", "server", name, have.weight, pi.Weight)
		have.weight = pi.Weight
		h.servers[name] = have
	}
	if pi.MaxConn != have.maxconn {
		if err := c.rt.SetMaxconn(ctx, haproxy.BackendName, name, pi.MaxConn); err != nil {
			return err
		}
		c.changed("maxconn", "server", name, have.maxconn, pi.MaxConn)
		have.maxconn = pi.MaxConn
		h.servers[name] = have
	}
	return setState()
}

// addServer adds the server of pi, in maintenance at pi's weight (full
// weight while it has none), and records it in h.
func (c *Controller) addServer(ctx context.Context, name string, pi lb.PlanInstance, h *held) error {
	w := pi.Weight
	if w <= 0 {
		w = haproxy.FullWeight
	}
	spec := haproxy.ServerSpec{Instance: lb.Instance{Service: pi.ID, Health: pi.Health}, Weight: w, Health: c.cfg.Health}
	if err := c.rt.AddServer(ctx, haproxy.BackendName, name, spec); err != nil {
		return err
	}
	h.servers[name] = server{state: lb.ServerMaint, weight: w}
	c.changed("server", "server", name, "none", "added")
	return nil
}

// removeServers takes the servers no instance of plan names (and not
// static) out: maint, then deleted once HAProxy lets it (no connection
// left), at this Plan or a later one.
func (c *Controller) removeServers(ctx context.Context, plan lb.Plan, h *held) error {
	named := make(map[string]bool, len(plan.Instances))
	for _, pi := range plan.Instances {
		named[haproxy.ServerName(pi.ID)] = true
	}
	for name, sv := range h.servers {
		if c.static[name] || named[name] {
			continue
		}
		if sv.state != lb.ServerMaint {
			if err := c.rt.SetServerState(ctx, haproxy.BackendName, name, haproxy.StateMaint); err != nil {
				return err
			}
			c.changed("state", "server", name, string(sv.state), string(lb.ServerMaint))
			sv.state = lb.ServerMaint
			h.servers[name] = sv
		}
		err := c.rt.DelServer(ctx, haproxy.BackendName, name)
		switch {
		case errors.Is(err, haproxy.ErrRejected):
			// Connections left: the next Plan tries again.
			c.log.Debug("haproxy: server not deleted yet", "server", name, "error", err)
			continue
		case errors.Is(err, haproxy.ErrNotFound):
		case err != nil:
			return err
		default:
			c.changed("server", "server", name, "present", "deleted")
		}
		delete(h.servers, name)
	}
	return nil
}

// changed logs and counts one change.
func (c *Controller) changed(kind, what, name string, from, to any) {
	c.m.changes.WithLabelValues(kind).Inc()
	c.log.Info("haproxy change", "kind", kind, what, name, "from", from, "to", to)
}

// stateOf is the plan state an HAProxy server's administrative state
// stands for.
func stateOf(a haproxy.AdminState) lb.ServerState {
	switch {
	case a.Maint():
		return lb.ServerMaint
	case a.Drain():
		return lb.ServerDrain
	}
	return lb.ServerReady
}
