package guard

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// Config is the configuration of one Guard. DefaultConfig has every
// default; the zero Config means the same, since no field may be 0
// (SetDefaults fills every zero field, and New applies it before
// Validate), except ProbeURL, whose "" disables probing.
type Config struct {
	// Timeout bounds each call: fn runs with a deadline of the smaller of
	// Timeout and the caller's remaining deadline. A call cut short by
	// Timeout counts as a failure; one cut short by the caller's own
	// deadline does not. Duration; default 1s.
	Timeout time.Duration `yaml:"timeout"`

	// MaxConcurrent is the bulkhead: at most this many calls run at once,
	// and any more fail at once with ErrBulkheadFull (there is no queue).
	// Default 64.
	MaxConcurrent int `yaml:"max_concurrent"`

	// ConsecutiveFailures trips the breaker (closed → open) when this many
	// calls in a row have failed within Window. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`

	// FailureRate trips the breaker when failures / (successes + failures)
	// over Window reaches it, once MinRequests calls have completed in
	// Window. A fraction in (0, 1]; default 0.5.
	FailureRate float64 `yaml:"failure_rate"`

	// MinRequests is the number of completed, counted calls in Window
	// below which FailureRate is not applied. Default 20.
	MinRequests int `yaml:"min_requests"`

	// Window is the rolling window over which the closed breaker counts
	// outcomes. It is made of 10 buckets of Window/10 each (1s buckets at
	// the default), so outcomes age out one bucket at a time. Duration;
	// default 10s.
	Window time.Duration `yaml:"window"`

	// OpenInterval is how long the breaker stays open, failing calls at
	// once with ErrOpen, before it turns half-open and lets user calls
	// through as trial calls. Recovery probes do not wait for it (see
	// ProbeURL). Duration; default 5s.
	OpenInterval time.Duration `yaml:"open_interval"`

	// HalfOpenRequests is the number of trial calls the half-open breaker
	// lets through; it closes after that many consecutive successes and
	// reopens on the first failure. Recovery probes are not trial calls
	// and take no slot. Default 1.
	HalfOpenRequests int `yaml:"half_open_requests"`

	// ProbeURL is an absolute http(s) URL that Run GETs (2xx = healthy)
	// so that recovery is noticed without user traffic: while the breaker
	// is open or half-open, Run probes it every ProbeInterval, directly
	// (a probe is not one of the breaker's trial calls), and closes the
	// breaker after ProbeSuccesses successes in a row. The breaker then
	// closes within ProbeInterval × ProbeSuccesses plus a probe's round
	// trip of the dependency's recovery, whatever OpenInterval is (plus
	// up to ProbeTimeout if a probe was hanging at that moment). The
	// URL should fail whenever the dependency cannot serve calls: if it
	// answers 2xx while calls fail, the breaker closes and trips again.
	// Empty (the default) disables probing: recovery then waits for user
	// calls to act as trial calls once the breaker is half-open, and
	// they never come while the load balancer sheds at the edge.
	ProbeURL string `yaml:"probe_url"`

	// ProbeInterval is how often Run probes ProbeURL while the breaker is
	// open or half-open, from the start of one probe to the start of the
	// next (a probe slower than that is followed at once by the next; one
	// probe is in flight at a time). It is independent of OpenInterval.
	// No probe is sent while the breaker is closed, except one when Run
	// starts. Duration; default 250ms.
	ProbeInterval time.Duration `yaml:"probe_interval"`

	// ProbeSuccesses is the number of probes in a row that must succeed
	// for Run to close the breaker; a failed probe, or the breaker
	// opening again, starts the count over. Default 2.
	ProbeSuccesses int `yaml:"probe_successes"`

	// ProbeTimeout bounds each probe request. Duration; default the
	// smaller of Timeout and 1s.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
}

// Defaults of Config, applied by SetDefaults to zero fields.
const (
	DefaultTimeout             = time.Second
	DefaultMaxConcurrent       = 64
	DefaultConsecutiveFailures = 5
	DefaultFailureRate         = 0.5
	DefaultMinRequests         = 20
	DefaultWindow              = 10 * time.Second
	DefaultOpenInterval        = 5 * time.Second
	DefaultHalfOpenRequests    = 1
	DefaultProbeInterval       = 250 * time.Millisecond
	DefaultProbeSuccesses      = 2
)

// windowBuckets is the number of buckets of the rolling Window.
const windowBuckets = 10

// DefaultConfig returns the documented defaults; ProbeTimeout, which
// derives from Timeout, stays 0 until SetDefaults.
func DefaultConfig() Config {
	return Config{
		Timeout:             DefaultTimeout,
		MaxConcurrent:       DefaultMaxConcurrent,
		ConsecutiveFailures: DefaultConsecutiveFailures,
		FailureRate:         DefaultFailureRate,
		MinRequests:         DefaultMinRequests,
		Window:              DefaultWindow,
		OpenInterval:        DefaultOpenInterval,
		HalfOpenRequests:    DefaultHalfOpenRequests,
		ProbeInterval:       DefaultProbeInterval,
		ProbeSuccesses:      DefaultProbeSuccesses,
	}
}

// SetDefaults replaces every zero field with its default. Negative values
// are left for Validate to reject.
func (c *Config) SetDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.FailureRate == 0 {
		c.FailureRate = DefaultFailureRate
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.OpenInterval == 0 {
		c.OpenInterval = DefaultOpenInterval
	}
	if c.HalfOpenRequests == 0 {
		c.HalfOpenRequests = DefaultHalfOpenRequests
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeSuccesses == 0 {
		c.ProbeSuccesses = DefaultProbeSuccesses
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = min(c.Timeout, time.Second)
	}
}

// Validate reports every invalid field at once, each a *field.Error
// naming the field by its yaml key, quoting its value and stating the
// rule, e.g. `probe_url: "x": not an absolute http(s) URL`. It expects
// SetDefaults to have run: zero values are invalid.
func (c Config) Validate() error {
	var errs []error
	for _, p := range []struct {
		field string
		d     time.Duration
	}{
		{"timeout", c.Timeout},
		{"window", c.Window},
		{"open_interval", c.OpenInterval},
		{"probe_interval", c.ProbeInterval},
		{"probe_timeout", c.ProbeTimeout},
	} {
		if p.d <= 0 {
			errs = append(errs, field.New(p.field, p.d.String(), "must be a positive duration"))
		}
	}
	for _, n := range []struct {
		field string
		n     int
	}{
		{"max_concurrent", c.MaxConcurrent},
		{"consecutive_failures", c.ConsecutiveFailures},
		{"min_requests", c.MinRequests},
		{"half_open_requests", c.HalfOpenRequests},
		{"probe_successes", c.ProbeSuccesses},
	} {
		if n.n < 1 || int64(n.n) > math.MaxUint32 {
			errs = append(errs, field.New(n.field, strconv.Itoa(n.n), fmt.Sprintf("must be between 1 and %d", uint32(math.MaxUint32))))
		}
	}
	if !(c.FailureRate > 0 && c.FailureRate <= 1) {
		errs = append(errs, field.New("failure_rate", strconv.FormatFloat(c.FailureRate, 'g', -1, 64), "must be in (0, 1]"))
	}
	if c.ProbeURL != "" {
		u, err := url.Parse(c.ProbeURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			shown := c.ProbeURL
			if err == nil {
				shown = u.Redacted()
			}
			errs = append(errs, field.New("probe_url", shown, "not an absolute http(s) URL"))
		}
	}
	return errors.Join(errs...)
}
