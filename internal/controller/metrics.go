package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's. Their labels are fixed sets.
type metrics struct {
	changes  *prometheus.CounterVec // kind: state, weight, maxconn, map, server
	resyncs  *prometheus.CounterVec // reason: start, haproxy_restart, error
	failures prometheus.Counter
	applied  prometheus.Counter
	up       prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_controller_changes_total",
			Help: "Changes the controller made to HAProxy, by kind: state, weight, maxconn (servers), map (share map values), server (a server added or deleted, with a dynamic configuration).",
		}, []string{"kind"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_controller_resyncs_total",
			Help: "Times the controller read HAProxy's state back, by reason: start, haproxy_restart, error (a failed command or an unreachable socket).",
		}, []string{"reason"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_controller_command_failures_total",
			Help: "Runtime API commands that failed while applying a plan.",
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_controller_plans_applied_total",
			Help: "Plans HAProxy was converged to (each sends only what differs).",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_controller_haproxy_up",
			Help: "1 when the last exchange with HAProxy's Runtime API succeeded and it has what the controller needs, else 0.",
		}),
	}
	for _, k := range []string{"state", "weight", "maxconn", "map", "server"} {
		m.changes.WithLabelValues(k)
	}
	for _, r := range []string{"start", "haproxy_restart", "error"} {
		m.resyncs.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.changes, m.resyncs, m.failures, m.applied, m.up} {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}
