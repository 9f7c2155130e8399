package stack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/dashboard"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/lb"
)

// record is the balancer's middleware: it files every answer's outcome
// and latency in the timeline the dashboard charts. Outcomes follow
// health.ClassifyAnswer, the rule the drill's load generator counts by, so
// the dashboard and the drill count alike.
func (s *Stack) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		s.rec.Observe(health.ClassifyAnswer(sw.status, sw.Header(), sw.head), time.Since(start))
	})
}

// statusWriter remembers the status code written through it and, for a
// 5xx whose header names no reason, the start of its body, where the
// reason may be instead. Every answer of spillway's own names it in the
// header, so the body is kept for none of them.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	keep   bool   // keep the body's start in head
	head   []byte // at most health.ReasonBodyBytes
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
		w.keep = code >= 500 && w.Header().Get(health.ReasonHeader) == ""
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	if w.keep && len(w.head) < health.ReasonBodyBytes {
		w.head = append(w.head, p[:min(len(p), health.ReasonBodyBytes-len(w.head))]...)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines) through the wrapper.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Stack) sources() dashboard.Sources {
	src := dashboard.Sources{
		LB:     func() any { return s.balancer.Status() },
		Fleet:  s.fleetStatus,
		Events: s.allEvents,
		Series: s.rec.Series,
		Load:   func() any { return s.load.Status() },
	}
	if s.sim != nil {
		// backendsim.Config has yaml tags only: as JSON its fields would
		// be "Mode", "Latency" (in ns), ... and the page reads "mode".
		src.Backend = func() any {
			c := s.sim.Config()
			return backendState{Mode: string(c.Mode), LatencyMs: ms(c.Latency), SlowLatencyMs: ms(c.SlowLatency)}
		}
	}
	return src
}

// backendState is the in-process backend-sim's state, as the dashboard
// reads it.
type backendState struct {
	Mode          string  `json:"mode"`
	LatencyMs     float64 `json:"latency_ms"`
	SlowLatencyMs float64 `json:"slow_latency_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (s *Stack) controls() dashboard.Controls {
	c := dashboard.Controls{
		SetShedding: func(_ context.Context, dep, mode string) error {
			o, err := lb.ParseOverride(mode)
			if err != nil {
				return &httpapi.Error{Status: http.StatusBadRequest, Code: "bad_mode", Err: err}
			}
			if !lb.ValidDependencyName(dep) {
				return &httpapi.Error{Status: http.StatusBadRequest, Code: "bad_dependency", Detail: "dependency names are 1 to 64 of A-Z a-z 0-9 _ . : / -"}
			}
			_, err = s.balancer.SetShedding(dep, o)
			if err == nil {
				s.events.add("override", fmt.Sprintf("%s: shedding override set to %s by an operator", dep, mode))
			}
			return err
		},
		Drain: func(_ context.Context, id string, drain bool) error {
			err := s.balancer.SetDrained(id, drain)
			if errors.Is(err, lb.ErrUnknownInstance) {
				return &httpapi.Error{Status: http.StatusNotFound, Code: "unknown_instance", Err: err}
			}
			return err
		},
		RollingRestart: func(context.Context) error {
			s.startRollingRestart()
			return nil
		},
		StartLoad: s.load.Start,
		StopLoad:  s.load.Stop,
	}
	if s.sim != nil {
		c.SetBackendMode = func(_ context.Context, mode string) error {
			m, err := backendsim.ParseMode(mode)
			if err != nil {
				return &httpapi.Error{Status: http.StatusBadRequest, Code: "bad_mode", Err: err}
			}
			if err := s.sim.SetMode(m); err != nil {
				return err
			}
			s.events.add("backend_"+string(m), "backend-sim switched to "+string(m))
			return nil
		}
	}
	return c
}

// fleetStatus is the fleet's document for the dashboard: its instances,
// whether replacement is frozen, and the target the schedule sets.
func (s *Stack) fleetStatus() any {
	return map[string]any{"instances": s.fleet.Status(), "frozen": s.fleet.Frozen(), "schedule": s.fleet.Schedule()}
}

// allEvents merges the stack's own events with the fleet's, oldest first.
func (s *Stack) allEvents() []dashboard.Event {
	for _, e := range s.fleet.Events(s.events.fleetSeq()) {
		msg := e.Instance
		if e.Reason != "" {
			msg += " (" + e.Reason + ")"
		}
		if e.Detail != "" {
			msg += ": " + e.Detail
		}
		s.events.addFleet(e.Seq, dashboard.Event{Time: e.Time, Kind: string(e.Kind), Message: strings.TrimSpace(msg)})
	}
	return s.events.list()
}

// eventLog is a bounded, time-ordered list of dashboard events.
type eventLog struct {
	mu       sync.Mutex
	max      int
	events   []dashboard.Event
	lastSeen uint64 // the fleet's last event merged
}

func newEventLog(max int) *eventLog { return &eventLog{max: max} }

func (l *eventLog) add(kind, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.appendLocked(dashboard.Event{Time: time.Now(), Kind: kind, Message: msg})
}

func (l *eventLog) addFleet(seq uint64, e dashboard.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= l.lastSeen {
		return
	}
	l.lastSeen = seq
	l.appendLocked(e)
}

func (l *eventLog) fleetSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeen
}

// appendLocked inserts e in time order (fleet events arrive late) and
// drops the oldest beyond max.
func (l *eventLog) appendLocked(e dashboard.Event) {
	i := len(l.events)
	for i > 0 && l.events[i-1].Time.After(e.Time) {
		i--
	}
	l.events = append(l.events, dashboard.Event{})
	copy(l.events[i+1:], l.events[i:])
	l.events[i] = e
	if len(l.events) > l.max {
		l.events = append(l.events[:0], l.events[len(l.events)-l.max:]...)
	}
}

func (l *eventLog) list() []dashboard.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]dashboard.Event(nil), l.events...)
}
