package guard

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// metrics are a Guard's collectors. Each carries the constant label
// dependency=Options.Name, so Guards of different names share one
// Registerer. They exist, unregistered, when Options.Registerer is nil.
type metrics struct {
	calls        *prometheus.CounterVec // result
	probes       *prometheus.CounterVec // result
	stateChanges *prometheus.CounterVec // to
	probeCloses  prometheus.Counter
}

func newMetrics(g *Guard, reg prometheus.Registerer) (*metrics, error) {
	labels := prometheus.Labels{"dependency": g.name}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "spillway_guard_calls_total",
			Help:        "Calls made through the guard, by result: success, failure, timeout, rejected_open, rejected_bulkhead, canceled.",
			ConstLabels: labels,
		}, []string{"result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "spillway_guard_probes_total",
			Help:        "Recovery probes sent by the guard, by result: success, failure, timeout, rejected_open, canceled.",
			ConstLabels: labels,
		}, []string{"result"}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "spillway_guard_state_changes_total",
			Help:        "Circuit breaker state changes, by the state entered: closed, half-open, open.",
			ConstLabels: labels,
		}, []string{"to"}),
		probeCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "spillway_guard_probe_closes_total",
			Help:        "Circuit breaker closes made by the recovery probes (each also counted in spillway_guard_state_changes_total{to=\"closed\"}).",
			ConstLabels: labels,
		}),
	}
	for _, r := range allResults {
		m.calls.WithLabelValues(r)
		if r != resultRejectedBulkhead {
			m.probes.WithLabelValues(r)
		}
	}
	for _, s := range breakerStates {
		m.stateChanges.WithLabelValues(s.String())
	}
	if reg == nil {
		return m, nil
	}

	state := &breakerStateCollector{g: g, desc: prometheus.NewDesc("spillway_guard_breaker_state",
		"Circuit breaker state: 1 for the state it is in (closed, half-open, open), 0 for the others.",
		[]string{"state"}, labels)}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "spillway_guard_in_flight",
		Help:        "Calls in flight through the guard (probes excluded).",
		ConstLabels: labels,
	}, func() float64 { return float64(len(g.slots)) })

	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.calls, m.probes, m.stateChanges, m.probeCloses, state, inFlight} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register metrics: dependency %q already registered: %w", g.name, err)
			}
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// breakerStates are the values of spillway_guard_breaker_state's state
// label.
var breakerStates = [...]gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen}

// breakerStateCollector exports spillway_guard_breaker_state{state}: one
// series per state, 1 for the breaker's, read at the scrape.
type breakerStateCollector struct {
	g    *Guard
	desc *prometheus.Desc
}

func (c *breakerStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *breakerStateCollector) Collect(ch chan<- prometheus.Metric) {
	state, _ := c.g.breakerState()
	for _, s := range breakerStates {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.String())
	}
}
