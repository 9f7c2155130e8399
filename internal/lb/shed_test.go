package lb

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spillway-dev/spillway/health"
)

// reports returns one ready report per entry, each listing deps with
// state "down" for names in the entry and "up" for the others.
func reports(deps []string, down ...[]string) []health.Report {
	var out []health.Report
	for _, d := range down {
		r := health.Report{Ready: true, Dependencies: map[string]health.Dependency{}}
		for _, name := range deps {
			r.Dependencies[name] = health.Dependency{State: health.DepUp}
		}
		for _, name := range d {
			r.Dependencies[name] = health.Dependency{State: health.DepDown}
		}
		out = append(out, r)
	}
	return out
}

var (
	none      = []string(nil)
	backend   = []string{"backend"}
	bothNames = []string{"backend", "mail"}
)

func newShedder(t *testing.T, cfg ShedConfig, routes []Route) *Shedder {
	t.Helper()
	rt, err := NewRouteTable(routes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewShedder(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func state(t *testing.T, s *Shedder, dep string, now time.Time) DependencyStatus {
	t.Helper()
	for _, st := range s.Status(now) {
		if st.Name == dep {
			return st
		}
	}
	t.Fatalf("dependency %q not tracked", dep)
	return DependencyStatus{}
}

func TestShedQuorum(t *testing.T) {
	tests := []struct {
		name  string
		votes []health.Report
		want  ShedState
	}{
		{"all up", reports(bothNames, none, none, none, none), ShedOK},
		{"1 of 4 down", reports(bothNames, backend, none, none, none), ShedOK},
		{"2 of 4 down is a quorum", reports(bothNames, backend, backend, none, none), ShedShedding},
		{"1 of 2 down is a quorum", reports(bothNames, backend, none), ShedShedding},
		{"1 of 3 down", reports(bothNames, backend, none, none), ShedOK},
		{"unknown is not down", []health.Report{{Ready: true, Dependencies: map[string]health.Dependency{"backend": {State: health.DepUnknown}}}}, ShedOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newShedder(t, DefaultShedConfig(), nil)
			s.Update(t0, tt.votes)
			st := state(t, s, "backend", t0)
			if st.State != tt.want {
				t.Fatalf("state = %v, want %v (down %d/%d)", st.State, tt.want, st.Down, st.Ready)
			}
			if got := s.Admit("backend", t0, 0); got != (tt.want == ShedOK) {
				t.Fatalf("Admit = %v", got)
			}
			if !s.Admit("mail", t0, 0) || !s.Admit("never-heard-of", t0, 0) {
				t.Fatal("other dependencies must be admitted")
			}
		})
	}
}

// windowShedConfig is DefaultShedConfig with the fixed recovery window.
func windowShedConfig() ShedConfig {
	c := DefaultShedConfig()
	c.Recovery = RecoveryWindow
	return c
}

func TestShedRecoveryRamp(t *testing.T) {
	s := newShedder(t, windowShedConfig(), nil) // 5s ramp
	down := reports(bothNames, backend, backend, backend)
	up := reports(bothNames, none, none, none)

	s.Update(t0, down)
	s.Update(at(20*time.Second), up) // backend is back at t0+20s
	ramp := at(20 * time.Second)
	if got := s.next(ramp); !got.Equal(ramp.Add(5 * time.Second)) {
		t.Fatalf("next = %v, want the ramp's end", got)
	}
	tests := []struct {
		after    time.Duration
		u        float64
		admitted bool
		share    float64
		state    ShedState
	}{
		{0, 0, false, 0, ShedRecovering},
		{time.Second, 0.19, true, 0.2, ShedRecovering},
		{time.Second, 0.21, false, 0.2, ShedRecovering},
		{2500 * time.Millisecond, 0.49, true, 0.5, ShedRecovering},
		{2500 * time.Millisecond, 0.51, false, 0.5, ShedRecovering},
		{5 * time.Second, 0.99, true, 1, ShedOK},
	}
	for _, tt := range tests {
		now := ramp.Add(tt.after)
		if got := s.Admit("backend", now, tt.u); got != tt.admitted {
			t.Errorf("+%v u=%v: Admit = %v, want %v", tt.after, tt.u, got, tt.admitted)
		}
		st := state(t, s, "backend", now)
		if st.State != tt.state {
			t.Errorf("+%v: state %v, want %v", tt.after, st.State, tt.state)
		}
		approx(t, "admitted share", st.Admitted, tt.share, 1e-9)
	}
	if st := state(t, s, "backend", at(time.Hour)); !st.Since.Equal(ramp.Add(5 * time.Second)) {
		t.Errorf("ok since %v, want the ramp's end", st.Since)
	}
	// Ramp share follows admitted requests: with uniform u, ~half admitted at mid-ramp.
	r, n := seeded(7), 0
	for range 10000 {
		if s.Admit("backend", ramp.Add(2500*time.Millisecond), float64(r()>>11)/(1<<53)) {
			n++
		}
	}
	approx(t, "admitted at mid-ramp", float64(n)/10000, 0.5, 0.03)
}

func TestShedFlapping(t *testing.T) {
	s := newShedder(t, windowShedConfig(), nil) // 5s, max 40s
	down := reports(bothNames, backend, backend)
	up := reports(bothNames, none, none)
	now := t0
	s.Update(now, down)
	wantWindows := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second}
	for i, w := range wantWindows {
		s.Update(now, up)
		st := state(t, s, "backend", now)
		if st.State != ShedRecovering || st.RecoveryEnd.Sub(now) != w {
			t.Fatalf("recovery %d: %v ending in %v, want a %v ramp", i, st.State, st.RecoveryEnd.Sub(now), w)
		}
		now = now.Add(w / 2)
		s.Update(now, down) // down again mid-ramp: shed at once
		if s.Admit("backend", now, 0) {
			t.Fatalf("recovery %d: re-shedding must be immediate", i)
		}
		if st := state(t, s, "backend", now); st.Flaps != i+1 {
			t.Fatalf("flaps = %d, want %d", st.Flaps, i+1)
		}
	}
	// A completed ramp resets the doubling.
	s.Update(now, up)
	now = now.Add(40 * time.Second)
	s.Update(now, up)
	if st := state(t, s, "backend", now); st.State != ShedOK || st.Flaps != 0 {
		t.Fatalf("after a completed ramp: %v flaps %d", st.State, st.Flaps)
	}
	s.Update(now, down)
	s.Update(now, up)
	if st := state(t, s, "backend", now); st.RecoveryEnd.Sub(now) != 5*time.Second {
		t.Fatalf("ramp after reset: %v", st.RecoveryEnd.Sub(now))
	}
}

func TestShedHoldsWithoutVotes(t *testing.T) {
	s := newShedder(t, DefaultShedConfig(), nil)
	s.Update(t0, reports(bothNames, backend))
	s.Update(at(time.Second), nil) // every instance unready: no information
	if st := state(t, s, "backend", at(time.Second)); st.State != ShedShedding || st.Ready != 0 {
		t.Fatalf("no votes: %v ready %d, want shedding held", st.State, st.Ready)
	}
	s.Update(at(2*time.Second), reports(bothNames, none))
	if st := state(t, s, "backend", at(2*time.Second)); st.State != ShedRecovering {
		t.Fatalf("votes back: %v", st.State)
	}
}

func TestShedOverride(t *testing.T) {
	up := reports(bothNames, none, none)
	down := reports(bothNames, backend, backend)
	type step struct {
		override Override // "" = a vote update instead
		votes    []health.Report
		want     ShedState
		admitted bool // at u=0.99, same instant
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"on sheds a healthy dependency", []step{
			{votes: up, want: ShedOK, admitted: true},
			{override: OverrideOn, want: ShedShedding},
		}},
		{"on then auto ramps back", []step{
			{override: OverrideOn, want: ShedShedding},
			{override: OverrideAuto, want: ShedRecovering},
		}},
		{"off admits a down dependency at once", []step{
			{votes: down, want: ShedShedding},
			{override: OverrideOff, want: ShedOK, admitted: true},
			{votes: down, want: ShedOK, admitted: true},
		}},
		{"off ends a ramp at once", []step{
			{votes: down, want: ShedShedding},
			{votes: up, want: ShedRecovering},
			{override: OverrideOff, want: ShedOK, admitted: true},
		}},
		{"off then auto while down sheds again", []step{
			{override: OverrideOff, want: ShedOK, admitted: true},
			{votes: down, want: ShedOK, admitted: true},
			{override: OverrideAuto, want: ShedShedding},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newShedder(t, windowShedConfig(), nil) // a ramp admits nothing at its start
			s.Update(t0, up)
			for i, st := range tt.steps {
				now := at(time.Duration(i+1) * time.Second)
				if st.override != "" {
					if err := s.SetOverride("backend", st.override, now); err != nil {
						t.Fatal(err)
					}
				} else {
					s.Update(now, st.votes)
				}
				got := state(t, s, "backend", now)
				if got.State != st.want {
					t.Fatalf("step %d: state %v, want %v", i, got.State, st.want)
				}
				if a := s.Admit("backend", now, 0.99); a != st.admitted {
					t.Fatalf("step %d: Admit = %v, want %v", i, a, st.admitted)
				}
			}
		})
	}
}

func TestShedDisabledAndImmediate(t *testing.T) {
	cfg := DefaultShedConfig()
	cfg.Quorum = 0 // the 2018 configuration
	s := newShedder(t, cfg, nil)
	s.Update(t0, reports(bothNames, backend, backend))
	if !s.Admit("backend", t0, 0) {
		t.Fatal("quorum 0 must never shed automatically")
	}
	if err := s.SetOverride("backend", OverrideOn, t0); err != nil || s.Admit("backend", t0, 0) {
		t.Fatalf("override on must still shed (err %v)", err)
	}

	cfg = windowShedConfig()
	cfg.RecoveryWindow = 0
	s = newShedder(t, cfg, nil)
	s.Update(t0, reports(bothNames, backend))
	s.Update(at(time.Second), reports(bothNames, none))
	if st := state(t, s, "backend", at(time.Second)); st.State != ShedOK || !s.Admit("backend", at(time.Second), 0.99) {
		t.Fatalf("recovery window 0: %v", st.State)
	}
}

func TestShedForgetsVanishedDependencies(t *testing.T) {
	s := newShedder(t, DefaultShedConfig(), []Route{{Prefix: "/mail", Dependencies: []string{"mail"}}})
	s.Update(t0, reports([]string{"backend", "old"}, none))
	s.Update(at(time.Second), reports(backend, none))
	var names []string
	for _, st := range s.Status(at(time.Second)) {
		names = append(names, st.Name)
	}
	if diff := cmp.Diff([]string{"backend", "mail"}, names); diff != "" {
		t.Fatalf("tracked (-want +got):\n%s", diff)
	}
}

func TestRouteTable(t *testing.T) {
	rt, err := NewRouteTable([]Route{
		{Prefix: "/", Dependencies: []string{"backend"}},
		{Prefix: "/login", Dependencies: []string{"backend", "mail"}},
		{Prefix: "/login/static/", Dependencies: nil},
		{Prefix: "/status"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		deps []string
		all  bool
	}{
		{"/login", []string{"backend", "mail"}, false},
		{"/login/static/app.js", nil, false},
		{"/loginx", []string{"backend", "mail"}, false}, // plain prefix, as Envoy's prefix match
		{"/other", []string{"backend"}, false},
		{"/status/x", nil, false},
		{"nopath", nil, true},
	}
	for _, tt := range tests {
		deps, all := rt.Lookup(tt.path)
		if all != tt.all || !cmp.Equal(deps, tt.deps, cmpEmpty) {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.path, deps, all, tt.deps, tt.all)
		}
	}
	_, err = NewRouteTable([]Route{{Prefix: "api"}, {Prefix: "/a"}, {Prefix: "/a", Dependencies: []string{""}}})
	for _, want := range []string{`routes[0].prefix: "api": must start with "/"`, `routes[2].prefix: "/a": duplicate prefix`, `routes[2].dependencies[0]: "": must not be empty`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewRouteTable error %v, want %q", err, want)
		}
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return cmp.Equal(a, b)
})

func TestShedBlocked(t *testing.T) {
	s := newShedder(t, DefaultShedConfig(), []Route{
		{Prefix: "/login", Dependencies: []string{"backend"}},
		{Prefix: "/newsletter", Dependencies: []string{"mail"}},
		{Prefix: "/healthz"},
	})
	s.Update(t0, reports(append(bothNames, "zeta"), backend, backend))
	tests := []struct {
		path    string
		dep     string
		blocked bool
	}{
		{"/login/ticket", "backend", true},
		{"/newsletter", "", false}, // needs no failed dependency: keeps working
		{"/healthz", "", false},
		{"/unmapped", "backend", true}, // needs every dependency
	}
	for _, tt := range tests {
		dep, blocked := s.Blocked(tt.path, t0, 0.5)
		if dep != tt.dep || blocked != tt.blocked {
			t.Errorf("Blocked(%q) = %q, %v; want %q, %v", tt.path, dep, blocked, tt.dep, tt.blocked)
		}
	}
	// A route dependency no report mentions is tracked and admitted.
	if !s.Admit("mail", t0, 0) {
		t.Error("mail must be admitted")
	}
	// Reload of routes keeps the shedding state.
	rt, _ := NewRouteTable([]Route{{Prefix: "/", Dependencies: []string{"mail"}}})
	s.SetRoutes(rt)
	if _, blocked := s.Blocked("/login", t0, 0.5); blocked {
		t.Error("after reload /login needs only mail")
	}
	if s.Admit("backend", t0, 0.5) {
		t.Error("reload must keep backend shedding")
	}
}

func TestParseOverride(t *testing.T) {
	for _, s := range []string{"auto", "on", "off"} {
		if o, err := ParseOverride(s); err != nil || string(o) != s {
			t.Errorf("ParseOverride(%q) = %q, %v", s, o, err)
		}
	}
	if _, err := ParseOverride("ON"); !errors.Is(err, ErrBadOverride) {
		t.Errorf("ParseOverride(ON) err = %v", err)
	}
	s := newShedder(t, DefaultShedConfig(), nil)
	if err := s.SetOverride("backend", "maybe", t0); !errors.Is(err, ErrBadOverride) {
		t.Errorf("SetOverride(maybe) err = %v", err)
	}
}

func TestShedConfigValidate(t *testing.T) {
	if err := DefaultShedConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := ShedConfig{Quorum: 1.5, Recovery: "linear", Ramp: RampConfig{InitialWindow: 0, Calm: 0},
		RecoveryWindow: 10 * time.Second, MaxRecoveryWindow: time.Second}.Validate()
	for _, want := range []string{"quorum: 1.5", "max_recovery_window: 1s: must be at least recovery_window (10s)",
		`recovery: "linear": must be "feedback" or "window"`, "ramp.initial_window: 0: must be from 1 to 1048576", "ramp.calm: 0s: must be"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}

func BenchmarkShedBlocked(b *testing.B) {
	rt, _ := NewRouteTable([]Route{
		{Prefix: "/login", Dependencies: []string{"backend"}},
		{Prefix: "/static/"},
		{Prefix: "/api/v1/", Dependencies: []string{"backend", "mail"}},
	})
	s, _ := NewShedder(DefaultShedConfig(), rt)
	s.Update(t0, reports(bothNames, backend, backend))
	s.Update(at(time.Second), reports(bothNames, none, none)) // recovering: the costliest path
	now := at(3 * time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Blocked("/login/ticket", now, 0.3)
		}
	})
}
