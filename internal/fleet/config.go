package fleet

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
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

// Config is the configuration of a fleet (the `fleet:` section of a
// spillway file). Start from DefaultConfig (a file is decoded onto it:
// absent fields keep their defaults, an explicit 0 is 0, which disables
// the features that say so); New resolves the defaults that derive from
// other fields (Resolve) and validates.
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

	// Schedule pre-warms the fleet before known peaks: while a window is
	// open (from ScheduleLead before its start), the fleet keeps the
	// largest of Size and every open window's need; extra instances are
	// started as slots of their own (announced, checked and replaced like
	// the others) and stopped, newest first, once the windows close, never
	// during a rolling restart. The replacement budget's and the freeze's
	// shares are then of the current target. Default none; at most
	// MaxWindows.
	Schedule []Window `yaml:"schedule"`
	// ScheduleLead is how long before a window opens its extra instances
	// start, so that they are ready and past the load balancer's slow start
	// when it opens. Default 2m: a start that succeeds at the second try
	// (backoff.base 1s) and becomes ready within ready_timeout (30s), the
	// load balancer's healthy threshold (2 checks, 2s apart) and its
	// slow_start window (10s) take under a minute; the rest is margin.
	// Raise it for instances that warm up longer. 0 starts them as the
	// window opens.
	ScheduleLead time.Duration `yaml:"schedule_lead"`
}

// CheckConfig configures the health checks the fleet makes itself. They are
// independent of the load balancer's checks.
type CheckConfig struct {
	// Interval between two checks of one instance. Default 2s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check; a check that takes longer fails. At most
	// Interval. Default 1s, or Interval if that is shorter (0 derives it
	// so).
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
	// Max replacements per Window: a count (2) or a share of Size written
	// as a percentage ("25%", at least one instance), as Kubernetes writes
	// maxUnavailable. Default "25%". 0 disables the budget (the 2018
	// configuration).
	Max Amount `yaml:"max"`
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
	// Share of Size, in [0, 1]. Default 0.5. 0 disables the freeze (the
	// 2018 configuration).
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
	// Max caps the delay. Default 30s, or Base if that is longer (0
	// derives it so).
	Max time.Duration `yaml:"max"`
	// Reset: a process that ran at least this long before it exited is
	// restarted after Base again. Default 1m.
	Reset time.Duration `yaml:"reset"`
}

// DefaultConfig returns the documented defaults. check.timeout and
// backoff.max derive from other fields: they are 0 here and filled by
// Resolve.
func DefaultConfig() Config {
	return Config{
		Size:         3,
		Host:         "127.0.0.1",
		Grace:        10 * time.Second,
		ReadyTimeout: 30 * time.Second,
		Check: CheckConfig{
			Interval:           2 * time.Second,
			UnhealthyThreshold: 3,
			Liveness:           ProbeConfig{Path: "/livez", Port: PortHealth},
			Traffic:            ProbeConfig{Path: "/readyz", Port: PortHealth},
		},
		ReplaceOn:    ReplaceOnLiveness,
		Budget:       BudgetConfig{Max: Percent(25), Window: time.Minute},
		Freeze:       FreezeConfig{Share: 0.5, Window: time.Minute},
		Backoff:      BackoffConfig{Base: time.Second, Reset: time.Minute},
		StopTimeout:  15 * time.Second,
		ScheduleLead: DefaultScheduleLead,
	}
}

// Resolve fills the fields whose default derives from another, when they
// are 0: check.timeout (1s, or the interval if shorter) and backoff.max
// (30s, or the base if longer); and each schedule window's empty
// time_zone ("UTC") and scope ("host"), which a list entry cannot take
// from DefaultConfig. It is idempotent; New calls it.
func (c *Config) Resolve() {
	if slices.ContainsFunc(c.Schedule, func(w Window) bool { return w.TimeZone == "" || w.Scope == "" }) {
		c.Schedule = slices.Clone(c.Schedule) // not the caller's array
		for i := range c.Schedule {
			c.Schedule[i].resolve()
		}
	}
	if c.Check.Timeout == 0 {
		c.Check.Timeout = min(time.Second, c.Check.Interval)
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(30*time.Second, c.Backoff.Base)
	}
}

// Validate reports every problem in c, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(field.Between("size", c.Size, 1, MaxSize))
	if len(c.Command) > 0 && strings.TrimSpace(c.Command[0]) == "" {
		add(field.New("command[0]", c.Command[0], "must name a program"))
	}
	for i, a := range c.Args {
		if a == "--listen" || a == "--health-listen" || strings.HasPrefix(a, "--listen=") || strings.HasPrefix(a, "--health-listen=") {
			add(field.New(fmt.Sprintf("args[%d]", i), a, "the fleet chooses the ports itself"))
		}
	}
	if c.Host != "localhost" && net.ParseIP(c.Host) == nil {
		add(field.New("host", c.Host, "not an IP address"))
	}
	add(field.NonNegative("grace", c.Grace))
	add(field.Positive("ready_timeout", c.ReadyTimeout))
	add(field.Positive("check.interval", c.Check.Interval))
	add(field.Positive("check.timeout", c.Check.Timeout))
	if c.Check.Timeout > c.Check.Interval && c.Check.Interval > 0 {
		add(field.New("check.timeout", c.Check.Timeout, "must be at most check.interval ("+c.Check.Interval.String()+")"))
	}
	if c.Check.UnhealthyThreshold < 1 {
		add(field.New("check.unhealthy_threshold", c.Check.UnhealthyThreshold, "must be at least 1"))
	}
	add(c.Check.Liveness.validate("check.liveness"))
	add(c.Check.Traffic.validate("check.traffic"))
	if c.ReplaceOn != ReplaceOnLiveness && c.ReplaceOn != ReplaceOnTraffic {
		add(field.New("replace_on", c.ReplaceOn, fmt.Sprintf("must be %q or %q", ReplaceOnLiveness, ReplaceOnTraffic)))
	}
	add(c.Budget.Max.validate("budget.max"))
	add(field.Positive("budget.window", c.Budget.Window))
	add(field.Fraction("freeze.share", c.Freeze.Share, 0, 1))
	add(field.Positive("freeze.window", c.Freeze.Window))
	add(field.Positive("backoff.base", c.Backoff.Base))
	if c.Backoff.Max < c.Backoff.Base {
		add(field.New("backoff.max", c.Backoff.Max, "must be at least backoff.base ("+c.Backoff.Base.String()+")"))
	}
	add(field.Positive("backoff.reset", c.Backoff.Reset))
	add(field.Positive("stop_timeout", c.StopTimeout))
	add(validateSchedule(c.Schedule, c.ScheduleLead))
	return errors.Join(errs...)
}

func (p ProbeConfig) validate(path string) error {
	var errs []error
	if !strings.HasPrefix(p.Path, "/") || strings.ContainsAny(p.Path, " \t\r\n#") {
		errs = append(errs, field.New(path+".path", p.Path, `must be a path starting with "/"`))
	}
	if p.Port != PortHealth && p.Port != PortService {
		errs = append(errs, field.New(path+".port", p.Port, fmt.Sprintf("must be %q or %q", PortHealth, PortService)))
	}
	return errors.Join(errs...)
}
