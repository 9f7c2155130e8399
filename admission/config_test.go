package admission

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSetDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero",
			in:   Config{},
			want: Config{
				Algorithm: "static", Limit: 64, MinLimit: 4, MaxLimit: 1024,
				LatencyTarget: 200 * time.Millisecond, Backoff: 0.9,
				QueueSize: 0, QueueTimeout: 100 * time.Millisecond, RetryAfter: time.Second,
			},
		},
		{
			name: "set fields kept",
			in: Config{
				Algorithm: "aimd", Limit: 10, MinLimit: 2, MaxLimit: 20,
				LatencyTarget: time.Second, Backoff: 0.5,
				QueueSize: 7, QueueTimeout: time.Second, RetryAfter: 3 * time.Second,
			},
			want: Config{
				Algorithm: "aimd", Limit: 10, MinLimit: 2, MaxLimit: 20,
				LatencyTarget: time.Second, Backoff: 0.5,
				QueueSize: 7, QueueTimeout: time.Second, RetryAfter: 3 * time.Second,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in
			got.SetDefaults()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SetDefaults() mismatch (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() after SetDefaults = %v, want nil", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{"defaults", func(*Config) {}, nil},
		{"aimd defaults", func(c *Config) { c.Algorithm = "aimd" }, nil},
		{"queue", func(c *Config) { c.QueueSize = 32 }, nil},
		{"unknown algorithm", func(c *Config) { c.Algorithm = "vegas" },
			[]string{`algorithm: "vegas": must be "static" or "aimd"`}},
		{"limit zero", func(c *Config) { c.Limit = 0 }, []string{"limit: 0: must be at least 1"}},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, []string{"queue_size: -1: must not be negative"}},
		{"queue without timeout", func(c *Config) { c.QueueSize = 1; c.QueueTimeout = -time.Second },
			[]string{"queue_timeout: -1s: must be positive when queue_size > 0"}},
		{"timeout unused without queue", func(c *Config) { c.QueueTimeout = -time.Second }, nil},
		{"retry after", func(c *Config) { c.RetryAfter = -1 }, []string{"retry_after: -1ns: must be positive"}},
		{"aimd fields ignored in static", func(c *Config) { c.Backoff = 2; c.MinLimit = -1 }, nil},
		{"aimd min limit", func(c *Config) { c.Algorithm = "aimd"; c.MinLimit = 0 },
			[]string{"min_limit: 0: must be at least 1"}},
		{"aimd max below min", func(c *Config) { c.Algorithm = "aimd"; c.MinLimit = 8; c.MaxLimit = 4; c.Limit = 6 },
			[]string{"max_limit: 4: must be at least min_limit (8)"}},
		{"aimd limit out of range", func(c *Config) { c.Algorithm = "aimd"; c.MaxLimit = 32 },
			[]string{"limit: 64: must be within min_limit..max_limit (4..32)"}},
		{"aimd latency target", func(c *Config) { c.Algorithm = "aimd"; c.LatencyTarget = -time.Millisecond },
			[]string{"latency_target: -1ms: must be positive"}},
		{"aimd backoff one", func(c *Config) { c.Algorithm = "aimd"; c.Backoff = 1 },
			[]string{"backoff: 1: must be in (0, 1)"}},
		{"aimd backoff negative", func(c *Config) { c.Algorithm = "aimd"; c.Backoff = -0.5 },
			[]string{"backoff: -0.5: must be in (0, 1)"}},
		{"all errors reported", func(c *Config) { c.Limit = -3; c.RetryAfter = -time.Second },
			[]string{"limit: -3", "retry_after: -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			c.SetDefaults()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			// New applies the defaults first, then refuses what is
			// still invalid.
			d := c
			d.SetDefaults()
			if _, err := New(c, Options{}); (err == nil) != (d.Validate() == nil) {
				t.Errorf("New(...) error = %v, want one exactly when the defaulted config is invalid", err)
			}
		})
	}
}
