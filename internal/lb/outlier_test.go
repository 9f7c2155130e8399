package lb

import (
	"strings"
	"testing"
	"time"
)

// failN records n failures at now and returns the last event.
func failN(o *OutlierState, now time.Time, n int, mayEject bool) OutlierEvent {
	var ev OutlierEvent
	for range n {
		ev = o.Failure(now, mayEject)
	}
	return ev
}

func TestOutlierEjection(t *testing.T) {
	o := NewOutlierState(DefaultOutlierConfig())
	if ev := failN(o, at(0), 4, true); ev != OutlierCounted {
		t.Fatalf("4 failures: %v, want counted", ev)
	}
	o.Success()
	if ev := failN(o, at(0), 4, true); ev != OutlierCounted {
		t.Fatalf("a success must reset the run: %v", ev)
	}
	if ev := o.Failure(at(time.Second), true); ev != OutlierEjected {
		t.Fatalf("5th consecutive failure: %v, want ejected", ev)
	}
	if !o.Ejected(at(time.Second)) || !o.EjectedUntil().Equal(at(11*time.Second)) {
		t.Fatalf("ejected=%v until %v, want until t0+11s", o.Ejected(at(time.Second)), o.EjectedUntil())
	}
	if ev := o.Failure(at(2*time.Second), true); ev != OutlierIgnored {
		t.Fatalf("failure while ejected: %v, want ignored", ev)
	}
	o.Success() // a success does not end an ejection
	if o.Update(at(11*time.Second-1)) || !o.Ejected(at(11*time.Second-1)) {
		t.Fatal("un-ejected before its time")
	}
	if !o.Update(at(11*time.Second)) || o.Ejected(at(11*time.Second)) {
		t.Fatal("not un-ejected at its time")
	}
	if o.Consecutive() != 0 || o.Ejections() != 1 {
		t.Fatalf("consecutive=%d ejections=%d", o.Consecutive(), o.Ejections())
	}
}

func TestOutlierEjectionTimeGrowsAndDecays(t *testing.T) {
	cfg := DefaultOutlierConfig() // base 10s, max 300s
	tests := []struct {
		name string
		// gaps[i] is the time spent back in service before ejection i+1.
		gaps []time.Duration
		want []time.Duration // length of each ejection
	}{
		{"back-to-back ejections grow linearly", []time.Duration{0, 0, 0, 0}, []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 40 * time.Second}},
		{"one base time in service drops the multiplier by one", []time.Duration{0, 0, 0, 10 * time.Second}, []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"long healthy period starts over", []time.Duration{0, 0, time.Hour}, []time.Duration{10 * time.Second, 20 * time.Second, 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := NewOutlierState(cfg)
			now := t0
			for i, gap := range tt.gaps {
				now = now.Add(gap)
				if ev := failN(o, now, 5, true); ev != OutlierEjected {
					t.Fatalf("ejection %d: %v", i+1, ev)
				}
				if got := o.EjectedUntil().Sub(now); got != tt.want[i] {
					t.Fatalf("ejection %d lasts %v, want %v", i+1, got, tt.want[i])
				}
				now = o.EjectedUntil()
				if !o.Update(now) {
					t.Fatalf("ejection %d did not end", i+1)
				}
			}
		})
	}
}

func TestOutlierEjectionCapped(t *testing.T) {
	o := NewOutlierState(DefaultOutlierConfig())
	now := t0
	var last time.Duration
	for range 40 {
		failN(o, now, 5, true)
		last = o.EjectedUntil().Sub(now)
		if last > 300*time.Second {
			t.Fatalf("ejection of %v exceeds max_ejection_time", last)
		}
		now = o.EjectedUntil()
		o.Update(now)
	}
	if last != 300*time.Second {
		t.Fatalf("after 40 ejections: %v, want the 300s cap", last)
	}
}

func TestOutlierMaxEjectedShare(t *testing.T) {
	c := DefaultOutlierConfig()
	tests := []struct {
		ejected, total int
		want           bool
	}{
		{0, 1, false}, // a lone instance is never ejected
		{0, 2, true},
		{1, 2, false},
		{1, 4, true},
		{2, 4, false},
		{2, 5, false},
		{0, 0, false},
	}
	for _, tt := range tests {
		if got := c.MayEject(tt.ejected, tt.total); got != tt.want {
			t.Errorf("MayEject(%d, %d) = %v, want %v", tt.ejected, tt.total, got, tt.want)
		}
	}
	o := NewOutlierState(c)
	if ev := failN(o, t0, 5, false); ev != OutlierRefused {
		t.Fatalf("refused ejection: %v", ev)
	}
	if o.Ejected(t0) {
		t.Fatal("ejected despite the cap")
	}
	if ev := o.Failure(at(time.Second), true); ev != OutlierEjected {
		t.Fatalf("next failure once there is room: %v, want ejected", ev)
	}
}

func TestOutlierDisabled(t *testing.T) {
	c := DefaultOutlierConfig()
	c.ConsecutiveGatewayFailures = 0
	o := NewOutlierState(c)
	if ev := failN(o, t0, 100, true); ev != OutlierIgnored || o.Ejected(t0) {
		t.Fatalf("disabled: %v ejected=%v", ev, o.Ejected(t0))
	}
}

func TestOutlierConfigValidate(t *testing.T) {
	if err := DefaultOutlierConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := OutlierConfig{ConsecutiveGatewayFailures: -1, BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second, MaxEjectedShare: 2}.Validate()
	for _, want := range []string{"consecutive_gateway_failures: -1", "max_ejection_time: 1s: must be at least base_ejection_time (1m0s)", "max_ejected_share: 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}
