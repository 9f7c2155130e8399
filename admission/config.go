package admission

import (
	"errors"
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// Algorithms accepted in Config.Algorithm.
const (
	// AlgorithmStatic keeps the limit where Config.Limit or SetLimit puts it.
	AlgorithmStatic = "static"
	// AlgorithmAIMD adapts the limit: additive increase while requests
	// finish under Config.LatencyTarget, multiplicative decrease on an
	// overload signal.
	AlgorithmAIMD = "aimd"
)

// Defaults applied by Config.SetDefaults to fields left at their zero value.
const (
	DefaultLimit         = 64
	DefaultMinLimit      = 4
	DefaultMaxLimit      = 1024
	DefaultLatencyTarget = 200 * time.Millisecond
	DefaultBackoff       = 0.9
	DefaultQueueTimeout  = 100 * time.Millisecond
	DefaultRetryAfter    = time.Second
)

// Config is the file-facing configuration of a Limiter. Call SetDefaults,
// then Validate; New does both on its own copy.
type Config struct {
	// Algorithm is AlgorithmStatic or AlgorithmAIMD. Default "static".
	Algorithm string `yaml:"algorithm"`
	// Limit is the number of requests allowed in flight at once: the fixed
	// limit in static mode, the initial limit in aimd mode (then within
	// MinLimit..MaxLimit). SetLimit overrides it at run time. Default 64.
	Limit int `yaml:"limit"`
	// MinLimit is the floor the aimd limit never decreases below. aimd
	// only. Default 4.
	MinLimit int `yaml:"min_limit"`
	// MaxLimit is the ceiling the aimd limit never grows above. aimd only.
	// Default 1024.
	MaxLimit int `yaml:"max_limit"`
	// LatencyTarget is the latency (from admission to release) above which
	// a finished request counts as an overload signal. aimd only. Default
	// 200ms.
	LatencyTarget time.Duration `yaml:"latency_target"`
	// Backoff is the factor, in (0, 1), the aimd limit is multiplied by on
	// an overload signal. aimd only. Default 0.9.
	Backoff float64 `yaml:"backoff"`
	// QueueSize is how many requests may wait, oldest first, for a slot
	// once the limit is reached; more are rejected at once with
	// ErrQueueFull. Default 0: no queue, reject the excess immediately.
	QueueSize int `yaml:"queue_size"`
	// QueueTimeout is how long a request may wait in the queue before it
	// is rejected with ErrQueueTimeout. Used only when QueueSize > 0.
	// Default 100ms.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// RetryAfter is the delay the middleware advertises in the Retry-After
	// header of a rejection, rounded up to whole seconds, at least 1.
	// Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// DefaultConfig returns the documented defaults (QueueSize 0: no queue).
func DefaultConfig() Config {
	c := Config{}
	c.SetDefaults()
	return c
}

// SetDefaults fills the fields left at their zero value with the documented
// defaults. QueueSize stays as it is: 0 means no queue.
func (c *Config) SetDefaults() {
	if c.Algorithm == "" {
		c.Algorithm = AlgorithmStatic
	}
	if c.Limit == 0 {
		c.Limit = DefaultLimit
	}
	if c.MinLimit == 0 {
		c.MinLimit = DefaultMinLimit
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = DefaultMaxLimit
	}
	if c.LatencyTarget == 0 {
		c.LatencyTarget = DefaultLatencyTarget
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
}

// Validate reports every field that breaks a rule, each naming the field
// by its yaml key, quoting the value and stating the rule. The aimd fields
// are checked only when Algorithm is "aimd".
func (c Config) Validate() error {
	var errs []error
	bad := func(path string, value any, rule string) {
		errs = append(errs, field.New(path, value, rule))
	}
	switch c.Algorithm {
	case AlgorithmStatic, AlgorithmAIMD:
	default:
		bad("algorithm", c.Algorithm, `must be "static" or "aimd"`)
	}
	if c.Limit < 1 {
		bad("limit", c.Limit, "must be at least 1")
	}
	if c.Algorithm == AlgorithmAIMD {
		if c.MinLimit < 1 {
			bad("min_limit", c.MinLimit, "must be at least 1")
		}
		if c.MaxLimit < c.MinLimit {
			bad("max_limit", c.MaxLimit, fmt.Sprintf("must be at least min_limit (%d)", c.MinLimit))
		}
		if c.Limit >= 1 && c.MinLimit <= c.MaxLimit && (c.Limit < c.MinLimit || c.Limit > c.MaxLimit) {
			bad("limit", c.Limit, fmt.Sprintf("must be within min_limit..max_limit (%d..%d)", c.MinLimit, c.MaxLimit))
		}
		if c.LatencyTarget <= 0 {
			bad("latency_target", c.LatencyTarget, "must be positive")
		}
		if !(c.Backoff > 0 && c.Backoff < 1) {
			bad("backoff", c.Backoff, "must be in (0, 1)")
		}
	}
	if c.QueueSize < 0 {
		bad("queue_size", c.QueueSize, "must not be negative (0 means no queue)")
	}
	if c.QueueSize > 0 && c.QueueTimeout <= 0 {
		bad("queue_timeout", c.QueueTimeout, "must be positive when queue_size > 0")
	}
	if c.RetryAfter <= 0 {
		bad("retry_after", c.RetryAfter, "must be positive")
	}
	return errors.Join(errs...)
}
