// Package sidecar is `spillway guard`: an egress reverse proxy in front of
// one dependency that gives a service in any language spillway's guard
// (deadline, circuit breaker, bulkhead, recovery probe; package guard) and
// the instance contract's health port (package health, docs/CONTRACT.md).
//
// The service calls http://LISTEN/PATH instead of UPSTREAM/PATH. Each
// request is forwarded through the guard, transparently: method, path
// (joined to the upstream URL's path), query, headers and body go as they
// came (hop-by-hop headers aside; Host becomes the upstream's; no
// X-Forwarded-* is added), and the upstream's answer comes back as it is,
// streamed. The guard's timeout bounds the whole exchange, response body
// included. A transport error, a timeout or a 5xx answer counts as a
// failure for the breaker (the 5xx itself is passed on); a 1xx-4xx answer
// is a success. When the call is not made or fails before the upstream
// answered, the sidecar answers itself, with health.ReasonHeader and
// Retry-After: 503 {"error":"overloaded"} when the bulkhead is full,
// 503 {"error":"dependency_unavailable"} otherwise (breaker open, timeout,
// connection refused...). A client that goes away is not a failure.
//
// The health port serves /livez, /readyz, /health (the dependency named
// Config.Name) and /metrics. A dependency outage never fails /readyz. With
// Config.ServiceReady.URL set, the service's own readiness endpoint is
// polled and merged in as a health readiness gate: until it has answered
// 2xx, and whenever its last check failed, /readyz answers 503 and the
// report says "ready": false.
//
// Build a Sidecar with New from a Config (a copy is resolved and
// validated) and call Run once; Run owns every goroutine (the guard's
// probe loop, the readiness poller, both servers) and returns when its
// context is done and shutdown has finished: /readyz fails and the report
// says draining at once, the proxy keeps serving for Config.DrainDelay
// (answers carry Connection: close), then its listener closes and calls
// in flight get Config.ShutdownTimeout to finish, then the health server
// stops. Handler is safe for concurrent use.
package sidecar
