package fleet

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"
)

// ReplaceOn values: which health answer can get an instance replaced.
const (
	// ReplaceOnLiveness replaces an instance when its process exits or its
	// liveness check (default: /livez on the health port) fails
	// check.unhealthy_threshold times in a row. The default, and the only
	// setting that keeps a dependency outage from killing the fleet.
	ReplaceOnLiveness = "liveness"
	// ReplaceOnTraffic replaces an instance when its traffic check (default:
	// /readyz on the health port) fails its threshold: the 2018 incident's
	// behaviour, replacing on the load balancer's view of the instance. An
	// instance that is alive but busy, warming, draining or (with deep
	// checks) whose backend is down then looks dead, and every replacement
	// comes up into the same condition and is replaced again. Kept so the
	// drill can reproduce the incident; the budget and the freeze still
	// apply unless they are disabled too.
	ReplaceOnTraffic = "traffic"
)

// Probe ports: which of an instance's two addresses a check targets.
const (
	PortHealth  = "health"  // the health port (--health-listen)
	PortService = "service" // the service port (--listen)
)

// MaxSize bounds Config.Size.
const MaxSize = 256

// Config is the file-facing configuration of a fleet (the `fleet:` part of
// a spillway file). Zero values take the documented defaults; call
// SetDefaults, then Validate.
type Config struct {
	// Size is the number of instances the fleet keeps: it starts that many
	// and replaces each one that fails. Default 3; at most MaxSize.
	Size int `yaml:"size"`
	// Command is the program and its leading arguments, run once per
	// instance. Default: this binary's own `login` subcommand
	// (os.Executable(), "login"). The fleet appends
	// `--listen HOST:PORT --health-listen HOST:PORT` with free ports chosen
	// at each start, then Args; a custom command must accept those flags.
	Command []string `yaml:"command"`
	// Args are appended after the port flags, such as
	// ["--backend", "http://127.0.0.1:9000", "--dev"]. Default none.
	Args []string `yaml:"args"`
	// Host is the IP address instances listen on; their ports are chosen
	// free on it at each start. Default "127.0.0.1".
	Host string `yaml:"host"`

	// Grace is how long after an instance starts no health check result
	// counts against it: checks still run (so readiness is seen) but
	// failures are not counted until Grace has passed. A process exit is
	// not a check result and is acted on at once. Default 10s.
	Grace time.Duration `yaml:"grace"`
	// ReadyTimeout bounds how long a rolling restart waits for a new
	// instance's traffic check (/readyz) to pass before it gives up, stops
	// the new instance and keeps the old one. Default 30s.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`

	// Check is the active health checking of every instance.
	Check CheckConfig `yaml:"check"`
	// ReplaceOn chooses which check can get an instance replaced:
	// "liveness" (default) or "traffic", the 2018 incident's behaviour; see
	// ReplaceOnTraffic before using it.
	ReplaceOn string `yaml:"replace_on"`

	// Budget bounds health-based replacements.
	Budget BudgetConfig `yaml:"budget"`
	// Freeze stops health-based replacement while failures are correlated.
	Freeze FreezeConfig `yaml:"freeze"`
	// Backoff spaces the restarts of a process that keeps exiting.
	Backoff BackoffConfig `yaml:"backoff"`

	// StopTimeout is how long an instance may take to exit after SIGTERM
	// (the login instance drains: /readyz 503 for its drain_delay, 2s by
	// default, then up to its shutdown_timeout, 10s, for requests in
	// flight) before it and its process group get SIGKILL. Default 15s.
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// CheckConfig configures the health checks the fleet makes itself. They are
// independent of the load balancer's checks.
type CheckConfig struct {
	// Interval between two checks of one instance. Default 2s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check; a check that takes longer fails. At most
	// Interval. Default 1s.
	Timeout time.Duration `yaml:"timeout"`
	// UnhealthyThreshold is the number of consecutive failed checks (after
	// Grace) that make an instance unhealthy. Default 3. With the defaults
	// a hung process is replaced about 6s after its first failed check.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// Liveness is what "alive" means: default GET /livez on the health
	// port. Used when replace_on is "liveness".
	Liveness ProbeConfig `yaml:"liveness"`
	// Traffic is what "ready for traffic" means: default GET /readyz on the
	// health port. Always used to see that a new instance is ready (events,
	// rolling restart); used for replacement only when replace_on is
	// "traffic". The 2018 configuration serves health on the service port:
	// set port to "service" for it (and liveness too, as that configuration
	// has no health port). The load balancer is told that an instance's
	// health address is this check's address.
	Traffic ProbeConfig `yaml:"traffic"`
}

// ProbeConfig is one HTTP health check: GET http://ADDRESS/PATH, which
// passes on a 2xx answer within CheckConfig.Timeout.
type ProbeConfig struct {
	// Path is the request path, starting with "/".
	Path string `yaml:"path"`
	// Port is "health" (the health port, default) or "service" (the
	// service port).
	Port string `yaml:"port"`
}

// BudgetConfig bounds health-based replacements: at most Max per sliding
// Window. Exits (crash restarts, governed by Backoff) and rolling restarts
// (which never lower capacity) are not charged.
type BudgetConfig struct {
	// Max replacements per Window. Default: a quarter of Size, at least 1.
	// A negative value disables the budget (the 2018 configuration).
	Max int `yaml:"max"`
	// Window is the sliding window. Default 1m.
	Window time.Duration `yaml:"window"`
}

// FreezeConfig configures the correlated-failure freeze: when more than
// Share of the fleet's instances (and at least two) are failing, or failed
// within Window, the cause is taken to be shared (a dependency, the
// network, the host) and nothing is replaced until the failures clear.
// Probing goes on. An instance is failing from its first failed check after
// grace until it passes one; an exit is a failure too.
type FreezeConfig struct {
	// Share of Size, in (0, 1]. Default 0.5. A negative value disables the
	// freeze (the 2018 configuration).
	Share float64 `yaml:"share"`
	// Window is how long a failure still counts after its instance is gone
	// (replaced or exited). A failing instance that is still running counts
	// until it passes a check. Default 1m.
	Window time.Duration `yaml:"window"`
}

// BackoffConfig spaces the restarts of an instance slot whose process keeps
// exiting: Base, then doubling up to Max.
type BackoffConfig struct {
	// Base is the delay before the first restart. Default 1s.
	Base time.Duration `yaml:"base"`
	// Max caps the delay. Default 30s.
	Max time.Duration `yaml:"max"`
	// Reset: a process that ran at least this long before it exited is
	// restarted after Base again. Default 1m.
	Reset time.Duration `yaml:"reset"`
}

// SetDefaults fills zero fields with their documented defaults.
func (c *Config) SetDefaults() {
	if c.Size == 0 {
		c.Size = 3
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Grace == 0 {
		c.Grace = 10 * time.Second
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.Check.Interval == 0 {
		c.Check.Interval = 2 * time.Second
	}
	if c.Check.Timeout == 0 {
		c.Check.Timeout = min(time.Second, c.Check.Interval)
	}
	if c.Check.UnhealthyThreshold == 0 {
		c.Check.UnhealthyThreshold = 3
	}
	c.Check.Liveness.setDefaults("/livez")
	c.Check.Traffic.setDefaults("/readyz")
	if c.ReplaceOn == "" {
		c.ReplaceOn = ReplaceOnLiveness
	}
	if c.Budget.Max == 0 {
		c.Budget.Max = max(1, c.Size/4)
	}
	if c.Budget.Window == 0 {
		c.Budget.Window = time.Minute
	}
	if c.Freeze.Share == 0 {
		c.Freeze.Share = 0.5
	}
	if c.Freeze.Window == 0 {
		c.Freeze.Window = time.Minute
	}
	if c.Backoff.Base == 0 {
		c.Backoff.Base = time.Second
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(30*time.Second, c.Backoff.Base)
	}
	if c.Backoff.Reset == 0 {
		c.Backoff.Reset = time.Minute
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 15 * time.Second
	}
}

func (p *ProbeConfig) setDefaults(path string) {
	if p.Path == "" {
		p.Path = path
	}
	if p.Port == "" {
		p.Port = PortHealth
	}
}

// Validate reports every problem in c, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Size < 1 || c.Size > MaxSize {
		add("size: %d: must be from 1 to %d", c.Size, MaxSize)
	}
	if len(c.Command) > 0 && strings.TrimSpace(c.Command[0]) == "" {
		add("command[0]: %q: must name a program", c.Command[0])
	}
	for i, a := range c.Args {
		if a == "--listen" || a == "--health-listen" || strings.HasPrefix(a, "--listen=") || strings.HasPrefix(a, "--health-listen=") {
			add("args[%d]: %q: the fleet chooses the ports itself", i, a)
		}
	}
	if c.Host != "localhost" && net.ParseIP(c.Host) == nil {
		add("host: %q: not an IP address", c.Host)
	}
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			add("%s: %q: must be positive", field, d)
		}
	}
	if c.Grace < 0 {
		add("grace: %q: must not be negative", c.Grace)
	}
	positive("ready_timeout", c.ReadyTimeout)
	positive("check.interval", c.Check.Interval)
	positive("check.timeout", c.Check.Timeout)
	if c.Check.Timeout > c.Check.Interval && c.Check.Interval > 0 {
		add("check.timeout: %q: must be at most check.interval (%s)", c.Check.Timeout, c.Check.Interval)
	}
	if c.Check.UnhealthyThreshold < 1 {
		add("check.unhealthy_threshold: %d: must be at least 1", c.Check.UnhealthyThreshold)
	}
	errs = append(errs, c.Check.Liveness.validate("check.liveness")...)
	errs = append(errs, c.Check.Traffic.validate("check.traffic")...)
	if c.ReplaceOn != ReplaceOnLiveness && c.ReplaceOn != ReplaceOnTraffic {
		add("replace_on: %q: must be %q or %q", c.ReplaceOn, ReplaceOnLiveness, ReplaceOnTraffic)
	}
	if c.Budget.Max == 0 {
		add("budget.max: 0: must be at least 1, or negative to disable the budget")
	}
	positive("budget.window", c.Budget.Window)
	if math.IsNaN(c.Freeze.Share) || c.Freeze.Share == 0 || c.Freeze.Share > 1 || math.IsInf(c.Freeze.Share, -1) {
		add("freeze.share: %v: must be in (0, 1], or negative to disable the freeze", c.Freeze.Share)
	}
	positive("freeze.window", c.Freeze.Window)
	positive("backoff.base", c.Backoff.Base)
	if c.Backoff.Max < c.Backoff.Base {
		add("backoff.max: %q: must be at least backoff.base (%s)", c.Backoff.Max, c.Backoff.Base)
	}
	positive("backoff.reset", c.Backoff.Reset)
	positive("stop_timeout", c.StopTimeout)
	return errors.Join(errs...)
}

func (p ProbeConfig) validate(field string) []error {
	var errs []error
	if !strings.HasPrefix(p.Path, "/") || strings.ContainsAny(p.Path, " \t\r\n#") {
		errs = append(errs, fmt.Errorf("%s.path: %q: must be a path starting with \"/\"", field, p.Path))
	}
	if p.Port != PortHealth && p.Port != PortService {
		errs = append(errs, fmt.Errorf("%s.port: %q: must be %q or %q", field, p.Port, PortHealth, PortService))
	}
	return errs
}
