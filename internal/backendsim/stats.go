package backendsim

import (
	"sync"
	"time"
)

// Path keys of Stats.Paths. Every path other than the first two, and other
// than /control and /stats (which are not counted), is counted under
// PathOther.
const (
	PathValidate = "/v1/validate"
	PathHealthz  = "/healthz"
	PathOther    = "other"
)

// Stats are request counts since start or the last reset.
type Stats struct {
	// Paths holds PathValidate, PathHealthz and PathOther, always all three.
	Paths map[string]Outcomes `json:"paths"`
	// Total is the number of requests counted, the sum over Paths.
	Total uint64 `json:"total"`
	// InFlight is the number of requests being handled now, waiting or
	// hanging ones included. A reset leaves it alone.
	InFlight int64 `json:"in_flight"`
	// Pool is the worker pool of the validate path (see Config.Capacity).
	Pool PoolStats `json:"pool"`
}

// PoolStats describes the worker pool of the validate path. It is kept
// whatever the capacity, so with no limit it shows the backend's natural
// concurrency.
type PoolStats struct {
	// Busy is the number of validate calls that hold a worker now, Queued
	// the number waiting for one. A reset leaves both alone.
	Busy   int `json:"busy"`
	Queued int `json:"queued"`
	// PeakBusy and PeakQueued are the highest Busy and Queued since start
	// or the last reset.
	PeakBusy   int `json:"peak_busy"`
	PeakQueued int `json:"peak_queued"`
	// Seconds are the seconds of the wall clock since start or the last
	// reset, at most the last SecondsKept of them, oldest first. The last
	// is the current second, still running.
	Seconds []Second `json:"seconds"`
}

// Second is one second of the worker pool. Over any span,
// Arrived = Started + QueueFull + QueueTimeout + Abandoned + the change
// in Queued.
type Second struct {
	// Start is the second's beginning, in UTC.
	Start time.Time `json:"start"`
	// PeakBusy and PeakQueued are the highest number of busy workers and
	// of waiting calls at any moment of the second.
	PeakBusy   int `json:"peak_busy"`
	PeakQueued int `json:"peak_queued"`
	// Arrived counts the calls that asked for a worker, Started those a
	// worker took (at once or from the queue).
	Arrived uint64 `json:"arrived"`
	Started uint64 `json:"started"`
	// QueueFull counts the calls turned away at once because the queue
	// was full, QueueTimeout those that waited Config.QueueTimeout in
	// vain, Abandoned those that left the queue because their caller gave
	// up or the Sim was closed.
	QueueFull    uint64 `json:"queue_full"`
	QueueTimeout uint64 `json:"queue_timeout"`
	Abandoned    uint64 `json:"abandoned"`
}

// Outcomes counts one path's requests by outcome. Each request is counted
// once, on arrival, under the outcome the mode and the request decide.
type Outcomes struct {
	Valid      uint64 `json:"valid"`       // mode up: a valid ticket
	Invalid    uint64 `json:"invalid"`     // mode up: an invalid ticket
	OK         uint64 `json:"ok"`          // mode up: a health check answered
	BadRequest uint64 `json:"bad_request"` // malformed body (400), too large (413) or wrong method (405)
	NotFound   uint64 `json:"not_found"`   // mode up: an unknown path
	Hung       uint64 `json:"hung"`        // mode hang
	Error      uint64 `json:"error"`       // mode error: answered 500
	Dropped    uint64 `json:"dropped"`     // mode down: connection closed unanswered
	Slow       uint64 `json:"slow"`        // mode slow, whatever the answer
	// The validate path's capacity model (see Config.Capacity); a call
	// that gets a worker is counted under the outcome its work has.
	QueueFull    uint64 `json:"queue_full"`    // every worker busy and the queue full: answered 503 at once
	QueueTimeout uint64 `json:"queue_timeout"` // waited Config.QueueTimeout for a worker: answered 503
	Abandoned    uint64 `json:"abandoned"`     // left the queue: its caller gave up, or Close answered it 503
}

// outcome indexes counters; it matches the fields of Outcomes.
type outcome int

const (
	outValid outcome = iota
	outInvalid
	outOK
	outBadRequest
	outNotFound
	outHung
	outError
	outDropped
	outSlow
	outQueueFull
	outQueueTimeout
	outAbandoned
	numOutcomes
)

type pathIndex int

const (
	pathValidate pathIndex = iota
	pathHealthz
	pathOther
	numPaths
)

var pathKeys = [numPaths]string{PathValidate, PathHealthz, PathOther}

func pathIndexOf(p string) pathIndex {
	switch p {
	case PathValidate:
		return pathValidate
	case PathHealthz:
		return pathHealthz
	}
	return pathOther
}

// counters is a fixed table of counts: bounded whatever clients send.
type counters struct {
	mu sync.Mutex
	n  [numPaths][numOutcomes]uint64
}

func (c *counters) add(p pathIndex, o outcome) {
	c.mu.Lock()
	c.n[p][o]++
	c.mu.Unlock()
}

// snapshot returns the counts, and zeroes them if reset is set, in one step.
func (c *counters) snapshot(reset bool) Stats {
	c.mu.Lock()
	n := c.n
	if reset {
		c.n = [numPaths][numOutcomes]uint64{}
	}
	c.mu.Unlock()

	st := Stats{Paths: make(map[string]Outcomes, numPaths)}
	for p, row := range n {
		st.Paths[pathKeys[p]] = Outcomes{
			Valid:        row[outValid],
			Invalid:      row[outInvalid],
			OK:           row[outOK],
			BadRequest:   row[outBadRequest],
			NotFound:     row[outNotFound],
			Hung:         row[outHung],
			Error:        row[outError],
			Dropped:      row[outDropped],
			Slow:         row[outSlow],
			QueueFull:    row[outQueueFull],
			QueueTimeout: row[outQueueTimeout],
			Abandoned:    row[outAbandoned],
		}
		for _, v := range row {
			st.Total += v
		}
	}
	return st
}

// Stats returns the request counts.
func (s *Sim) Stats() Stats {
	st := s.stats.snapshot(false)
	st.InFlight = s.inFlight.Load()
	st.Pool = s.pool.snapshot(false)
	return st
}

// ResetStats returns the request counts and zeroes them, in one step, so no
// request is lost between reading and resetting; likewise the pool's peaks
// and seconds, which start again from the current levels.
func (s *Sim) ResetStats() Stats {
	st := s.stats.snapshot(true)
	st.InFlight = s.inFlight.Load()
	st.Pool = s.pool.snapshot(true)
	s.logger.Info("stats reset", "total", st.Total)
	return st
}
