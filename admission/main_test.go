package admission

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustNew(t *testing.T, cfg Config, opts Options) *Limiter {
	t.Helper()
	l, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// mustAcquire takes a ticket from l, which must have room.
func mustAcquire(t *testing.T, l *Limiter) Ticket {
	t.Helper()
	tk, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func wantStats(t *testing.T, l *Limiter, want Stats) {
	t.Helper()
	if got := l.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// metricValue returns the value of the gauge or counter name in reg whose
// labels include all of labels, or fails.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}
