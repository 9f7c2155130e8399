package lb

import (
	"strings"
	"testing"
	"time"
)

func TestHealthState(t *testing.T) {
	const (
		P = CheckPass
		F = CheckFail
		T = CheckTimeout
		C = CheckConnectError
	)
	tests := []struct {
		name    string
		results []CheckResult
		healthy []bool // after each result
	}{
		{"new instance is routable on its first pass", []CheckResult{P}, []bool{true}},
		{"new instance: fails then one pass", []CheckResult{F, F, T, P}, []bool{false, false, false, true}},
		{"unhealthy after 3 consecutive failures", []CheckResult{P, F, F, F}, []bool{true, true, true, false}},
		{"timeout and connect error count as failures", []CheckResult{P, T, C, T}, []bool{true, true, true, false}},
		{"a pass resets the failure run", []CheckResult{P, F, F, P, F, F}, []bool{true, true, true, true, true, true}},
		{"recovery needs 2 passes", []CheckResult{P, F, F, F, P, P}, []bool{true, true, true, false, false, true}},
		{"a failure resets the pass run", []CheckResult{P, F, F, F, P, F, P, P}, []bool{true, true, true, false, false, false, false, true}},
		{"CheckNone is ignored", []CheckResult{CheckNone, P}, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHealthState(DefaultHealthConfig())
			if h.Healthy() || h.Checked() || h.AcceptsConnections() {
				t.Fatal("new state must be unhealthy, unchecked, not accepting")
			}
			for i, r := range tt.results {
				now := at(time.Duration(i) * 2 * time.Second)
				was := h.Healthy()
				changed := h.Record(now, r)
				if got := h.Healthy(); got != tt.healthy[i] {
					t.Fatalf("after result %d (%v): healthy = %v, want %v", i, r, got, tt.healthy[i])
				}
				if changed != (was != h.Healthy()) {
					t.Fatalf("after result %d: changed = %v, healthy %v→%v", i, changed, was, h.Healthy())
				}
				if changed && !h.Since().Equal(now) {
					t.Fatalf("Since = %v, want %v", h.Since(), now)
				}
			}
		})
	}
}

func TestHealthStateThresholds(t *testing.T) {
	c := DefaultHealthConfig()
	c.HealthyThreshold, c.UnhealthyThreshold = 1, 1
	h := NewHealthState(c)
	h.Record(at(0), CheckPass)
	if h.Record(at(1), CheckFail); h.Healthy() {
		t.Fatal("fall=1: one failure must take it out")
	}
	if h.Record(at(2), CheckPass); !h.Healthy() {
		t.Fatal("rise=1: one pass must bring it back")
	}
	// Out-of-range thresholds are clamped to 1, not a panic or a lock-out.
	c.HealthyThreshold, c.UnhealthyThreshold = 0, -3
	h = NewHealthState(c)
	h.Record(at(0), CheckPass)
	h.Record(at(1), CheckFail)
	if h.Healthy() {
		t.Fatal("clamped fall=1: one failure must take it out")
	}
}

func TestAcceptsConnections(t *testing.T) {
	tests := []struct {
		last CheckResult
		want bool
	}{
		{CheckPass, true},
		{CheckFail, true},
		{CheckTimeout, true}, // the incident: health server slow under load, process alive
		{CheckConnectError, false},
	}
	for _, tt := range tests {
		t.Run(tt.last.String(), func(t *testing.T) {
			h := NewHealthState(DefaultHealthConfig())
			h.Record(at(0), tt.last)
			if got := h.AcceptsConnections(); got != tt.want {
				t.Errorf("AcceptsConnections = %v, want %v", got, tt.want)
			}
			if r, when := h.Last(); r != tt.last || !when.Equal(at(0)) {
				t.Errorf("Last = %v %v", r, when)
			}
		})
	}
}

func TestJitteredInterval(t *testing.T) {
	tests := []struct {
		interval time.Duration
		jitter   float64
		u        float64
		want     time.Duration
	}{
		{2 * time.Second, 0.1, 0, 1800 * time.Millisecond},
		{2 * time.Second, 0.1, 0.5, 2 * time.Second},
		{2 * time.Second, 0.1, 0.999999, 2200*time.Millisecond - 400}, // just under the top
		{2 * time.Second, 0, 0.9, 2 * time.Second},
		{2 * time.Second, 5, 0, 1},                          // jitter clamped to 1: never below 1ns
		{2 * time.Second, 0.1, -3, 1800 * time.Millisecond}, // u clamped
	}
	for _, tt := range tests {
		if got := JitteredInterval(tt.interval, tt.jitter, tt.u); got != tt.want {
			t.Errorf("JitteredInterval(%v, %v, %v) = %v, want %v", tt.interval, tt.jitter, tt.u, got, tt.want)
		}
	}
	c := DefaultHealthConfig()
	r := seeded(1)
	for range 1000 {
		u := float64(r()>>11) / (1 << 53)
		d := c.NextInterval(u)
		if d < 1800*time.Millisecond || d > 2200*time.Millisecond {
			t.Fatalf("NextInterval(%v) = %v, outside 2s ± 10%%", u, d)
		}
	}
}

func TestHealthConfigValidate(t *testing.T) {
	if err := DefaultHealthConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := HealthConfig{Interval: time.Second, Timeout: 2 * time.Second, Jitter: 0.7}
	err := c.Validate()
	for _, want := range []string{
		"timeout: 2s: must not exceed interval",
		"jitter: 0.7: must be in [0, 0.5]",
		"healthy_threshold: 0: must be at least 1",
		"unhealthy_threshold: 0: must be at least 1",
		"report_max_age: 0s: must be positive",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}
