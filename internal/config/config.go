// Package config is the schema of a spillway file: one YAML document with a
// section per component — `login:` (login.Config), `guard:`
// (sidecar.Config, `spillway guard`), `lb:` (lb.Config),
// `fleet:` (fleet.Config), `fleet_admin:` (FleetAdmin) and `up:` (Up) —
// plus `tracing:` (tracing.Config, shared by lb and login) — and the one way to load it:
// read, decode strictly onto the defaults (Default, or ForUp for `spillway
// up`), apply flags, Resolve the defaults that derive from other fields,
// Validate every section. Each command reads its own section; `spillway
// check` validates them all; the drill writes a File for the systems it
// runs. The 2018 incident's configuration is defined here once (Apply2018).
//
// A File is a plain value: copy it freely. Nothing here holds state.
package config

import (
	"errors"
	"fmt"
	"net"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/sidecar"
	"github.com/spillway-dev/spillway/internal/strictyaml"
	"github.com/spillway-dev/spillway/internal/tracing"
)

// File is a spillway configuration file.
type File struct {
	// Login configures `spillway login`, and the instances of `spillway up`.
	Login login.Config `yaml:"login"`
	// Guard configures `spillway guard`, the sidecar that gives a
	// service in any language a guarded dependency and a health port.
	Guard sidecar.Config `yaml:"guard"`
	// LB configures `spillway lb`, and the load balancer of `spillway up`.
	LB lb.Config `yaml:"lb"`
	// Fleet configures the instance group of `spillway fleet` and of
	// `spillway up`.
	Fleet fleet.Config `yaml:"fleet"`
	// FleetAdmin configures what only `spillway fleet` needs.
	FleetAdmin FleetAdmin `yaml:"fleet_admin"`
	// Up configures what only `spillway up` needs.
	Up Up `yaml:"up"`
	// Tracing configures OpenTelemetry tracing for `spillway lb` and
	// `spillway login` (package tracing). Off by default.
	Tracing tracing.Config `yaml:"tracing"`
}

// Up is the `up:` section: what only `spillway up` needs.
type Up struct {
	// BackendURL is an external backend API to use. Default "": run a
	// backend-sim in the same process on BackendListen, which the
	// dashboard can break and restore.
	BackendURL string `yaml:"backend_url"`
	// BackendListen is the in-process backend-sim's address. Default
	// "127.0.0.1:9000".
	BackendListen string `yaml:"backend_listen"`
	// BackendLatency is the in-process backend-sim's answer latency.
	// Default 20ms.
	BackendLatency time.Duration `yaml:"backend_latency"`
}

// FleetAdmin is the `fleet_admin:` section: the admin API of `spillway
// fleet`.
type FleetAdmin struct {
	// Listen is the admin API's address, host:port: GET /status (the
	// processes, the freeze, the budget and, with etcd, the fleet-wide
	// view, in JSON) and GET /metrics (Prometheus). Read-only: it needs no
	// token; on a loopback address it answers only to a loopback Host (no
	// DNS rebinding). Default "": no admin API.
	Listen string `yaml:"listen"`
}

// Validate reports every problem in the fleet_admin section.
func (a *FleetAdmin) Validate() error {
	if a.Listen == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(a.Listen); err != nil || port == "" {
		return field.New("listen", a.Listen, "not a host:port")
	}
	return nil
}

// Default returns every section's defaults.
func Default() File {
	return File{
		Login:   login.DefaultConfig(),
		Guard:   sidecar.DefaultConfig(),
		LB:      lb.DefaultConfig(),
		Fleet:   fleet.DefaultConfig(),
		Up:      Up{BackendListen: "127.0.0.1:9000", BackendLatency: 20 * time.Millisecond},
		Tracing: tracing.DefaultConfig(),
	}
}

// ForUp returns the defaults of `spillway up`, a system whose clients all
// share this machine's address: the per-client attempt limit is raised
// (2500 a second, bursts of 5000) so that the dashboard's load button, one
// client at up to 2000 logins a second, is not refused. A file decoded
// onto it can set another.
func ForUp() File {
	f := Default()
	f.Login.RateLimit.PerSecond, f.Login.RateLimit.Burst = 2500, 5000
	return f
}

// Load reads path and decodes it strictly onto def: absent sections and
// fields keep def's values. An empty path returns def. Flags are applied
// to the result, then Resolve and Validate.
func Load(path string, def File) (File, error) {
	if path == "" {
		return def, nil
	}
	data, err := strictyaml.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	f := def
	if err := strictyaml.Decode(data, &f); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Resolve fills, in every section, the fields whose default derives from
// another field. It is idempotent.
func (f *File) Resolve() {
	f.Login.Resolve()
	f.Guard.Resolve()
	f.LB.Resolve()
	f.Fleet.Resolve()
}

// Validate validates every section and reports every problem at once,
// each a *field.Error whose path starts with its section: `lb.instances[2].
// health: "x:y": port must be a number from 0 to 65535`. Resolve first.
func (f *File) Validate() error {
	return errors.Join(
		field.Prefix("login", f.Login.Validate()),
		field.Prefix("guard", f.Guard.Validate()),
		field.Prefix("lb", f.LB.Validate()),
		field.Prefix("fleet", f.Fleet.Validate()),
		field.Prefix("fleet_admin", f.FleetAdmin.Validate()),
		field.Prefix("up", f.Up.Validate()),
		field.Prefix("tracing", f.Tracing.Validate()),
	)
}

// Validate reports every problem in the up section.
func (u *Up) Validate() error {
	if u.BackendURL != "" {
		return field.HTTPURL("backend_url", u.BackendURL)
	}
	var errs []error
	if _, _, err := net.SplitHostPort(u.BackendListen); err != nil {
		errs = append(errs, field.New("backend_listen", u.BackendListen, "not a host:port"))
	}
	if err := backendsim.CheckLatency(u.BackendLatency); err != nil {
		errs = append(errs, field.New("backend_latency", u.BackendLatency, err.Error()))
	}
	return errors.Join(errs...)
}

// Marshal returns the file as YAML, every field written out.
func (f File) Marshal() ([]byte, error) { return yaml.Marshal(f) }

// Backlog2018 is the 2018 instances' admission queue timeout: in effect
// none, as the 2018 service's worker pool held a request until a worker
// took it or the caller gave up (docs/DRILL.md).
const Backlog2018 = time.Minute

// Apply2018 turns f into the 2018 incident's configuration, and changes
// nothing else: every setting of the incident, none of spillway's.
//
//   - login: health on the service port, behind the admission limit
//     (shared_port), and deep (/livez and /readyz call the backend); calls
//     to the backend wait five times as long; a backlog that holds a login
//     until it is served (queue timeout Backlog2018).
//   - lb: an HTTP check of the service port, no dependency reports (so no
//     shedding votes and no edge capacity bound), no panic threshold, no
//     slow start, no shedding, no stall detection.
//   - fleet: replace on the traffic check (on the service port, which the
//     load balancer is told is the instance's health address), with no
//     replacement budget and no freeze; two failed checks (the load
//     balancer's three) make it act no later than the load balancer, as
//     the 2018 group terminated every instance the load balancer took out.
func (f *File) Apply2018() {
	f.Login.Health.SharedPort = true
	f.Login.Health.Deep = true
	f.Login.Backend.Timeout *= 5
	f.Login.Admission.QueueTimeout = Backlog2018

	f.LB.HealthCheck.ReportPath = ""
	f.LB.Panic.Threshold = 0
	f.LB.SlowStart.Window = 0
	f.LB.Shedding.Quorum = 0
	f.LB.Shedding.Stall.Factor = 0

	f.Fleet.ReplaceOn = fleet.ReplaceOnTraffic
	f.Fleet.Check.Traffic = fleet.ProbeConfig{Path: "/readyz", Port: fleet.PortService}
	f.Fleet.Check.Liveness = fleet.ProbeConfig{Path: "/livez", Port: fleet.PortService}
	f.Fleet.Budget.Max = fleet.Count(0)
	f.Fleet.Freeze.Share = 0
	f.Fleet.Check.UnhealthyThreshold = 2
}
