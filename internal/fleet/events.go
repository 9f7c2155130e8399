package fleet

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EventKind names what happened.
type EventKind string

// The event kinds.
const (
	EventStarted         EventKind = "started"          // a process was started
	EventReady           EventKind = "ready"            // its traffic check passed for the first time
	EventReplaced        EventKind = "replaced"         // it is being stopped for a successor; Reason says why
	EventCrashed         EventKind = "crashed"          // its process exited unasked; Detail has the exit status
	EventFrozen          EventKind = "frozen"           // correlated failures: replacement stopped
	EventUnfrozen        EventKind = "unfrozen"         // failures cleared: replacement resumed
	EventBudgetExhausted EventKind = "budget_exhausted" // an unhealthy instance is kept: no budget left
	EventScaled          EventKind = "scaled"           // the schedule changed the number of instances kept; Detail says why
)

// Replacement reasons, in Event.Reason and the replacements metric's
// "reason" label.
const (
	ReasonLiveness = "liveness"        // its liveness check failed its threshold
	ReasonTraffic  = "traffic"         // its traffic check failed its threshold (replace_on: traffic)
	ReasonRolling  = "rolling_restart" // a rolling restart replaced it
	// ReasonScaleDown is why an instance is stopped when a schedule window
	// closes (not a replacement: it has no successor).
	ReasonScaleDown = "scale_down"
)

// EventCapacity is the number of recent events a Fleet keeps.
const EventCapacity = 256

// Event is one entry of the fleet's recent history.
type Event struct {
	// Seq numbers events from 1 in the order they happened, so a poller can
	// ask for what it has not seen.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	// Instance is the instance's ID; empty for fleet-wide events.
	Instance string `json:"instance,omitempty"`
	// PID is the instance's process ID, when Instance is set.
	PID int `json:"pid,omitempty"`
	// Reason is the replacement reason of EventReplaced.
	Reason string `json:"reason,omitempty"`
	// Detail is human-readable context: the successor's ID, an exit status,
	// failure counts.
	Detail string `json:"detail,omitempty"`
}

// ring is a bounded buffer of the latest events. Not safe for concurrent use.
type ring struct {
	buf  []Event
	next int // index of the slot to write next once full
	seq  uint64
}

func (r *ring) add(e Event) {
	r.seq++
	e.Seq = r.seq
	if len(r.buf) < EventCapacity {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % EventCapacity
}

// since returns the events with Seq > after, oldest first.
func (r *ring) since(after uint64) []Event {
	out := make([]Event, 0, len(r.buf))
	for i := range r.buf {
		e := r.buf[(r.next+i)%len(r.buf)]
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

// metrics are the fleet's Prometheus metrics. They exist, unregistered,
// without a Registerer.
type metrics struct {
	instances    prometheus.Gauge
	replacements *prometheus.CounterVec
	frozen       prometheus.Gauge
	restarts     prometheus.Counter
	target       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		instances: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_fleet_instances",
			Help: "Instances the fleet announces: started and not being stopped.",
		}),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_fleet_replacements_total",
			Help: "Instances replaced by a successor, by reason (liveness, traffic, rolling_restart).",
		}, []string{"reason"}),
		frozen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_fleet_frozen",
			Help: "1 while correlated failures freeze health-based replacement, else 0.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_fleet_restarts_total",
			Help: "Processes started again after their predecessor exited unasked.",
		}),
		target: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_fleet_target_instances",
			Help: "Instances the fleet keeps: fleet.size, or more while a fleet.schedule window is open.",
		}),
	}
	for _, r := range []string{ReasonLiveness, ReasonTraffic, ReasonRolling} {
		m.replacements.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.instances, m.replacements, m.frozen, m.restarts, m.target} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
