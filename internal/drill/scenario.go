package drill

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/strictyaml"
)

// Scenario is a drill's script: the fleet under test, the backend, the
// clients, the system's tempo and the phases (load changes, backend modes,
// instance kills) with their start times. It is the YAML of a scenario file
// (spillway drill --scenario FILE); zero fields take the documented
// defaults. Load it with ParseScenario.
type Scenario struct {
	// Name names the scenario in the report. Default "scenario".
	Name string `yaml:"name"`
	// Description is a sentence or two for the report.
	Description string `yaml:"description"`
	// Fleet is the instance group under test.
	Fleet FleetSpec `yaml:"fleet"`
	// Backend is the backend-sim behind the instances.
	Backend BackendSpec `yaml:"backend"`
	// Client is how the load generator's clients behave.
	Client ClientSpec `yaml:"client"`
	// Tempo multiplies the system's control-loop timers in both profiles:
	// health check intervals and timeouts, the fleet's grace and backoff,
	// the breaker's open interval and probes, the backend call timeout,
	// drain delays and slow start. 1 runs the production defaults (checks
	// every 2s); the default 0.2 runs them five times faster (checks every
	// 400ms) so that a drill of a minute shows what takes several minutes
	// at the defaults. The backend latency, the client's timeout and
	// retries, and the edge's recovery ramp are not scaled: they belong to
	// the traffic, not to the system's clock. In (0, 1].
	Tempo float64 `yaml:"tempo"`
	// Phases are what happens when, in order of At. The first starts at 0
	// and sets the load.
	Phases []Phase `yaml:"phases"`
	// Observe is how long the drill goes on after the last phase starts.
	// Default 25s. At least 5s.
	Observe time.Duration `yaml:"observe"`
}

// FleetSpec is the instance group: its size and each instance's capacity.
type FleetSpec struct {
	// Instances is the fleet's size. Default 4; at most 16.
	Instances int `yaml:"instances"`
	// Limit is each instance's admission limit (login admission.limit):
	// the logins it works on at once, its capacity. Default 8. An
	// instance completes about limit / backend latency logins per second.
	Limit int `yaml:"limit"`
	// Queue is each instance's admission queue (login admission.queue_size):
	// logins that may wait for a slot, up to 100ms in the spillway profile
	// (the admission default) and until served in the 2018 one. Default 0.
	Queue int `yaml:"queue"`
	// Boot is how long a new instance takes before it can serve (login
	// health.warmup: its /readyz answers 503 meanwhile), as a virtual
	// machine takes time to boot. The fleet's grace covers it in both
	// profiles. Scaled by --time-scale, not by Tempo. Default 0; at most
	// 1m.
	Boot time.Duration `yaml:"boot"`
}

// BackendSpec is the backend-sim.
type BackendSpec struct {
	// Latency is how long the backend takes to validate a ticket when it
	// is up. Default 50ms.
	Latency time.Duration `yaml:"latency"`
	// SlowLatency is its latency in mode "slow". Default 10s.
	SlowLatency time.Duration `yaml:"slow_latency"`
}

// ClientSpec is the behaviour of the load generator's clients.
type ClientSpec struct {
	// Timeout bounds each attempt; a client that gives up counts as a
	// client timeout (answered by the client, not lost). Default 800ms.
	Timeout time.Duration `yaml:"timeout"`
	// Retry is what a client does after a 503, another 5xx or a timeout.
	Retry RetrySpec `yaml:"retry"`
}

// RetrySpec is a client's retry behaviour (see loadgen.RetryPolicy).
type RetrySpec struct {
	// Mode is "none" (default), "immediate", or "retry_after": wait for
	// the answer's Retry-After (or Delay without one), plus a random
	// jitter of up to as much again.
	Mode string `yaml:"mode"`
	// Max is the most retries of one login, 0 to 10. Default 0 with mode
	// none, else 1.
	Max int `yaml:"max"`
	// Delay is retry_after's wait when the answer has none (timeouts,
	// transport errors). Default 1s.
	Delay time.Duration `yaml:"delay"`
}

// Phase is one step of the scenario. Fields left out keep what the
// previous phase set.
type Phase struct {
	// Name names the phase in progress lines and the report. Default
	// "phase N".
	Name string `yaml:"name"`
	// At is when the phase starts, from the start of the load.
	At time.Duration `yaml:"at"`
	// RPS is the logins offered per second from At on (first attempts;
	// retries come on top). 0 keeps the previous rate.
	RPS float64 `yaml:"rps"`
	// Backend switches the backend-sim's mode at At: up, hang, error,
	// slow or down.
	Backend string `yaml:"backend"`
	// Kill is the number of running instances killed (SIGKILL) at At.
	Kill int `yaml:"kill"`
}

// Limits of a scenario, to keep a drill within what one machine does.
const (
	maxInstances = 16
	maxRPS       = 5000
	maxDuration  = 30 * time.Minute
)

//go:embed incident.yaml
var incidentYAML []byte

// Default returns the built-in scenario: the 2018 incident, compressed in
// time (see incident.yaml).
func Default() *Scenario {
	s, err := ParseScenario(incidentYAML)
	if err != nil {
		panic("drill: the built-in scenario is invalid: " + err.Error())
	}
	return s
}

// ParseScenario strictly decodes a scenario (an unknown field is an error
// naming its line), applies the defaults and validates it.
func ParseScenario(data []byte) (*Scenario, error) {
	var s Scenario
	if err := strictyaml.Decode(data, &s); err != nil {
		return nil, err
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadScenario reads and parses a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := strictyaml.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// SetDefaults fills zero fields with their documented defaults.
func (s *Scenario) SetDefaults() {
	if s.Name == "" {
		s.Name = "scenario"
	}
	f := &s.Fleet
	if f.Instances == 0 {
		f.Instances = 4
	}
	if f.Limit == 0 {
		f.Limit = 8
	}
	if s.Backend.Latency == 0 {
		s.Backend.Latency = 50 * time.Millisecond
	}
	if s.Backend.SlowLatency == 0 {
		s.Backend.SlowLatency = backendsim.DefaultSlowLatency
	}
	c := &s.Client
	if c.Timeout == 0 {
		c.Timeout = 800 * time.Millisecond
	}
	if c.Retry.Mode == "" {
		c.Retry.Mode = string(loadgen.RetryNone)
	}
	if c.Retry.Max == 0 && c.Retry.Mode != string(loadgen.RetryNone) {
		c.Retry.Max = 1
	}
	if c.Retry.Delay == 0 {
		c.Retry.Delay = time.Second
	}
	if s.Tempo == 0 {
		s.Tempo = 0.2
	}
	if s.Observe == 0 {
		s.Observe = 25 * time.Second
	}
	for i := range s.Phases {
		if s.Phases[i].Name == "" {
			s.Phases[i].Name = fmt.Sprintf("phase %d", i+1)
		}
	}
}

// Validate reports every problem in s, each naming its field, quoting the
// value and stating the rule.
func (s *Scenario) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	f := s.Fleet
	if f.Instances < 1 || f.Instances > maxInstances {
		add("fleet.instances: %d: must be from 1 to %d", f.Instances, maxInstances)
	}
	if f.Limit < 1 || f.Limit > 1024 {
		add("fleet.limit: %d: must be from 1 to 1024", f.Limit)
	}
	if f.Queue < 0 || f.Queue > 4096 {
		add("fleet.queue: %d: must be from 0 to 4096", f.Queue)
	}
	if f.Boot < 0 || f.Boot > time.Minute {
		add("fleet.boot: %q: must be from 0s to 1m", f.Boot)
	}
	if err := backendsim.CheckLatency(s.Backend.Latency); err != nil {
		add("backend.latency: %w", err)
	}
	if err := backendsim.CheckLatency(s.Backend.SlowLatency); err != nil {
		add("backend.slow_latency: %w", err)
	}
	c := s.Client
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		add("client.timeout: %q: must be positive and at most 1m", c.Timeout)
	}
	switch loadgen.RetryMode(c.Retry.Mode) {
	case loadgen.RetryNone, loadgen.RetryImmediate, loadgen.RetryAfter:
	default:
		add("client.retry.mode: %q: must be none, immediate or retry_after", c.Retry.Mode)
	}
	if c.Retry.Max < 0 || c.Retry.Max > loadgen.MaxRetries {
		add("client.retry.max: %d: must be from 0 to %d", c.Retry.Max, loadgen.MaxRetries)
	}
	if c.Retry.Delay < 0 || c.Retry.Delay > time.Minute {
		add("client.retry.delay: %q: must be from 0 to 1m", c.Retry.Delay)
	}
	if !(s.Tempo > 0 && s.Tempo <= 1) {
		add("tempo: %v: must be in (0, 1]", s.Tempo)
	}
	if s.Observe < 5*time.Second || s.Observe > maxDuration {
		add("observe: %q: must be from 5s to %s (time to recover needs a run of 5 good seconds)", s.Observe, maxDuration)
	}
	errs = append(errs, s.validatePhases()...)
	return errors.Join(errs...)
}

func (s *Scenario) validatePhases() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(s.Phases) == 0 {
		return append(errs, errors.New("phases: at least one phase is required"))
	}
	if p := s.Phases[0]; p.At != 0 || p.RPS <= 0 {
		add("phases[0]: must start at 0s and set rps (the load's first rate)")
	}
	for i, p := range s.Phases {
		path := fmt.Sprintf("phases[%d]", i)
		if i > 0 && p.At <= s.Phases[i-1].At {
			add("%s.at: %q: must be after phases[%d].at (%s)", path, p.At, i-1, s.Phases[i-1].At)
		}
		if p.At < 0 || p.At > maxDuration {
			add("%s.at: %q: must be from 0s to %s", path, p.At, maxDuration)
		}
		if p.RPS < 0 || p.RPS > maxRPS || math.IsNaN(p.RPS) {
			add("%s.rps: %v: must be from 0 (keep the previous rate) to %d", path, p.RPS, maxRPS)
		}
		if p.Backend != "" {
			if _, err := backendsim.ParseMode(p.Backend); err != nil {
				add("%s.backend: %w", path, err)
			}
		}
		if p.Kill < 0 || p.Kill > s.Fleet.Instances {
			add("%s.kill: %d: must be from 0 to fleet.instances (%d)", path, p.Kill, s.Fleet.Instances)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	w := s.Window()
	switch {
	case !w.Found:
		add("phases: none disrupts the system: set a backend mode other than up, or kill instances")
	case !w.Ends:
		add("phases[%d]: the disruption it starts never ends: add a later phase with backend: up", w.StartPhase)
	}
	return errs
}

// grace is the fleet's grace period in both profiles: the default 10s
// scaled by the tempo, or, when instances boot for longer, the boot plus
// one check interval, as an operator sets a grace that covers the boot
// (an instance whose failed checks counted while it boots would be
// replaced before it ever served).
func (s *Scenario) grace() time.Duration {
	return max(scale(10*time.Second, s.Tempo), s.Fleet.Boot+scale(2*time.Second, s.Tempo))
}

// Window is the scenario's disruption: from the start of the first phase
// that breaks the backend (a mode other than up) or kills instances, to
// the start of the first later phase with the backend up and no kill. The
// report's before, during and after are its three parts.
type Window struct {
	Found      bool
	Ends       bool
	StartPhase int // index of the phase that starts it
	EndPhase   int // index of the phase that ends it
	Start, End time.Duration
}

// Window returns the scenario's disruption window.
func (s *Scenario) Window() Window {
	var w Window
	mode := "up"
	for i, p := range s.Phases {
		if p.Backend != "" {
			mode = p.Backend
		}
		disrupted := mode != "up" || p.Kill > 0
		switch {
		case !w.Found && disrupted:
			w.Found, w.StartPhase, w.Start = true, i, p.At
		case w.Found && !w.Ends && !disrupted:
			w.Ends, w.EndPhase, w.End = true, i, p.At
		}
	}
	return w
}

// Duration is how long the load runs: the last phase's start plus Observe.
func (s *Scenario) Duration() time.Duration {
	return s.Phases[len(s.Phases)-1].At + s.Observe
}

// Scaled returns a copy of s with its schedule compressed by x (0 < x ≤ 1,
// or stretched by x > 1): phase starts, Observe, Fleet.Boot and Tempo are
// multiplied by x. Request-level times (backend latency, client timeout,
// retry delays) are not.
func (s *Scenario) Scaled(x float64) *Scenario {
	c := *s
	c.Phases = append([]Phase(nil), s.Phases...)
	for i := range c.Phases {
		c.Phases[i].At = scale(c.Phases[i].At, x)
	}
	c.Observe = scale(c.Observe, x)
	c.Fleet.Boot = scale(c.Fleet.Boot, x)
	c.Tempo = min(s.Tempo*x, 1)
	return &c
}

// scale multiplies d by x, rounded to the millisecond.
func scale(d time.Duration, x float64) time.Duration {
	return time.Duration(float64(d) * x).Round(time.Millisecond)
}
