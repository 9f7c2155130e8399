package health

import "time"

// Dependency states reported in Report.Dependencies. They describe the
// dependency as this instance sees it and never change /livez or /readyz.
const (
	DepUp      = "up"      // calls are succeeding (breaker closed)
	DepDown    = "down"    // the breaker is open or half-open: calls fail fast
	DepUnknown = "unknown" // no call or probe has completed yet
)

// MaxReportBytes bounds a /health report: a reader may refuse a larger
// one, and spillway lb does (docs/CONTRACT.md).
const MaxReportBytes = 64 << 10

// Report is the JSON document served at /health. It is the wire contract
// between an instance and the load balancer: the LB decodes it to learn the
// instance's readiness, its concurrency limit and each dependency's state.
// Fields are only ever added, never renamed.
type Report struct {
	// Ready mirrors /readyz: false while warming up, draining or not yet
	// started. It never reflects Options.Deep, which /health does not call.
	Ready bool `json:"ready"`
	// ReadyForSeconds is how long the instance has been ready, in seconds
	// (0 when not ready). A load balancer that meets an instance for the
	// first time (after its own restart, say) uses it to skip the slow
	// start of an instance that is already warm. A duration, not a time,
	// so that clocks need not agree.
	ReadyForSeconds float64 `json:"ready_for_s"`
	// Draining is true once shutdown has begun.
	Draining bool `json:"draining"`
	// Phase is the readiness phase: "starting", "warming", "ready" or
	// "draining" (see Phase).
	Phase string `json:"phase"`
	// InFlight is the number of service requests being handled now.
	InFlight int `json:"in_flight"`
	// Limit is the current concurrency limit of the service's admission
	// control (0 when the service has none).
	Limit int `json:"limit"`
	// Queue is the number of requests waiting for an admission slot.
	Queue int `json:"queue"`
	// Dependencies maps each dependency's name to its state.
	Dependencies map[string]Dependency `json:"dependencies"`
	// Version is an opaque token that changes whenever the readiness
	// phase, Ready or a dependency's state or breaker changes (not with the load
	// figures). A reader that holds a report can long-poll for the next
	// change: GET /health?version=V&wait=D answers as soon as the version
	// differs from V, or after D (at most MaxWait) with the current
	// report. Without both parameters /health answers at once.
	Version string `json:"version"`
}

// Dependency is one dependency's entry in Report.
type Dependency struct {
	// State is DepUp, DepDown or DepUnknown.
	State string `json:"state"`
	// Breaker is the circuit breaker's state: "closed", "open" or
	// "half-open".
	Breaker string `json:"breaker"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// LastError is the most recent failure, if any, as text. It never holds
	// secrets: callers must not put credentials in dependency errors.
	LastError string `json:"last_error,omitempty"`
}
