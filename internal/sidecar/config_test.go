package sidecar

import (
	"strings"
	"testing"
	"time"
)

// TestConfigValidate: each invalid field is named by its yaml path,
// quoted and given its rule; the defaults are valid.
func TestConfigValidate(t *testing.T) {
	def := DefaultConfig()
	def.Resolve()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"listen", func(c *Config) { c.Listen = "nowhere" }, []string{`listen: "nowhere": not a host:port`}},
		{"same ports", func(c *Config) { c.HealthListen = c.Listen }, []string{`health_listen: "127.0.0.1:8100": must differ from listen`}},
		{"name", func(c *Config) { c.Name = "back end" }, []string{`name: "back end": must be 1 to 64 letters`}},
		{"empty name", func(c *Config) { c.Name = "" }, []string{`name: "": must be`}},
		{"url", func(c *Config) { c.URL = "ftp://x" }, []string{`url: "ftp://x": not an absolute http(s) URL`}},
		{"guard", func(c *Config) { c.Timeout = -time.Second; c.FailureRate = 2 }, []string{`timeout: "-1s": must be a positive duration`, `failure_rate: "2": must be in (0, 1]`}},
		{"service_ready", func(c *Config) {
			c.ServiceReady = ServiceReadyConfig{URL: "localhost:8001/ready", Interval: -time.Second, Timeout: time.Second}
		}, []string{`service_ready.url: "localhost:8001/ready"`, "service_ready.interval: -1s: must be positive"}},
		{"drain", func(c *Config) { c.DrainDelay = -time.Second; c.ShutdownTimeout = -time.Second }, []string{
			"drain_delay: -1s: must not be negative", "shutdown_timeout: -1s: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			c.Resolve()
			err := c.Validate()
			if err == nil {
				t.Fatal("valid; want errors")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, nerr := New(&c, Options{}); nerr == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestResolve: probe_url derives from url, service_ready.timeout from its
// interval; set values stay.
func TestResolve(t *testing.T) {
	c := DefaultConfig()
	c.URL = "http://10.0.0.1:9000/api/"
	c.ServiceReady.Interval = 200 * time.Millisecond
	c.Resolve()
	if c.ProbeURL != "http://10.0.0.1:9000/api/healthz" || c.ServiceReady.Timeout != 200*time.Millisecond || c.ProbeTimeout != time.Second {
		t.Errorf("resolved: probe_url %q, service_ready.timeout %v, probe_timeout %v", c.ProbeURL, c.ServiceReady.Timeout, c.ProbeTimeout)
	}
	c.ProbeURL = "http://10.0.0.1:9000/ping"
	c.Resolve()
	if c.ProbeURL != "http://10.0.0.1:9000/ping" {
		t.Errorf("probe_url set, then %q", c.ProbeURL)
	}
}
