// Package login is the spillway login service: one instance validates a
// ticket against the backend API through a guard and issues a signed
// session token.
//
// An Instance serves two listeners. The service port answers POST
// /v1/login and GET /v1/session behind a per-client rate limit and
// admission control. The health port is an independent server
// (package health) that stays responsive however busy the service port
// is; the backend's state is reported there in /health and never changes
// /livez or /readyz, unless the 2018 incident settings
// (health.shared_port, health.deep) are switched on for a drill.
//
// Build an Instance with New from a validated Config and call Run once; Run
// owns every goroutine the instance starts and returns when its context is
// done and shutdown has finished.
package login
