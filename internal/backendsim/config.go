package backendsim

// This file holds a Sim's configuration: its modes, its settings and
// their checks.

import (
	"fmt"
	"strconv"
	"time"
)

// Mode is how a Sim answers requests.
type Mode string

// The modes.
const (
	// ModeUp answers correctly after Config.Latency.
	ModeUp Mode = "up"
	// ModeHang reads the request and never answers until the client gives
	// up or the Sim is closed.
	ModeHang Mode = "hang"
	// ModeError answers 500 at once.
	ModeError Mode = "error"
	// ModeSlow answers correctly after Config.SlowLatency.
	ModeSlow Mode = "slow"
	// ModeDown closes each connection without an answer, as a crashed
	// backend behind its own load balancer does.
	ModeDown Mode = "down"
)

var modes = []Mode{ModeUp, ModeHang, ModeError, ModeSlow, ModeDown}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%q: not one of up, hang, error, slow, down", s)
}

// String returns the mode's name.
func (m Mode) String() string { return string(m) }

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText implements encoding.TextUnmarshaler; it accepts only the
// names of the modes.
func (m *Mode) UnmarshalText(b []byte) error {
	p, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = p
	return nil
}

// Defaults and limits.
const (
	// DefaultSlowLatency is Config.SlowLatency's default.
	DefaultSlowLatency = 10 * time.Second
	// MaxLatency bounds Config.Latency and Config.SlowLatency.
	MaxLatency = time.Hour
	// MaxBodyBytes bounds a request body. Larger bodies are answered 413.
	MaxBodyBytes = 8 << 10
	// ValidPrefix starts every ticket the Sim accepts.
	ValidPrefix = "valid-"
	// MaxCapacity bounds Config.Capacity.
	MaxCapacity = 1 << 16
	// MaxQueueSize bounds Config.QueueSize.
	MaxQueueSize = 1 << 20
)

// Config is a Sim's behaviour. It is both the start-up configuration and
// what GET /control reports.
type Config struct {
	// Mode is the behaviour. Default ModeUp.
	Mode Mode `yaml:"mode"`
	// Latency is how long ModeUp waits before it answers. Default 0: at
	// once. At most MaxLatency.
	Latency time.Duration `yaml:"latency"`
	// SlowLatency is how long ModeSlow waits before it answers. Default
	// DefaultSlowLatency (a zero value takes the default). At most
	// MaxLatency.
	SlowLatency time.Duration `yaml:"slow_latency"`

	// Capacity is how many validate calls are worked on at once; the
	// others wait for a worker in a FIFO queue. Default 0: no limit. At
	// most MaxCapacity.
	Capacity int `yaml:"capacity"`
	// QueueSize bounds the queue: a call that finds every worker busy and
	// QueueSize calls waiting is answered 503 at once. Default 0: no
	// bound. At most MaxQueueSize. Without Capacity nobody waits.
	QueueSize int `yaml:"queue_size"`
	// QueueTimeout is how long a call may wait for a worker before it is
	// answered 503; the value in force when the call arrives applies.
	// Default 0: as long as its caller waits. At most MaxLatency.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Mode == "" {
		c.Mode = ModeUp
	}
	if c.SlowLatency == 0 {
		c.SlowLatency = DefaultSlowLatency
	}
}

// Validate reports the first problem in c. Zero values, which SetDefaults
// would fill, are valid.
func (c Config) Validate() error {
	if c.Mode != "" {
		if _, err := ParseMode(string(c.Mode)); err != nil {
			return fmt.Errorf("mode: %w", err)
		}
	}
	if err := CheckLatency(c.Latency); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if err := CheckLatency(c.SlowLatency); err != nil {
		return fmt.Errorf("slow_latency: %w", err)
	}
	if err := CheckCount(c.Capacity, MaxCapacity); err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	if err := CheckCount(c.QueueSize, MaxQueueSize); err != nil {
		return fmt.Errorf("queue_size: %w", err)
	}
	if err := CheckLatency(c.QueueTimeout); err != nil {
		return fmt.Errorf("queue_timeout: %w", err)
	}
	return nil
}

// CheckCount reports whether n is a usable Capacity or QueueSize: from 0
// to limit.
func CheckCount(n, limit int) error { return checkRange(n, limit, strconv.Itoa(n)) }

// CheckLatency reports whether d is a usable latency: from 0 to MaxLatency.
func CheckLatency(d time.Duration) error {
	return checkRange(d, MaxLatency, strconv.Quote(d.String()))
}

// checkRange reports whether v is from 0 to limit; an error names v as
// shown.
func checkRange[T int | time.Duration](v, limit T, shown string) error {
	switch {
	case v < 0:
		return fmt.Errorf("%s: must not be negative", shown)
	case v > limit:
		return fmt.Errorf("%s: must be at most %v", shown, limit)
	}
	return nil
}
