package guard_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/guard"
)

func TestSetDefaults(t *testing.T) {
	defaults := guard.Config{
		Timeout:             time.Second,
		MaxConcurrent:       64,
		ConsecutiveFailures: 5,
		FailureRate:         0.5,
		MinRequests:         20,
		Window:              10 * time.Second,
		OpenInterval:        5 * time.Second,
		HalfOpenRequests:    1,
		ProbeInterval:       250 * time.Millisecond,
		ProbeSuccesses:      2,
		ProbeTimeout:        time.Second,
	}
	shortTimeout := defaults
	shortTimeout.Timeout, shortTimeout.ProbeTimeout = 300*time.Millisecond, 300*time.Millisecond
	set := guard.Config{ // every field set
		Timeout:             3 * time.Second,
		MaxConcurrent:       8,
		ConsecutiveFailures: 2,
		FailureRate:         0.25,
		MinRequests:         4,
		Window:              time.Minute,
		OpenInterval:        time.Second,
		HalfOpenRequests:    3,
		ProbeURL:            "http://backend:8080/healthz",
		ProbeInterval:       2 * time.Second,
		ProbeSuccesses:      3,
		ProbeTimeout:        1500 * time.Millisecond,
	}
	tests := []struct {
		name string
		in   guard.Config
		want guard.Config
	}{
		{"zero", guard.Config{}, defaults},
		{"probe timeout follows a short timeout", guard.Config{Timeout: 300 * time.Millisecond}, shortTimeout},
		{"set fields are kept", set, set},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in
			got.SetDefaults()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after SetDefaults: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*guard.Config)
		want   string // "" for valid
	}{
		{"defaults", func(*guard.Config) {}, ""},
		{"https probe", func(c *guard.Config) { c.ProbeURL = "https://backend.example/healthz" }, ""},
		{"failure rate 1", func(c *guard.Config) { c.FailureRate = 1 }, ""},
		{"negative timeout", func(c *guard.Config) { c.Timeout = -time.Second }, `timeout: "-1s": must be a positive duration`},
		{"negative window", func(c *guard.Config) { c.Window = -1 }, `window: "-1ns": must be a positive duration`},
		{"negative open interval", func(c *guard.Config) { c.OpenInterval = -time.Minute }, `open_interval: "-1m0s": must be a positive duration`},
		{"negative probe interval", func(c *guard.Config) { c.ProbeInterval = -time.Second }, `probe_interval: "-1s": must be a positive duration`},
		{"negative probe timeout", func(c *guard.Config) { c.ProbeTimeout = -time.Second }, `probe_timeout: "-1s": must be a positive duration`},
		{"negative max concurrent", func(c *guard.Config) { c.MaxConcurrent = -1 }, `max_concurrent: "-1": must be between 1 and 4294967295`},
		{"negative consecutive failures", func(c *guard.Config) { c.ConsecutiveFailures = -5 }, `consecutive_failures: "-5": must be between 1 and 4294967295`},
		{"negative min requests", func(c *guard.Config) { c.MinRequests = -1 }, `min_requests: "-1": must be between 1 and 4294967295`},
		{"negative half-open requests", func(c *guard.Config) { c.HalfOpenRequests = -1 }, `half_open_requests: "-1": must be between 1 and 4294967295`},
		{"failure rate above 1", func(c *guard.Config) { c.FailureRate = 1.5 }, `failure_rate: "1.5": must be in (0, 1]`},
		{"negative failure rate", func(c *guard.Config) { c.FailureRate = -0.1 }, `failure_rate: "-0.1": must be in (0, 1]`},
		{"probe url not a url", func(c *guard.Config) { c.ProbeURL = "x" }, `probe_url: "x": not an absolute http(s) URL`},
		{"probe url no scheme", func(c *guard.Config) { c.ProbeURL = "backend:8080/healthz" }, `probe_url: "backend:8080/healthz": not an absolute http(s) URL`},
		{"probe url other scheme", func(c *guard.Config) { c.ProbeURL = "ftp://backend/healthz" }, `probe_url: "ftp://backend/healthz": not an absolute http(s) URL`},
		{"probe url no host", func(c *guard.Config) { c.ProbeURL = "http:///healthz" }, `probe_url: "http:///healthz": not an absolute http(s) URL`},
		{"probe url unparsable", func(c *guard.Config) { c.ProbeURL = "http://[::1" }, `probe_url: "http://[::1": not an absolute http(s) URL`},
		{"probe url password redacted", func(c *guard.Config) { c.ProbeURL = "gopher://user:s3cret@backend/" }, `probe_url: "gopher://user:xxxxx@backend/": not an absolute http(s) URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c guard.Config
			c.SetDefaults()
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}
