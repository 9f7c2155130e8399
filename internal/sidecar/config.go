package sidecar

import (
	"errors"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/internal/field"
)

// Config is the configuration of one sidecar (the `guard:` section of a
// spillway file), shaped like login.backend: the dependency's name and
// URL with the guard's settings inline, plus the sidecar's listeners,
// the service's readiness and the shutdown. Start from DefaultConfig (a
// file is decoded onto it: absent fields keep their defaults, an explicit
// 0 is 0); New resolves the derived defaults (Resolve) and validates.
type Config struct {
	// Listen is the proxy's address, where the service sends its calls
	// to the dependency. Default "127.0.0.1:8100". Keep it on loopback:
	// the proxy has no authentication.
	Listen string `yaml:"listen"`
	// HealthListen is the health port's address: /livez, /readyz,
	// /health and /metrics on their own server; the load balancer names
	// it as the instance's health address. Default "127.0.0.1:9100".
	HealthListen string `yaml:"health_listen"`

	// Name is the dependency's name in /health and in metrics (the
	// dependency label): the name the load balancer's routes list.
	// Default "backend".
	Name string `yaml:"name"`
	// URL is the upstream's base URL; a request for /PATH goes to URL's
	// path joined with /PATH. Default "http://127.0.0.1:9000".
	URL string `yaml:"url"`
	// Guard wraps every call: deadline (timeout, the whole exchange),
	// breaker, bulkhead (max_concurrent), recovery probe. Its probe_url
	// defaults to URL + "/healthz" (empty derives it so).
	guard.Config `yaml:",inline"`

	// ServiceReady merges the service's own readiness into /readyz and
	// the report's ready.
	ServiceReady ServiceReadyConfig `yaml:"service_ready"`

	// DrainDelay is how long, on shutdown, the report says draining and
	// /readyz answers 503 while the proxy keeps serving, so that the
	// load balancer stops sending to the service first: longer than its
	// check interval (2s by default). Default 3s. 0 disables.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds how long calls in flight may take to finish
	// after the proxy's listener closes. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// ServiceReadyConfig is the service's readiness endpoint, polled by the
// sidecar.
type ServiceReadyConfig struct {
	// URL is GET every Interval; a 2xx answer within Timeout is ready,
	// anything else (another status, an error, no answer) is not. Until
	// the first check has passed, and whenever the last one failed,
	// /readyz answers 503 and the report's ready is false. Default "":
	// the sidecar's readiness is its own (started, not draining).
	URL string `yaml:"url"`
	// Interval is the time from the start of one check to the start of
	// the next. Default 1s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one check. Default the smaller of Interval and 1s
	// (derived).
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the documented defaults; guard.probe_url and
// probe_timeout and service_ready.timeout derive from other fields and
// are filled by Resolve.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8100",
		HealthListen:    "127.0.0.1:9100",
		Name:            "backend",
		URL:             "http://127.0.0.1:9000",
		Config:          guard.DefaultConfig(),
		ServiceReady:    ServiceReadyConfig{Interval: time.Second},
		DrainDelay:      3 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// Resolve fills the fields whose default derives from another, when they
// are empty: probe_url (url + "/healthz"), the guard's derived defaults
// and service_ready.timeout. It is idempotent; New calls it.
func (c *Config) Resolve() {
	if c.ProbeURL == "" {
		c.ProbeURL = strings.TrimSuffix(c.URL, "/") + "/healthz"
	}
	c.Config.SetDefaults()
	if c.ServiceReady.Timeout == 0 {
		c.ServiceReady.Timeout = min(c.ServiceReady.Interval, time.Second)
	}
}

// Validate reports every problem in c, each a *field.Error naming its
// field by its yaml path.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.HostPort("listen", c.Listen))
	add(field.SecondListener("health_listen", c.HealthListen, "listen", c.Listen, ""))
	if !validName(c.Name) {
		add(field.New("name", c.Name, "must be 1 to 64 letters, digits, '_', '-' or '.'"))
	}
	add(field.HTTPURL("url", c.URL))
	add(c.Config.Validate())
	if c.ServiceReady.URL != "" {
		add(field.HTTPURL("service_ready.url", c.ServiceReady.URL))
		add(field.Positive("service_ready.interval", c.ServiceReady.Interval))
		add(field.Positive("service_ready.timeout", c.ServiceReady.Timeout))
	}
	add(field.NonNegative("drain_delay", c.DrainDelay))
	add(field.NonNegative("shutdown_timeout", c.ShutdownTimeout))
	return errors.Join(errs...)
}

// validName reports whether s is a dependency name fit for a metric label
// and a report key.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// retryAfter is the Retry-After of a dependency_unavailable answer, as
// login's: how soon the recovery probes can close the breaker once the
// dependency is back (probe_interval × probe_successes), at least 1s.
func (c *Config) retryAfter() time.Duration {
	return max(time.Second, c.ProbeInterval*time.Duration(c.ProbeSuccesses))
}
