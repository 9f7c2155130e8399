package drill

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/stack"
)

// Profile is a configuration of the same binaries: spillway's defaults, or
// the 2018 incident's settings.
type Profile string

// The profiles.
const (
	// Profile2018 is the incident's design: health on the service port,
	// behind the admission limit, and deep (it calls the backend); a
	// backlog that holds a request until it is served (no queue timeout);
	// a long backend timeout; the load balancer checks the service port
	// and has no slow start, no panic threshold, no edge shedding and no
	// edge capacity bound; the fleet replaces instances on that traffic
	// check, with no budget and no freeze.
	Profile2018 Profile = "2018"
	// ProfileSpillway is spillway's defaults.
	ProfileSpillway Profile = "spillway"
)

// Profiles lists every profile, in the order "both" runs them.
var Profiles = []Profile{Profile2018, ProfileSpillway}

// ParseProfiles parses the --profile flag: "2018", "spillway" or "both".
func ParseProfiles(s string) ([]Profile, error) {
	switch s {
	case "both", "":
		return Profiles, nil
	case string(Profile2018), string(ProfileSpillway):
		return []Profile{Profile(s)}, nil
	}
	return nil, fmt.Errorf("profile %q: must be 2018, spillway or both", s)
}

// upFile is the configuration file `spillway up` reads: the sections of a
// spillway file.
type upFile struct {
	Login *login.Config   `yaml:"login"`
	LB    *lb.FileConfig  `yaml:"lb"`
	Fleet *fleet.Config   `yaml:"fleet"`
	Up    *stack.Settings `yaml:"up"`
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// backlogWait is the 2018 profile's admission queue timeout: in effect
// none, as the 2018 service had none (see docs/DRILL.md).
const backlogWait = time.Minute

// upConfig returns the configuration of `spillway up` for profile p: the
// scenario's fleet and capacity, the system's defaults with their timers
// scaled by the tempo, and, for Profile2018, the incident's settings.
func upConfig(p Profile, s *Scenario, backendURL string) (*upFile, error) {
	t := func(d time.Duration) time.Duration { return scale(d, s.Tempo) }

	lc := &login.Config{}
	lc.Backend.URL = backendURL
	lc.Backend.Timeout = t(time.Second)
	lc.Backend.OpenInterval = t(5 * time.Second)
	lc.Backend.Window = t(10 * time.Second)
	lc.Backend.ProbeInterval = t(time.Second)
	lc.Admission.Limit = s.Fleet.Limit
	lc.Admission.QueueSize = s.Fleet.Queue
	lc.Health.Warmup = s.Fleet.Boot
	lc.Health.DrainDelay = t(2 * time.Second)
	lc.ShutdownTimeout = t(10 * time.Second)
	// Every login comes from the drill's one address, through the load
	// balancer: the per-client attempt limit would refuse the load itself.
	lc.RateLimit.PerSecond = -1

	lbc := &lb.FileConfig{}
	lbc.HealthCheck.Interval = t(2 * time.Second)
	lbc.HealthCheck.Timeout = t(time.Second)
	lbc.Outlier.BaseEjectionTime = t(10 * time.Second)
	lbc.SlowStart.Window = ptr(t(10 * time.Second))
	lbc.Server.ShutdownTimeout = t(20 * time.Second)

	fc := &fleet.Config{}
	fc.Size = s.Fleet.Instances
	fc.Grace = s.grace()
	fc.ReadyTimeout = t(30 * time.Second)
	fc.Check.Interval = t(2 * time.Second)
	fc.Check.Timeout = t(time.Second)
	fc.Backoff.Base = t(time.Second)
	fc.Backoff.Max = t(30 * time.Second)
	fc.Backoff.Reset = t(time.Minute)
	fc.StopTimeout = t(15 * time.Second)

	switch p {
	case ProfileSpillway:
	case Profile2018:
		// The instance: health on the service port, behind admission, and
		// deep; calls to the backend wait five times as long.
		lc.Health.SharedPort = true
		lc.Health.Deep = true
		lc.Backend.Timeout = t(5 * time.Second)
		// Its worker pool's backlog holds a request until a worker takes
		// it or the caller gives up, as a server without admission
		// control does: no queue timeout (a minute is longer than any
		// caller of the drill waits). A health check queued behind a
		// flooded backlog waits, and times out: it "stops answering",
		// as the incident's did.
		lc.Admission.QueueTimeout = backlogWait
		// The load balancer: an HTTP check of the service port, no
		// dependency reports (so no shedding votes and no edge capacity
		// bound), no panic threshold, no slow start, no shedding.
		lbc.HealthCheck.ReportPath = ptr("")
		lbc.Panic.Threshold = ptr(0.0)
		lbc.SlowStart.Window = ptr(time.Duration(0))
		lbc.Shedding.Quorum = ptr(0.0)
		// The group: replace on the load balancer's view (the traffic
		// check, on the service port), with no budget and no freeze. The
		// load balancer is told the instance's health address is the
		// traffic check's: the service port.
		fc.ReplaceOn = fleet.ReplaceOnTraffic
		fc.Check.Traffic = fleet.ProbeConfig{Path: "/readyz", Port: fleet.PortService}
		fc.Check.Liveness = fleet.ProbeConfig{Path: "/livez", Port: fleet.PortService}
		fc.Budget.Max = -1
		fc.Freeze.Share = -1
		// The 2018 group terminated every instance the load balancer took
		// out of service. The fleet checks on its own: two failed checks
		// (the load balancer takes an instance out after three) make it
		// act no later than the load balancer, as the group did, instead
		// of sparing an instance that the load balancer's own verdict
		// just relieved of its traffic.
		fc.Check.UnhealthyThreshold = 2
	default:
		return nil, fmt.Errorf("profile %q: unknown", p)
	}

	f := &upFile{Login: lc, LB: lbc, Fleet: fc, Up: &stack.Settings{BackendURL: backendURL}}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p, err)
	}
	return f, nil
}

// check validates a copy of every section as `spillway up` will, so a bad
// scenario fails before anything starts.
func (f *upFile) check() error {
	lc, lbc, fc, st := *f.Login, *f.LB, *f.Fleet, *f.Up
	lc.SetDefaults()
	lbc.SetDefaults()
	fc.SetDefaults()
	st.SetDefaults()
	var errs []error
	for _, e := range []struct {
		section string
		err     error
	}{{"login", lc.Validate()}, {"lb", lbc.Validate()}, {"fleet", fc.Validate()}, {"up", st.Validate()}} {
		if e.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.section, e.err))
		}
	}
	return errors.Join(errs...)
}

// marshal returns the file's YAML.
func (f *upFile) marshal() ([]byte, error) { return yaml.Marshal(f) }
