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

// scaledTimers are the timers of the system's control loops that
// Scenario.Tempo scales (see there).
var scaledTimers = []func(*config.File) *time.Duration{
	func(f *config.File) *time.Duration { return &f.Login.Backend.Timeout },
	func(f *config.File) *time.Duration { return &f.Login.Backend.OpenInterval },
	func(f *config.File) *time.Duration { return &f.Login.Backend.Window },
	func(f *config.File) *time.Duration { return &f.Login.Backend.ProbeInterval },
	func(f *config.File) *time.Duration { return &f.Login.Health.DrainDelay },
	func(f *config.File) *time.Duration { return &f.Login.ShutdownTimeout },
	func(f *config.File) *time.Duration { return &f.LB.HealthCheck.Interval },
	func(f *config.File) *time.Duration { return &f.LB.HealthCheck.Timeout },
	func(f *config.File) *time.Duration { return &f.LB.Outlier.BaseEjectionTime },
	func(f *config.File) *time.Duration { return &f.LB.SlowStart.Window },
	func(f *config.File) *time.Duration { return &f.LB.Server.ShutdownTimeout },
	func(f *config.File) *time.Duration { return &f.Fleet.ReadyTimeout },
	func(f *config.File) *time.Duration { return &f.Fleet.Check.Interval },
	func(f *config.File) *time.Duration { return &f.Fleet.Check.Timeout },
	func(f *config.File) *time.Duration { return &f.Fleet.Backoff.Base },
	func(f *config.File) *time.Duration { return &f.Fleet.Backoff.Max },
	func(f *config.File) *time.Duration { return &f.Fleet.Backoff.Reset },
	func(f *config.File) *time.Duration { return &f.Fleet.StopTimeout },
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

	// The control loops' timers are the defaults' (resolved, so a derived
	// default is scaled too), scaled: the drill follows the defaults when
	// they change.
	def := config.Default()
	def.Resolve()
	for _, at := range scaledTimers {
		*at(&f) = t(*at(&def))
	}

	lc := &f.Login
	lc.Backend.URL = backendURL
	lc.Admission.Limit = s.Fleet.Limit
	lc.Admission.QueueSize = s.Fleet.Queue
	lc.Health.Warmup = s.Fleet.Boot
	// Every login comes from the drill's one address, through the load
	// balancer: the per-client attempt limit would refuse the load itself.
	lc.RateLimit.PerSecond = 0

	fc := &f.Fleet
	fc.Size = s.Fleet.Instances
	fc.Grace = s.grace()

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
