package lb

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/reload"
)

// outcome is how a request ended, the value of the outcome label of
// spillway_lb_requests_total and spillway_lb_request_duration_seconds.
// The set is fixed.
type outcome uint8

const (
	outOK          outcome = iota // the instance answered 1xx-3xx
	outClientError                // 4xx from the instance or spillway, or the client went away
	outUpstream5xx                // 5xx from the instance
	outShed                       // 503 dependency_unavailable at the edge
	outOverloaded                 // 503 overloaded at the edge
	outNoInstance                 // 503 no_healthy_instance
	outBadGateway                 // 502: connect failure or reset
	outTimeout                    // 504: response header or total timeout
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "client_error", "upstream_5xx", "shed", "overloaded", "no_instance", "bad_gateway", "timeout"}

// Retry results, the values of spillway_lb_retries_total's result label.
const (
	retryOK              = iota // the retry got a response
	retryFailed                 // the retry failed too
	retryBudgetExhausted        // not retried: over the retry budget
	retryNoInstance             // not retried: no other candidate
	numRetryResults
)

var retryResultNames = [numRetryResults]string{"ok", "failed", "budget_exhausted", "no_instance"}

const (
	reloadSuccess = iota
	reloadFailure
)

var reloadResultNames = [2]string{"success", "failure"}

// unusableNames are the values of spillway_lb_report_unusable_total's
// reason label: the contract's fixed set.
var unusableNames = health.UnusableReasons

// defaultRoute is the route label of the paths that match no route.
const defaultRoute = "default"

// durationBuckets are the classic buckets of
// spillway_lb_request_duration_seconds (seconds); a scraper that takes
// native histograms gets those too, at 10% resolution.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// metrics are the balancer's counters, kept as plain atomics (the request
// path adds to them without a map lookup) and exported by a collector
// that also reads the current gauges. Every label set is bounded: fixed
// outcomes and results, dependencies (at most the Shedder's cap), the
// configured routes, and the instances in the pool (label upstream; their
// series go with them: Collect reads the pool).
//
// The duration histogram's observers are resolved per route and outcome
// when the settings are built (bindRoutes): the request path observes
// without a lookup.
type metrics struct {
	b         *Balancer
	requests  [numOutcomes]atomic.Uint64
	retries   [numRetryResults]atomic.Uint64
	ejections atomic.Uint64
	reloads   [2]atomic.Uint64
	unusable  [len(health.UnusableReasons)]atomic.Uint64
	// streams open (upgraded connections and event streams), and those
	// closed by their idle timeout.
	streams        atomic.Int64
	streamIdleCuts atomic.Uint64

	panicking atomic.Bool
	routable  atomic.Int64
	members   atomic.Int64
	instances atomic.Int64
	capacity  atomic.Int64  // maxEdgeLimit when unbounded
	share     atomic.Uint64 // math.Float64bits of the capacity share

	dRequests, dRetries, dEjections, dReloads              *prometheus.Desc
	dPanic, dRoutable, dMembers, dInstances, dCapacity     *prometheus.Desc
	dInFlight, dQueue, dShedding, dShare, dStalls          *prometheus.Desc
	dStreams, dStreamIdleCuts, dDiscovery                  *prometheus.Desc
	dSharedPending, dSharedSuperseded                      *prometheus.Desc
	dUnusable                                              *prometheus.Desc
	dInstState, dInstInFlight, dInstEjections, dInstChecks *prometheus.Desc

	duration *prometheus.HistogramVec // route, outcome
	reload   *reload.Gauges
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(b *Balancer) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("spillway_lb_"+name, help, labels, nil)
	}
	return &metrics{
		b:                 b,
		dRequests:         d("requests_total", "Requests answered, by outcome.", "outcome"),
		dRetries:          d("retries_total", "Retries on another instance, by result.", "result"),
		dEjections:        d("ejections_total", "Passive outlier ejections."),
		dReloads:          d("config_reload_total", "Configuration reloads, by result.", "result"),
		dUnusable:         d("report_unusable_total", "Instance /health reports that could not be used, by reason (docs/CONTRACT.md).", "reason"),
		dPanic:            d("panic", "1 while in panic mode (routing across every instance that accepts connections)."),
		dRoutable:         d("routable_instances", "Instances that are healthy, not ejected and not drained."),
		dMembers:          d("member_instances", "Instances that count for the panic threshold (not drained, draining or pending)."),
		dInstances:        d("instances", "Instances known from discovery."),
		dCapacity:         d("capacity", "Edge bound on proxied requests in flight; +Inf when unbounded."),
		dShare:            d("capacity_share_ratio", "This balancer's share of the fleet's reported capacity: its weight over the live balancers' (1 alone); the edge bound that follows the reports is capacity × share."),
		dInFlight:         d("in_flight", "Proxied requests admitted at the edge and not finished."),
		dQueue:            d("queue_length", "Requests waiting at the edge for a slot."),
		dShedding:         d("shedding_ratio", "Share of requests needing the dependency that the edge sheds now: 1 shedding, 0 ok, falling while recovering.", "dependency"),
		dStalls:           d("dependency_stalls_total", "Requests answered 503 overloaded at the edge because the dependency they need had stopped answering those in flight (shedding.stall).", "dependency"),
		dStreams:          d("streams", "Streams open: upgraded connections (WebSocket) and event streams (SSE), bounded by their idle timeout."),
		dStreamIdleCuts:   d("stream_idle_timeouts_total", "Streams closed because nothing passed either way for their idle timeout."),
		dDiscovery:        d("discovery_connected", "1 while the discovery source (etcd) answers, 0 while it is out of reach and the last set is kept; absent for a static list.", "source"),
		dSharedPending:    d("shared_decisions_pending", "Operator decisions (overrides, drains) taken on this balancer while the shared store (etcd) was out of reach, applied here and not published yet; absent when decisions are not shared."),
		dSharedSuperseded: d("shared_decisions_superseded_total", "Operator decisions taken on this balancer and dropped because another balancer had changed the same decision first; absent when decisions are not shared."),
		// The instance's label is "upstream" (its host:port): "instance"
		// is Prometheus' own target label, and a scraped one would be
		// renamed exported_instance.
		dInstState:     d("instance_state", "1 for the state the instance (upstream: its host:port) is in (pending, healthy, unhealthy, ejected, draining, drained), 0 for the others.", "upstream", "state"),
		dInstInFlight:  d("instance_in_flight", "Proxied requests in flight on the instance (upstream: its host:port).", "upstream"),
		dInstEjections: d("instance_ejections_total", "Passive outlier ejections of the instance (upstream: its host:port) since it joined the pool.", "upstream"),
		dInstChecks:    d("instance_checks_total", "Active health checks of the instance's (upstream: its host:port) readiness since it joined the pool, by result.", "upstream", "result"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spillway_lb_request_duration_seconds",
			Help: "Time from a request's arrival to its answer's end (to the response headers for a stream), by route (its configured prefix, or \"default\") and outcome.",
			// Classic buckets for every scraper, a native histogram for
			// those that take one.
			Buckets:                         durationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"route", "outcome"}),
	}
}

// answered counts a request's outcome and observes its duration since
// start on rt's histogram.
func (m *metrics) answered(rt *routeTimeouts, o outcome, start time.Time) {
	m.requests[o].Add(1)
	if rt.obs != nil {
		rt.obs[o].Observe(time.Since(start).Seconds())
	}
}

// bindRoutes resolves set's duration observers, one per route and
// outcome: every series exists from the start, at zero.
func (m *metrics) bindRoutes(set *settings) {
	bind := func(rt *routeTimeouts, route string) {
		rt.obs = new([numOutcomes]prometheus.Observer)
		for o := range rt.obs {
			rt.obs[o] = m.duration.WithLabelValues(route, outcomeNames[o])
		}
	}
	for i := range set.routes {
		bind(&set.routes[i], set.routes[i].prefix)
	}
	bind(&set.def, defaultRoute)
}

// pruneRoutes deletes the duration series of old's routes that set no
// longer has, so the route label set stays the configured one.
func (m *metrics) pruneRoutes(old, set *settings) {
	for _, r := range old.routes {
		if !set.hasRoute(r.prefix) {
			m.duration.DeletePartialMatch(prometheus.Labels{"route": r.prefix})
		}
	}
}

// countUnusable counts an unusable report; reason is one of
// health.UnusableReasons (anything else is counted as unreachable, so the
// label set stays fixed).
func (m *metrics) countUnusable(reason string) {
	for i, r := range unusableNames {
		if r == reason {
			m.unusable[i].Add(1)
			return
		}
	}
	m.unusable[0].Add(1)
}

func (m *metrics) setEval(ev Eval, limit int, share float64) {
	m.share.Store(math.Float64bits(share))
	m.panicking.Store(ev.Panic)
	m.routable.Store(int64(ev.Routable))
	m.members.Store(int64(ev.Members))
	m.instances.Store(int64(ev.Instances))
	m.capacity.Store(int64(limit))
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.dRequests, m.dRetries, m.dEjections, m.dReloads, m.dPanic,
		m.dRoutable, m.dMembers, m.dInstances, m.dCapacity, m.dInFlight, m.dQueue, m.dShedding, m.dShare, m.dStalls,
		m.dStreams, m.dStreamIdleCuts, m.dDiscovery, m.dSharedPending, m.dSharedSuperseded, m.dUnusable,
		m.dInstState, m.dInstInFlight, m.dInstEjections, m.dInstChecks} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for i := range m.requests {
		counter(m.dRequests, m.requests[i].Load(), outcomeNames[i])
	}
	for i := range m.retries {
		counter(m.dRetries, m.retries[i].Load(), retryResultNames[i])
	}
	counter(m.dEjections, m.ejections.Load())
	for i := range m.unusable {
		counter(m.dUnusable, m.unusable[i].Load(), unusableNames[i])
	}
	counter(m.dStreamIdleCuts, m.streamIdleCuts.Load())
	gauge(m.dStreams, float64(m.streams.Load()))
	for i := range m.reloads {
		counter(m.dReloads, m.reloads[i].Load(), reloadResultNames[i])
	}
	p := 0.0
	if m.panicking.Load() {
		p = 1
	}
	gauge(m.dPanic, p)
	gauge(m.dRoutable, float64(m.routable.Load()))
	gauge(m.dMembers, float64(m.members.Load()))
	gauge(m.dInstances, float64(m.instances.Load()))
	c := float64(m.capacity.Load())
	if c >= maxEdgeLimit {
		c = math.Inf(1)
	}
	gauge(m.dCapacity, c)
	gauge(m.dShare, math.Float64frombits(m.share.Load()))
	st := m.b.limiter.Load().Stats()
	gauge(m.dInFlight, float64(st.InFlight))
	gauge(m.dQueue, float64(st.Queue))
	for _, d := range m.b.shedder.Status(time.Now()) {
		gauge(m.dShedding, 1-d.Admitted, d.Name)
		counter(m.dStalls, uint64(d.Stalls), d.Name)
	}
	if r, ok := m.b.disc.(SourceReporter); ok {
		ss := r.SourceStatus()
		c := 0.0
		if ss.Connected {
			c = 1
		}
		gauge(m.dDiscovery, c, ss.Source)
	}
	if m.b.shared != nil {
		ss := m.b.shared.Status()
		gauge(m.dSharedPending, float64(ss.Pending))
		counter(m.dSharedSuperseded, ss.Superseded)
	}
	// Per instance, copied under the lock and sent after it: the pool's
	// current instances only, so a removed one's series are gone.
	now := time.Now()
	m.b.mu.Lock()
	figs := m.b.pool.Figures(now)
	m.b.mu.Unlock()
	for _, f := range figs {
		for _, s := range instanceStates {
			v := 0.0
			if s == f.State {
				v = 1
			}
			gauge(m.dInstState, v, f.ID, string(s))
		}
		gauge(m.dInstInFlight, float64(f.InFlight), f.ID)
		counter(m.dInstEjections, uint64(f.Ejections), f.ID)
		for r := CheckPass; r < numCheckResults; r++ {
			counter(m.dInstChecks, f.Checks[r], f.ID, r.String())
		}
	}
}
