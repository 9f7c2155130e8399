package backendsim

import "sync"

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
			Valid:      row[outValid],
			Invalid:    row[outInvalid],
			OK:         row[outOK],
			BadRequest: row[outBadRequest],
			NotFound:   row[outNotFound],
			Hung:       row[outHung],
			Error:      row[outError],
			Dropped:    row[outDropped],
			Slow:       row[outSlow],
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
	return st
}

// ResetStats returns the request counts and zeroes them, in one step, so no
// request is lost between reading and resetting.
func (s *Sim) ResetStats() Stats {
	st := s.stats.snapshot(true)
	st.InFlight = s.inFlight.Load()
	s.logger.Info("stats reset", "total", st.Total)
	return st
}
