// Package reload exports the outcome of a process's configuration
// reloads as Prometheus exports its own: the gauges
// spillway_config_last_reload_successful (1 if the last reload, or the
// load at start, succeeded, else 0) and
// spillway_config_last_reload_success_timestamp_seconds (when the
// configuration that runs was loaded).
//
// The zero value is not usable; New returns a Gauges that reads as a
// success at the time it was created (the load at start). Its methods are
// safe for concurrent use.
package reload

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gauges records reloads. Register it once per registry.
type Gauges struct {
	ok  atomic.Bool
	at  atomic.Uint64 // math.Float64bits of the Unix time in seconds
	dOK *prometheus.Desc
	dAt *prometheus.Desc
}

var _ prometheus.Collector = (*Gauges)(nil)

// New returns gauges that read as a successful load at now and registers
// them with reg (nil: not registered).
func New(reg prometheus.Registerer, now time.Time) (*Gauges, error) {
	g := &Gauges{
		dOK: prometheus.NewDesc("spillway_config_last_reload_successful",
			"1 if the last configuration reload (SIGHUP), or the load at start, succeeded, else 0.", nil, nil),
		dAt: prometheus.NewDesc("spillway_config_last_reload_success_timestamp_seconds",
			"When the running configuration was loaded: the last successful reload, or the start.", nil, nil),
	}
	g.Record(nil, now)
	if reg != nil {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("register reload gauges: %w", err)
		}
	}
	return g, nil
}

// Record records a reload's outcome at now: err nil is a success.
func (g *Gauges) Record(err error, now time.Time) {
	if err != nil {
		g.ok.Store(false)
		return
	}
	g.at.Store(math.Float64bits(float64(now.UnixNano()) / 1e9))
	g.ok.Store(true)
}

// Successful reports whether the last reload succeeded.
func (g *Gauges) Successful() bool { return g.ok.Load() }

// Describe implements prometheus.Collector.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.dOK; ch <- g.dAt }

// Collect implements prometheus.Collector.
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	ok := 0.0
	if g.ok.Load() {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(g.dOK, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(g.dAt, prometheus.GaugeValue, math.Float64frombits(g.at.Load()))
}
