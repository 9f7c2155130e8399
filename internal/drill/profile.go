package drill

import (
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/internal/config"
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

// upConfig returns the configuration of `spillway up` for profile p: the
// scenario's fleet and capacity, the system's defaults with their timers
// scaled by the tempo, and, for Profile2018, the incident's settings
// (config.File.Apply2018, the one definition of them). It is checked as
// `spillway up` will check it, so a bad scenario fails before anything
// starts.
func upConfig(p Profile, s *Scenario, backendURL string) (*config.File, error) {
	t := func(d time.Duration) time.Duration { return scale(d, s.Tempo) }
	f := config.Default()

	lc := &f.Login
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
	lc.RateLimit.PerSecond = 0

	lbc := &f.LB
	lbc.HealthCheck.Interval = t(2 * time.Second)
	lbc.HealthCheck.Timeout = t(time.Second)
	lbc.Outlier.BaseEjectionTime = t(10 * time.Second)
	lbc.SlowStart.Window = t(10 * time.Second)
	lbc.Server.ShutdownTimeout = t(20 * time.Second)

	fc := &f.Fleet
	fc.Size = s.Fleet.Instances
	fc.Grace = s.grace()
	fc.ReadyTimeout = t(30 * time.Second)
	fc.Check.Interval = t(2 * time.Second)
	fc.Check.Timeout = t(time.Second)
	fc.Backoff.Base = t(time.Second)
	fc.Backoff.Max = t(30 * time.Second)
	fc.Backoff.Reset = t(time.Minute)
	fc.StopTimeout = t(15 * time.Second)

	f.Up.BackendURL = backendURL

	switch p {
	case ProfileSpillway:
	case Profile2018:
		f.Apply2018()
	default:
		return nil, fmt.Errorf("profile %q: unknown", p)
	}
	check := f
	check.Resolve()
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("profile %s: %w", p, err)
	}
	return &f, nil
}
