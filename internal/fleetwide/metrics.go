package fleetwide

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The results of a budget request, the values of the requests metric's
// "result" label.
const (
	resultGranted           = "granted"            // the fleet-wide budget allowed it
	resultExhausted         = "exhausted"          // the fleet-wide budget is spent
	resultFallbackGranted   = "fallback_granted"   // etcd out of reach: this host's share allowed it
	resultFallbackExhausted = "fallback_exhausted" // etcd out of reach: this host's share is spent
	resultFrozen            = "frozen"             // the fleet is frozen
)

// metrics are the fleet-wide guardrails' Prometheus metrics. They exist,
// unregistered, without a Registerer.
type metrics struct {
	requests *prometheus.CounterVec
}

func newMetrics(g *Guardrails, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_fleetwide_budget_requests_total",
			Help: "Replacement requests by result: granted, exhausted (fleet-wide budget), fallback_granted, fallback_exhausted (etcd out of reach: this host's share), frozen.",
		}, []string{"result"}),
	}
	for _, r := range []string{resultGranted, resultExhausted, resultFallbackGranted, resultFallbackExhausted, resultFrozen} {
		m.requests.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.requests}
	for _, v := range []struct {
		name, help string
		value      func(Status) float64
	}{
		{"spillway_fleetwide_connected", "1 while etcd answers; 0 while the fleet-wide view is the last one known and the budget is this host's share.",
			func(s Status) float64 { return b2f(s.Connected) }},
		{"spillway_fleetwide_hosts", "Hosts in the fleet-wide view, this one included.",
			func(s Status) float64 { return float64(len(s.Hosts)) }},
		{"spillway_fleetwide_size", "Instances of the whole fleet: the sum of the hosts' sizes.",
			func(s Status) float64 { return float64(s.Size) }},
		{"spillway_fleetwide_failing", "Failures that count towards the freeze, on every host.",
			func(s Status) float64 { return float64(s.Failing) }},
		{"spillway_fleetwide_budget_remaining", "Replacements the fleet-wide budget allows now, as this host sees it; -1 without limit.",
			func(s Status) float64 { return float64(s.BudgetRemaining) }},
	} {
		// Each gauge reads the status when scraped.
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: v.name, Help: v.help}, func() float64 { return v.value(g.Status()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
