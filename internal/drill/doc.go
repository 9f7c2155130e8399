// Package drill replays the 2018 incident end to end and measures it: it
// runs the real system on loopback as separate processes (a backend-sim
// and a `spillway up`, whose children are the login instances), drives it
// with an open-loop load, follows a Scenario (load changes, backend
// outages, instance kills) and writes a report: timeline.json,
// summary.json, report.md and a chart. Each Profile configures the same
// binaries: the incident's settings, or spillway's defaults.
//
// Run is the entry point; it owns every goroutine and process it starts
// and stops them all before it returns, also when its context is canceled.
// On Linux its children also die with it if it is killed. Scenario,
// Report and the other types are plain values, safe to read concurrently
// once built; nothing needs closing.
package drill
