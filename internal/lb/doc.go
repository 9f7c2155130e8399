// Package lb is spillway's load balancer: its routing policies (active
// health state, passive outlier ejection, slow start, the panic threshold,
// dependency-aware edge shedding, the retry budget, the picker and the edge
// capacity bound, plus Pool, which ties them together per instance) and
// the runtime that drives them (Balancer, FileConfig, Discovery). The
// runtime's seams to other balancers are Peers (the share of the fleet's
// capacity) and Shared (the operators' overrides and drains); package
// registry implements them, and Discovery, over etcd.
//
// The runtime: build a Balancer with New from a FileConfig that has had
// SetDefaults and passes Validate, and call Run once; Run owns every
// goroutine the balancer starts (discovery, one health-check loop per
// instance, the evaluator, the proxy and admin servers) and returns when
// its context is done and they have stopped: it serves the proxy once the
// first health checks are done, and on stop it drains (/readyz 503 while
// the proxy serves on for server.drain_delay), closes the proxy listener
// and gives the requests in flight server.shutdown_timeout (lifecycle.go);
// Hurry shortens a stop. Nothing else needs closing. Balancer's exported
// methods are safe for concurrent use.
//
// Another data plane: with Options.DataPlane the balancer publishes a Plan
// (each instance's server state, slow-start weight and cap, each route's
// admitted share) after every evaluation, and Run may be given no proxy
// listener: the same checks and policies then drive HAProxy (`spillway
// controller`, package controller) instead of the balancer's own proxy
// (plan.go).
//
// The policies: every one is a plain type driven by events and an explicit
// now: none opens a socket, starts a goroutine or reads the clock, and
// randomness is injected (a func() uint64, or a uniform u in [0,1) passed
// per call). The same code runs in the proxy, in tests and in simulations
// (DESIGN.md, principle 2). Each policy is usable and testable on its own.
//
// Files say which layer they hold: healthstate.go is the pure active
// health state (HealthConfig, CheckResult, HealthState), checkloop.go the
// I/O loop that probes one instance and feeds it. Reports are decoded by
// health.ReadReport (spillway's, IETF health+json or Spring Boot's); an
// unusable one is kept per instance by Pool.RecordReportError, which
// decides when to log it (once a minute, or on a new reason), counted by
// reason and shown in Status (docs/LB.md, "Reports it cannot use").
//
// Concurrency: the types used for every request, Picker, Endpoint,
// RetryBudget and Shedder, are safe for concurrent use; their per-request
// methods (Pick, Release, Request, TryRetry, Admit, Blocked) neither lock nor
// allocate. HealthState, OutlierState, SlowStart and Pool are not safe for
// concurrent use: the caller serialises them, normally under the load
// balancer's one mutex. Pool.Evaluate publishes an immutable routing
// snapshot that the per-request types read through atomic pointers.
//
// Policy configuration structs have a DefaultXxx constructor and a Validate
// method; FileConfig is their YAML face. A zero threshold or window disables its policy where the field's
// comment says so (the 2018 configuration of the drill is built that way);
// callers start from the defaults, not from the zero value. Nothing in this
// package needs to be closed, but for a Balancer whose access log
// (AccessLogConfig) writes to a file: New opens it, Run closes it.
package lb
