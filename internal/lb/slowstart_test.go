package lb

import (
	"testing"
	"time"
)

func TestSlowStartWeight(t *testing.T) {
	linear := DefaultSlowStartConfig() // 10s, aggression 1, min 0.1
	aggressive := linear
	aggressive.Aggression = 2
	gentle := linear
	gentle.Aggression = 0.5
	off := linear
	off.Window = 0
	tests := []struct {
		name    string
		cfg     SlowStartConfig
		elapsed time.Duration
		want    float64
	}{
		{"start is the min weight", linear, 0, 0.1},
		{"before 1s the min weight holds", linear, 500 * time.Millisecond, 0.1},
		{"linear at 1s", linear, time.Second, 0.1},
		{"linear at 2.5s", linear, 2500 * time.Millisecond, 0.25},
		{"linear at half", linear, 5 * time.Second, 0.5},
		{"linear just before the end", linear, 9 * time.Second, 0.9},
		{"full at the end", linear, 10 * time.Second, 1},
		{"full after the end", linear, time.Hour, 1},
		{"clock behind since", linear, -time.Second, 0.1},
		{"aggression 2 is faster early", aggressive, 2500 * time.Millisecond, 0.5},
		{"aggression 0.5 is slower early", gentle, 5 * time.Second, 0.25},
		{"aggression 0.5 min weight floor", gentle, time.Second, 0.1},
		{"disabled is full weight", off, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.cfg.Start(t0)
			approx(t, "Weight", s.Weight(t0.Add(tt.elapsed)), tt.want, 1e-9)
		})
	}
}

func TestSlowStartActive(t *testing.T) {
	s := DefaultSlowStartConfig().Start(t0)
	if !s.Active(at(9*time.Second)) || s.Active(at(10*time.Second)) {
		t.Fatal("Active must hold exactly over the window")
	}
	if !s.End().Equal(at(10*time.Second)) || !s.Since().Equal(t0) {
		t.Fatalf("Since %v End %v", s.Since(), s.End())
	}
	var zero SlowStart
	if zero.Weight(t0) != 1 || zero.Active(t0) {
		t.Fatal("the zero SlowStart must be full weight, inactive")
	}
}

func TestSlowStartConfigValidate(t *testing.T) {
	if err := DefaultSlowStartConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []SlowStartConfig{
		{Window: -1, Aggression: 1, MinWeight: 0.1},
		{Window: time.Second, Aggression: 0, MinWeight: 0.1},
		{Window: time.Second, Aggression: 1, MinWeight: 0},
		{Window: time.Second, Aggression: 1, MinWeight: 1.5},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
}
