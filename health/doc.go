// Package health serves an instance's own health on a port of its own, so
// that it stays responsive whatever the business load: GET /livez (is the
// process alive?), GET /readyz (should it get traffic now?), GET /health (a
// JSON Report of readiness, load and each dependency's state) and GET
// /metrics (Prometheus).
//
// Contract:
//
//   - Build a Server with New; the zero Server is not usable. All its
//     methods are safe for concurrent use, including registering
//     dependencies and checks while it serves.
//   - /livez answers 200 "ok" unless a liveness check registered with
//     AddLivenessCheck fails (503). By default it does no I/O, calls no
//     dependency and takes no lock that business code can hold.
//   - /readyz answers 503 while starting (before Start), while warming up
//     (for Options.Warmup after Start), while a readiness gate
//     (AddReadinessGate: readiness the process does not own, such as a
//     sidecar's service's) is closed, and for good once Drain is called;
//     200 otherwise.
//   - Dependency state is reported in /health only. It never changes
//     /livez or /readyz: a dependency outage is not an instance failure.
//   - /health always answers 200 with Content-Type application/json: it is
//     a report whose content the load balancer reads, not a verdict. A
//     request whose Accept prefers application/health+json gets the same
//     report as an IETF health-check document (MarshalIETF); responses
//     carry Vary: Accept.
//     /health?version=V&wait=D is a long poll: it answers as soon as the
//     report's Version differs from V (the phase, Ready or a dependency's state
//     changed; Notify wakes it at once, else it re-reads every 100 ms), or
//     after D (at most MaxWait, 30 s) with the current report. A bad wait
//     is a 400. At most 64 requests wait at once; past that a long poll
//     is answered at once.
//   - /metrics serves Options.Gatherer, or 404 when it is nil.
//   - GET and HEAD work on every endpoint; any other method gets 405 with an
//     Allow header. Responses carry no secrets: failing checks are named,
//     their errors go to the log only.
//   - Serve runs its own http.Server on the listener it is given until its
//     context is done, then shuts down and returns nil. It owns and closes
//     the listener. Handler returns the same endpoints for mounting on
//     another server; do that only to reproduce the 2018 incident.
//
// The package is also the home of the instance's wire contract: Report,
// the /health document the load balancer reads, with DecodeReport and
// ReadReport, the one decoder of an instance's report in spillway's
// format, the IETF health-check draft's or Spring Boot Actuator's, which
// says why a report is unusable as a *ReportError with a stable Reason
// (safe for concurrent use; they keep no state); and the answer reasons
// (ReasonHeader and the Reason codes) that mark a deliberate 502, 503 or
// 504 as not a failure, with the one rule that counts answers by them
// (Classify, Outcome), which the load generator, the drill and the
// dashboard share.
//
// Options.Deep is the 2018 incident's configuration, kept so the drill can
// reproduce it: a deep check of dependencies behind /livez and /readyz. See
// its documentation before setting it; spillway never sets it by default.
package health
