package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spillway-dev/spillway/internal/httpapi"
)

// Status is the admin API's GET /status document.
type Status struct {
	Time time.Time `json:"time"`
	// Lifecycle is the balancer's own stage: "starting" (the first
	// health checks, not serving yet), "serving", "draining" (stopping:
	// /readyz answers 503, the proxy serves on for the drain delay),
	// "stopping" (listener closed, requests in flight finishing) or
	// "stopped".
	Lifecycle string `json:"lifecycle"`
	// Draining: a stop has begun (lifecycle draining or later).
	Draining bool `json:"draining"`
	// Panic: routing across every instance that accepts connections.
	Panic bool `json:"panic"`
	// Routing counts instances as of the last evaluation.
	Routing RoutingStatus `json:"routing"`
	// Capacity is the edge admission state.
	Capacity CapacityStatus `json:"capacity"`
	// Instances is each instance's state, by id.
	Instances []InstanceView `json:"instances"`
	// Dependencies is each tracked dependency's shedding state, by name.
	Dependencies []DependencyStatus `json:"dependencies"`
	// Discovery is the discovery source's state, when it reports one
	// (SourceReporter: etcd); nil for a static list.
	Discovery *SourceStatus `json:"discovery,omitempty"`
	// Shared is the state of the store of the decisions shared with the
	// other balancers (Options.Shared); nil when they are this
	// balancer's own.
	Shared *SharedStatus `json:"shared,omitempty"`
	// DrainsWaiting are the instances drained by a shared decision that
	// this balancer does not know (yet): each is drained as it appears.
	DrainsWaiting []string `json:"drains_waiting,omitempty"`
	// Counters since start.
	Counters Counters `json:"counters"`
}

// RoutingStatus counts instances: known; Members count for the panic
// threshold (not drained, draining or pending); Routable and Ejected among
// them; Candidates in the routing snapshot.
type RoutingStatus struct {
	Instances  int `json:"instances"`
	Members    int `json:"members"`
	Routable   int `json:"routable"`
	Ejected    int `json:"ejected"`
	Candidates int `json:"candidates"`
}

// CapacityStatus is the edge admission state.
type CapacityStatus struct {
	// Bounded: the bound follows the instances' reported limits (or the
	// fallback); false means no edge bound.
	Bounded bool `json:"bounded"`
	// Limit is the bound in effect (0 when not bounded).
	Limit    int `json:"limit"`
	InFlight int `json:"in_flight"`
	Queue    int `json:"queue"`
	// Share is this balancer's part of the fleet's reported capacity
	// (Options.Peers; 1 alone): a bound that follows the reports is the
	// capacity × share. Peers counts the live balancers, itself included.
	Share float64 `json:"share"`
	Peers int     `json:"peers"`
}

// InstanceView is an instance's status with its health address and,
// when an operator drained it, where and when.
type InstanceView struct {
	InstanceStatus
	Health string `json:"health"`
	// DrainOrigin is the balancer whose admin API drained it (its id, or
	// "local" when the drain is not shared); DrainedAt when;
	// DrainPending: drained here while etcd was out of reach, not shared
	// yet.
	DrainOrigin  string    `json:"drain_origin,omitempty"`
	DrainedAt    time.Time `json:"drained_at,omitzero"`
	DrainPending bool      `json:"drain_pending,omitempty"`
}

// Counters are the balancer's counters, as exported in /metrics.
type Counters struct {
	Requests  map[string]uint64 `json:"requests"`
	Retries   map[string]uint64 `json:"retries"`
	Ejections uint64            `json:"ejections"`
	Reloads   map[string]uint64 `json:"config_reloads"`
	// ReportsUnusable counts instance reports that could not be used, by
	// reason (health.UnusableReasons).
	ReportsUnusable map[string]uint64 `json:"reports_unusable"`
	BudgetWindow    struct {
		Requests int64 `json:"requests"`
		Retries  int64 `json:"retries"`
	} `json:"retry_budget_window"`
}

// Status returns the balancer's state now.
func (b *Balancer) Status() Status {
	now := time.Now()
	b.mu.Lock()
	ev, limit, share, dec := b.ev, b.edgeLimit, b.share, b.decisions
	insts := b.pool.Status(now)
	health := make(map[string]string, len(b.checkers))
	for id, h := range b.checkers {
		health[id] = h.inst.Health
	}
	b.mu.Unlock()
	stage := b.stage.Load()
	st := Status{
		Time: now, Panic: ev.Panic,
		Lifecycle: stageNames[stage], Draining: stage >= stageDraining,
		Routing: RoutingStatus{Instances: ev.Instances, Members: ev.Members,
			Routable: ev.Routable, Ejected: ev.Ejected, Candidates: ev.Candidates},
		Dependencies: b.shedder.Status(now),
		Instances:    make([]InstanceView, len(insts)),
	}
	known := make(map[string]bool, len(insts))
	for i, in := range insts {
		v := InstanceView{InstanceStatus: in, Health: health[in.ID]}
		if d, ok := dec.Drains[in.ID]; ok && in.State == InstanceDrained {
			v.DrainOrigin, v.DrainedAt, v.DrainPending = d.Origin, d.At, d.Pending
		}
		st.Instances[i] = v
		known[in.ID] = true
	}
	for id := range dec.Drains {
		if !known[id] {
			st.DrainsWaiting = append(st.DrainsWaiting, id)
		}
	}
	slices.Sort(st.DrainsWaiting)
	for i := range st.Dependencies {
		withOrigin(&st.Dependencies[i], dec)
	}
	if r, ok := b.disc.(SourceReporter); ok {
		ss := r.SourceStatus()
		st.Discovery = &ss
	}
	if b.shared != nil {
		ss := b.shared.Status()
		st.Shared = &ss
	}
	ls := b.limiter.Load().Stats()
	st.Capacity = CapacityStatus{Bounded: limit < maxEdgeLimit, InFlight: ls.InFlight, Queue: ls.Queue, Share: share.Share, Peers: share.Peers}
	if st.Capacity.Bounded {
		st.Capacity.Limit = limit
	}
	m := b.m
	st.Counters.Requests = make(map[string]uint64, numOutcomes)
	for i := range m.requests {
		st.Counters.Requests[outcomeNames[i]] = m.requests[i].Load()
	}
	st.Counters.Retries = make(map[string]uint64, numRetryResults)
	for i := range m.retries {
		st.Counters.Retries[retryResultNames[i]] = m.retries[i].Load()
	}
	st.Counters.Ejections = m.ejections.Load()
	st.Counters.Reloads = map[string]uint64{}
	for i := range m.reloads {
		st.Counters.Reloads[reloadResultNames[i]] = m.reloads[i].Load()
	}
	st.Counters.ReportsUnusable = make(map[string]uint64, len(m.unusable))
	for i := range m.unusable {
		st.Counters.ReportsUnusable[unusableNames[i]] = m.unusable[i].Load()
	}
	st.Counters.BudgetWindow.Requests, st.Counters.BudgetWindow.Retries = b.budget.Load().Counts(now)
	return st
}

type adminFunc = httpapi.HandlerFunc

// AdminHandler returns the admin API:
//
//	GET  /livez                       200 "ok" while the process runs (no token)
//	GET  /readyz                      200 "ok" while serving; 503 "starting" or "draining" (no token)
//	GET  /status                      the balancer's state (Status, JSON)
//	GET  /metrics                     Prometheus metrics of Options.Registry
//	POST /instances/{id}/drain        stop sending new requests to an instance
//	POST /instances/{id}/undrain      send again (with a slow start)
//	PUT  /shedding/{dependency}       {"mode":"auto|on|off"}: manual shedding override
//
// Every change needs "Authorization: Bearer TOKEN"; reads need it too when
// readsNeedToken (Run sets it for a non-loopback admin listener), except
// /livez and /readyz, which say nothing but the balancer's own state and
// are what a load balancer or orchestrator in front of this one polls.
// {id} is the instance's service address.
func (b *Balancer) AdminHandler(readsNeedToken bool) http.Handler {
	mux := http.NewServeMux()
	read := func(h adminFunc) http.Handler { return b.adminWrap(h, readsNeedToken) }
	change := func(h adminFunc) http.Handler { return b.adminWrap(h, true) }
	probes := b.health.Handler() // GET and HEAD; 405 otherwise
	mux.Handle("/livez", probes)
	mux.Handle("/readyz", probes)
	mux.Handle("GET /status", read(b.handleStatus))
	mux.Handle("GET /metrics", read(func(w http.ResponseWriter, r *http.Request) error {
		promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(b.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
		return nil
	}))
	mux.Handle("POST /instances/{id}/drain", change(b.handleDrain(true)))
	mux.Handle("POST /instances/{id}/undrain", change(b.handleDrain(false)))
	mux.Handle("PUT /shedding/{dependency}", change(b.handleShedding))
	mux.Handle("/", read(func(http.ResponseWriter, *http.Request) error {
		return &httpapi.Error{Status: http.StatusNotFound, Code: "not_found"}
	}))
	return mux
}

// adminWrap checks the token when needed and renders a handler's error.
func (b *Balancer) adminWrap(h adminFunc, needToken bool) http.Handler {
	a := httpapi.Adapter{Log: b.log, Message: "admin request failed"}
	return a.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		if needToken && !b.token.Authorized(r) {
			return httpapi.Unauthorized(w, "spillway-lb")
		}
		return h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (b *Balancer) handleStatus(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, b.Status())
	return nil
}

// SetDrained drains an instance (no new requests; those in flight finish)
// or undrains it (it gets requests again, with a slow start), here at
// once and, with Options.Shared, on every balancer that shares
// decisions. id is the instance's service address; an unknown id returns
// ErrUnknownInstance, except to undrain an instance that a shared drain
// waits for.
func (b *Balancer) SetDrained(id string, drain bool) error {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	_, known := b.pool.Drained(id)
	_, decided := b.decisions.Drains[id]
	if !known && (drain || !decided) {
		return fmt.Errorf("instance %q: %w", id, ErrUnknownInstance)
	}
	if b.shared != nil {
		if err := b.shared.SetDrained(id, drain); err != nil {
			return fmt.Errorf("share the drain of %s: %w", id, err)
		}
		b.decisions, _ = b.shared.Current()
	} else {
		b.setLocalDrainLocked(id, drain, now)
	}
	b.applyDecisionsLocked(now)
	return nil
}

func (b *Balancer) handleDrain(drain bool) adminFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		err := b.SetDrained(id, drain)
		if errors.Is(err, ErrUnknownInstance) {
			return &httpapi.Error{Status: http.StatusNotFound, Code: "unknown_instance", Err: err}
		}
		if errors.Is(err, ErrTooManyDecisions) {
			return &httpapi.Error{Status: http.StatusConflict, Code: "too_many_decisions", Err: err}
		}
		if err != nil {
			return err
		}
		action := "undrained"
		if drain {
			action = "drained"
		}
		b.log.Info("admin: instance "+action, "instance", id, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "drained": drain})
		return nil
	}
}

func (b *Balancer) handleShedding(w http.ResponseWriter, r *http.Request) error {
	dep := r.PathValue("dependency")
	if !ValidDependencyName(dep) {
		return &httpapi.Error{Status: http.StatusBadRequest, Code: "bad_dependency"}
	}
	var body struct {
		Mode string `json:"mode"`
	}
	if err := httpapi.DecodeJSON(w, r, 1<<10, &body); err != nil {
		return err // strict: unknown fields and anything after the object are 400
	}
	o, err := ParseOverride(body.Mode)
	if err != nil {
		return &httpapi.Error{Status: http.StatusBadRequest, Code: "bad_mode", Err: err}
	}
	d, err := b.SetShedding(dep, o)
	if errors.Is(err, ErrTooManyDecisions) {
		return &httpapi.Error{Status: http.StatusConflict, Code: "too_many_decisions", Err: err}
	}
	if err != nil {
		return &httpapi.Error{Status: http.StatusConflict, Code: "too_many_dependencies", Err: err}
	}
	b.log.Warn("admin: shedding override set", "dependency", dep, "mode", string(o), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, d)
	return nil
}

// SetShedding sets the operator's shedding override for a dependency:
// OverrideOn sheds every request that needs it, OverrideOff admits them
// all, OverrideAuto follows the instances' reports. It applies here at
// once and, with Options.Shared, on every balancer that shares
// decisions. It returns the dependency's state after the change.
func (b *Balancer) SetShedding(dep string, o Override) (DependencyStatus, error) {
	now := time.Now()
	b.mu.Lock()
	if err := b.shedder.SetOverride(dep, o, now); err != nil {
		b.mu.Unlock()
		return DependencyStatus{}, err
	}
	if b.shared != nil {
		if err := b.shared.SetOverride(dep, o); err != nil {
			b.applyDecisionsLocked(now) // back to the decisions in force
			b.mu.Unlock()
			return DependencyStatus{}, fmt.Errorf("share the override of %s: %w", dep, err)
		}
		b.decisions, _ = b.shared.Current()
	} else {
		b.setLocalOverrideLocked(dep, o, now)
	}
	b.applyDecisionsLocked(now)
	dec := b.decisions
	b.mu.Unlock()
	for _, d := range b.shedder.Status(now) {
		if d.Name == dep {
			withOrigin(&d, dec)
			return d, nil
		}
	}
	return DependencyStatus{Name: dep, Override: o}, nil
}

// withOrigin adds to d where and when its override was decided.
func withOrigin(d *DependencyStatus, dec SharedDecisions) {
	if o, ok := dec.Overrides[d.Name]; ok && o.Mode == d.Override {
		d.OverrideOrigin, d.OverrideAt, d.OverridePending = o.Origin, o.At, o.Pending
	}
}
