package dashboard

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// fakeSystem stands in for `spillway up`'s LB, fleet, backend-sim and load
// generator: documents shaped like theirs, and state that follows the
// controls the way the real system does (the backend hangs → instances
// report it down → the edge sheds; it comes back → a recovery ramp → ok),
// on a compressed timescale. Its series is synthesised from the same
// state, with an earlier incident so the chart has a history.
type fakeSystem struct {
	mu       sync.Mutex
	now      func() time.Time
	start    time.Time
	spans    []modeSpan // backend modes, oldest first
	override string     // shedding override of "backend"
	origin   string     // the LB the override came from ("local": this one)
	overAt   time.Time
	etcdLost time.Time // zero while etcd answers
	drained  map[string]bool
	// reportErr: instances whose report the LB cannot use, with the
	// LB's report_error for them.
	reportErr map[string]map[string]any
	events    []Event
	calls     []string
	lastEdge  string
	load      struct {
		running bool
		rps     float64
		ends    time.Time
	}
}

type modeSpan struct {
	from time.Time
	mode string
}

// Timings of the fake, compressed from the real defaults.
const (
	fakeDownAfter  = 800 * time.Millisecond  // the guard's breaker opens
	fakeShedAfter  = 1200 * time.Millisecond // the LB's quorum sees it
	fakeProbeAfter = 500 * time.Millisecond  // the recovery probe succeeds
	fakeRamp       = 4 * time.Second         // the edge's recovery window
)

var fakeIDs = []string{"127.0.0.1:41001", "127.0.0.1:41002", "127.0.0.1:41003"}

func newFakeSystem(now func() time.Time) *fakeSystem {
	if now == nil {
		now = time.Now
	}
	t0 := now()
	f := &fakeSystem{now: now, start: t0, override: "auto", drained: map[string]bool{}, lastEdge: "ok"}
	// History: up for ten minutes, with a 40-second outage at −4 min.
	f.spans = []modeSpan{{t0.Add(-10 * time.Minute), "up"}, {t0.Add(-230 * time.Second), "hang"}, {t0.Add(-190 * time.Second), "up"}}
	for i := range fakeIDs {
		f.events = append(f.events, Event{t0.Add(-6*time.Minute + time.Duration(i)*time.Second), "ready", fmt.Sprintf("login-%d passed its first readiness check", i+1)})
	}
	f.events = append(f.events,
		Event{t0.Add(-230 * time.Second), "backend_hang", "backend-sim switched to hang"},
		Event{t0.Add(-229 * time.Second), "shedding_on", "backend: 3 of 3 ready instances report it down; answering 503 at the edge"},
		Event{t0.Add(-190 * time.Second), "backend_up", "backend-sim switched to up"},
		Event{t0.Add(-189 * time.Second), "shedding_recovering", "backend: back; ramping the admitted share over 4s"},
		Event{t0.Add(-185 * time.Second), "shedding_off", "backend: recovered; every request admitted"},
	)
	return f
}

// phase is the system's state at t: whether instances see the backend
// down, the edge's shedding state and admitted share.
type phase struct {
	down     bool
	edge     string
	admitted float64
	mode     string
	stuck    bool // requests hang on the backend (down, not yet shed)
}

func (f *fakeSystem) phaseLocked(t time.Time, override string) phase {
	i := len(f.spans) - 1
	for i > 0 && f.spans[i].from.After(t) {
		i--
	}
	cur := f.spans[i]
	since := t.Sub(cur.from)
	p := phase{edge: "ok", admitted: 1, mode: cur.mode}
	switch {
	case cur.mode != "up":
		p.down = since >= fakeDownAfter
		p.stuck = cur.mode == "hang" && since < fakeShedAfter
		if since >= fakeShedAfter {
			p.edge, p.admitted = "shedding", 0
		}
	case i > 0 && f.spans[i-1].mode != "up":
		// Back from an outage that lasted long enough to shed.
		prev := f.spans[i-1]
		if cur.from.Sub(prev.from) >= fakeShedAfter {
			switch {
			case since < fakeProbeAfter:
				p.down, p.edge, p.admitted = true, "shedding", 0
			case since < fakeProbeAfter+fakeRamp:
				p.edge = "recovering"
				p.admitted = float64(since-fakeProbeAfter) / float64(fakeRamp)
			}
		}
	}
	switch override {
	case "on":
		p.edge, p.admitted = "shedding", 0
	case "off":
		p.edge, p.admitted = "ok", 1
	}
	return p
}

// tickLocked turns edge changes into events, as the LB logs them.
func (f *fakeSystem) tickLocked(now time.Time) phase {
	p := f.phaseLocked(now, f.override)
	if p.edge != f.lastEdge {
		msg := map[string]string{
			"shedding":   "backend: 3 of 3 ready instances report it down; answering 503 at the edge",
			"recovering": "backend: back; ramping the admitted share over 4s",
			"ok":         "backend: recovered; every request admitted",
		}[p.edge]
		kind := map[string]string{"shedding": "shedding_on", "recovering": "shedding_recovering", "ok": "shedding_off"}[p.edge]
		f.events = append(f.events, Event{now, kind, msg})
		f.lastEdge = p.edge
	}
	if f.load.running && now.After(f.load.ends) {
		f.load.running = false
	}
	return p
}

func (f *fakeSystem) LB() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	p := f.tickLocked(now)
	depState, breaker := "up", "closed"
	if p.down {
		depState, breaker = "down", "open"
	}
	insts := make([]map[string]any, len(fakeIDs))
	routable, members, edgeInFlight := 0, 0, 0
	for i, id := range fakeIDs {
		state, weight := "healthy", 1.0
		var slowEnd any
		if i == 2 { // the newest instance is still warming up to full weight
			ramp := now.Sub(f.start).Seconds() / 30
			if ramp < 1 {
				weight = 0.35 + 0.65*ramp
				slowEnd = f.start.Add(30 * time.Second)
			}
		}
		if f.drained[id] {
			state, weight = "drained", 0
		} else {
			routable++
			members++
		}
		inFlight := 2 + (i+int(now.Unix()))%3
		if p.stuck {
			inFlight = 40 + 7*i
		}
		if state == "drained" || p.edge == "shedding" {
			inFlight = 0
		}
		edgeInFlight += inFlight
		insts[i] = map[string]any{
			"id": id, "state": state, "routable": state == "healthy", "candidate": state == "healthy",
			"weight": weight, "in_flight": inFlight, "slow_start_end": slowEnd,
			"last_check": "pass", "last_check_at": now.Add(-200 * time.Millisecond),
			"health_since": f.start.Add(-6*time.Minute + time.Duration(i)*time.Second),
			"ejections":    0, "consecutive_gateway_failures": 0,
			"report": map[string]any{
				"ready": true, "draining": false, "phase": "ready", "in_flight": inFlight, "limit": 64, "queue": 0,
				"dependencies": map[string]any{"backend": map[string]any{"state": depState, "breaker": breaker, "since": f.spans[len(f.spans)-1].from}},
			},
			"report_at": now.Add(-300 * time.Millisecond),
			"added":     f.start.Add(-6 * time.Minute),
			"health":    fmt.Sprintf("127.0.0.1:%d", 42001+i),
		}
		if e, ok := f.reportErr[id]; ok {
			delete(insts[i], "report")
			delete(insts[i], "report_at")
			insts[i]["report_error"] = e
		}
	}
	down := 0
	if p.down {
		down = members
	}
	return map[string]any{
		"time": now, "panic": false,
		"routing":   map[string]any{"instances": len(fakeIDs), "members": members, "routable": routable, "ejected": 0, "candidates": routable},
		"capacity":  map[string]any{"bounded": true, "limit": 64 * members, "in_flight": edgeInFlight, "queue": 0, "share": 0.5, "peers": 2},
		"discovery": f.discoveryLocked(now),
		"shared":    map[string]any{"store": "etcd", "self": "lb-a", "connected": f.etcdLost.IsZero(), "pending": 0},
		"instances": insts,
		"dependencies": []map[string]any{{
			"name": "backend", "state": p.edge, "override": f.override, "admitted_share": p.admitted,
			"down": down, "ready": members, "flaps": 0,
			"override_origin": f.origin, "override_at": f.overAt,
		}},
	}
}

// discoveryLocked is the LB's discovery block: etcd, answering or not.
func (f *fakeSystem) discoveryLocked(now time.Time) map[string]any {
	d := map[string]any{"source": "etcd", "connected": f.etcdLost.IsZero(), "last_sync": now.Add(-400 * time.Millisecond)}
	if !f.etcdLost.IsZero() {
		d["last_sync"], d["unreachable_since"] = f.etcdLost.Add(-time.Second), f.etcdLost
	}
	return d
}

// breakReport makes the LB find id's report unusable for reason.
func (f *fakeSystem) breakReport(id, reason, detail string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reportErr == nil {
		f.reportErr = map[string]map[string]any{}
	}
	f.reportErr[id] = map[string]any{"reason": reason, "detail": detail, "since": f.now().Add(-90 * time.Second), "count": 45}
}

// overrideFrom sets the override as another LB would, through etcd.
func (f *fakeSystem) overrideFrom(origin, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override, f.origin, f.overAt = mode, origin, f.now()
}

// loseEtcd makes etcd unreachable from the LB.
func (f *fakeSystem) loseEtcd() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.etcdLost = f.now()
}

func (f *fakeSystem) Fleet() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	insts := make([]map[string]any, len(fakeIDs))
	for i, id := range fakeIDs {
		insts[i] = map[string]any{
			"id": fmt.Sprintf("login-%d", i+1), "slot": i, "pid": 31337 + i, "service": id,
			"health": fmt.Sprintf("127.0.0.1:%d", 42001+i), "state": "running", "restarts": 0,
			"started_at": f.start.Add(-6 * time.Minute),
			"last_check": map[string]any{"ok": true, "status": 200, "failures": 0},
		}
	}
	return map[string]any{"frozen": false, "instances": insts}
}

func (f *fakeSystem) Backend() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]any{"mode": f.spans[len(f.spans)-1].mode}
}

func (f *fakeSystem) Load() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tickLocked(f.now())
	return map[string]any{"running": f.load.running, "rps": f.load.rps, "ends": f.load.ends}
}

func (f *fakeSystem) Events() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tickLocked(f.now())
	return slices.Clone(f.events)
}

// Series synthesises n seconds of timeline from the phases: a steady 120
// requests/s of which 5% are 401s while all is well; timeouts at the
// guard's deadline while requests hang; fast 503s while shedding.
func (f *fakeSystem) Series(n int) []timeline.Point {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().Truncate(time.Second)
	out := make([]timeline.Point, 0, n)
	for s := now.Add(-time.Duration(n) * time.Second); s.Before(now); s = s.Add(time.Second) {
		p := f.phaseLocked(s.Add(500*time.Millisecond), "auto")
		rate := 120 + 8*math.Sin(float64(s.Unix())/7) + 4*math.Sin(float64(s.Unix())/2.3)
		c := map[string]uint64{}
		for _, o := range health.Outcomes {
			c[o.String()] = 0
		}
		pt := timeline.Point{Time: s.UTC(), Counts: c}
		switch {
		case p.stuck:
			c["failed"] = uint64(rate * 0.3)
			c["client_timeout"] = uint64(rate * 0.2)
			c["overloaded"] = uint64(rate * 0.4)
			pt.FailedP50Ms, pt.FailedP99Ms = 900, 2000
		case p.edge == "shedding":
			c["shed"] = uint64(rate)
			pt.FailedP50Ms, pt.FailedP99Ms = 0.3, 0.9
		default:
			adm := p.admitted
			c["ok"] = uint64(rate * 0.95 * adm)
			c["client_error"] = uint64(rate * 0.05 * adm)
			c["shed"] = uint64(rate * (1 - adm))
			pt.OKP50Ms, pt.OKP99Ms = 12, 38+6*math.Sin(float64(s.Unix())/5)
			pt.FailedP50Ms, pt.FailedP99Ms = 10, 30
		}
		for _, v := range c {
			pt.Total += v
		}
		out = append(out, pt)
	}
	return out
}

func (f *fakeSystem) record(call string) {
	f.calls = append(f.calls, call)
}

// Calls returns the controls called so far, as "name(args)".
func (f *fakeSystem) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeSystem) Controls() Controls {
	return Controls{
		SetBackendMode: func(_ context.Context, mode string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("backend(" + mode + ")")
			switch mode {
			case "up", "hang", "down", "error", "slow":
			default:
				return fmt.Errorf("backend-sim: mode %q: unknown", mode)
			}
			now := f.now()
			f.spans = append(f.spans, modeSpan{now, mode})
			f.events = append(f.events, Event{now, "backend_" + mode, "backend-sim switched to " + mode})
			return nil
		},
		SetShedding: func(_ context.Context, dep, mode string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("shedding(" + dep + "," + mode + ")")
			if dep != "backend" {
				return fmt.Errorf("dependency %q: unknown", dep)
			}
			f.override, f.origin, f.overAt = mode, "lb-a", f.now()
			if mode == "auto" {
				f.origin, f.overAt = "", time.Time{}
			}
			f.events = append(f.events, Event{f.now(), "shedding_override", "backend: override set to " + mode})
			return nil
		},
		Drain: func(_ context.Context, id string, drain bool) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record(fmt.Sprintf("drain(%s,%t)", id, drain))
			if !slices.Contains(fakeIDs, id) {
				return fmt.Errorf("instance %q: unknown", id)
			}
			f.drained[id] = drain
			kind := "drained"
			if !drain {
				kind = "undrained"
			}
			f.events = append(f.events, Event{f.now(), kind, id + " " + kind + " by an operator"})
			return nil
		},
		RollingRestart: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("restart()")
			f.events = append(f.events, Event{f.now(), "rolling_restart", "rolling restart of 3 instances started"})
			return nil
		},
		StartLoad: func(_ context.Context, rps float64, secs int) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record(fmt.Sprintf("load(%g,%d)", rps, secs))
			f.load.running, f.load.rps, f.load.ends = true, rps, f.now().Add(time.Duration(secs)*time.Second)
			return nil
		},
		StopLoad: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("stop()")
			f.load.running = false
			return nil
		},
	}
}

func (f *fakeSystem) Sources() Sources {
	return Sources{LB: f.LB, Fleet: f.Fleet, Events: f.Events, Series: f.Series, Backend: f.Backend, Load: f.Load}
}
