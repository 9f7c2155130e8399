package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/loadgen"
)

func TestScenarioFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]string{
		"unknown-field.bad.yaml": {"line 4", "field limt not found"},
		"bad-values.bad.yaml": {
			`fleet.instances: 20: must be from 1 to 16`,
			`fleet.boot: "-1s": must be from 0s to 1m`,
			`client.retry.mode: "sometimes": must be none, immediate or retry_after`,
			`tempo: 2: must be in (0, 1]`,
			`observe: "1s": must be from 5s`,
			`phases[0]: must start at 0s and set rps`,
			`phases[1].at: "1s": must be after phases[0].at (1s)`,
			`phases[1].backend: "hung": not one of up, hang, error, slow, down`,
			`phases[2].kill: 21: must be from 0 to fleet.instances (20)`,
		},
		"never-recovers.bad.yaml": {"phases[1]: the disruption it starts never ends"},
		"no-disruption.bad.yaml":  {"phases: none disrupts the system"},
	}
	good := 0
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := LoadScenario(f)
			want, isBad := bad[name]
			if !isBad {
				if err != nil {
					t.Fatalf("LoadScenario: %v", err)
				}
				good++
				return
			}
			if err == nil {
				t.Fatal("LoadScenario: no error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if good < 4 {
		t.Errorf("%d good scenarios in testdata; want the short incident and at least three more", good)
	}
}

// TestDefaultScenario pins the schedule of the default scenario: the
// outage, and an observation of at least 3 recovery ramps. The numbers its
// outcome rests on are pinned, for it and for the short scenario of
// TestIncident, by TestSpiralByConstruction.
func TestDefaultScenario(t *testing.T) {
	sc := Default()
	w := sc.Window()
	if !w.Found || !w.Ends || w.Start != 15*time.Second || w.End != 35*time.Second {
		t.Errorf("window = %+v, want 15s to 35s", w)
	}
	if d := sc.Duration(); d != 60*time.Second {
		t.Errorf("duration = %s, want 1m", d)
	}
	if after := sc.Duration() - w.End; after < 5*recoveryBound {
		t.Errorf("observation after recovery %s < 5 × the %s recovery bound", after, recoveryBound)
	}
}

// retryAfterFloor is the Retry-After of the load balancer's 503s while no
// instance is routable (no_healthy_instance) and of an instance's overload
// 503s: the drill's clients retry 1 to 2 seconds after such a failure.
const retryAfterFloor = time.Second

// TestSpiralByConstruction pins, for the default scenario and the short one
// TestIncident runs, the inequalities that make the 2018 profile's spiral
// certain rather than likely (docs/DRILL.md, "why the spiral is certain"),
// on the configuration the drill actually writes. Capacity is the nominal
// limit ÷ backend latency, which is more than an instance achieves: the
// inequalities that need overload hold a fortiori.
func TestSpiralByConstruction(t *testing.T) {
	short, err := LoadScenario("testdata/incident-short.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, sc := range map[string]*Scenario{"default": Default(), "short": short} {
		t.Run(name, func(t *testing.T) {
			f, err := upConfig(Profile2018, sc, "http://127.0.0.1:9")
			if err != nil {
				t.Fatal(err)
			}
			fc, lbc := f.Fleet, f.LB
			fc.Resolve()
			lbc.Resolve()
			latency := sc.Backend.Latency
			perInstance := float64(sc.Fleet.Limit) / latency.Seconds() // logins/s
			fleet := perInstance * float64(sc.Fleet.Instances)
			peak := sc.peakRPS()

			// The fleet carries the peak with room to spare: before the
			// outage, and for spillway's recovery, whose retry echo must
			// fit in the room left.
			if share := peak / fleet; share < 0.5 || share > 0.7 {
				t.Errorf("peak is %.0f%% of the fleet's capacity, want 50-70%%", 100*share)
			}
			if peak <= 2*perInstance {
				t.Errorf("peak %v logins/s: two instances (%v/s) would carry it", peak, 2*perInstance)
			}

			// (1) Overloaded means failing: a check that waits in a full
			// backlog, as long as the backlog holds a login (its timeout, or
			// the time to work through it), then calls the backend, takes
			// twice the checks' budget at least. Both checkers time out
			// after the same time.
			if fc.Check.Timeout != lbc.HealthCheck.Timeout {
				t.Fatalf("fleet check timeout %s, load balancer's %s: the argument assumes one", fc.Check.Timeout, lbc.HealthCheck.Timeout)
			}
			budget := fc.Check.Timeout - latency
			drain := time.Duration(float64(sc.Fleet.Queue) / perInstance * float64(time.Second))
			if wait := min(f.Login.Admission.QueueTimeout, drain); wait < 2*budget {
				t.Errorf("a check waits %s in a full backlog, want at least 2 × its budget %s (timeout %s − backend latency %s)",
					wait, budget, fc.Check.Timeout, latency)
			}

			// (2) The fleet judges a new instance soon after its warm-up:
			// its grace covers the boot and one check interval, then
			// unhealthy_threshold checks decide. decide is from the end of
			// the warm-up to the last check that decides.
			grace := sc.grace()
			if grace < sc.Fleet.Boot || fc.Grace != grace {
				t.Fatalf("grace %s (fleet %s) does not cover the boot %s", grace, fc.Grace, sc.Fleet.Boot)
			}
			decide := grace - sc.Fleet.Boot + time.Duration(fc.Check.UnhealthyThreshold)*fc.Check.Interval
			if decide > 2*retryAfterFloor {
				t.Fatalf("the fleet decides %s after the warm-up, past the retry echo", decide)
			}

			// (3) When instances come back, nothing has been served for
			// seconds: every login failed and is retried 1-2s later. Until
			// the fleet's last deciding check, the retries of failures from
			// before the return alone keep the offered load above what the
			// whole fleet serves, by 10% at the nominal capacity, so every
			// set of instances that comes back is overloaded when it is
			// judged.
			if sc.Client.Retry.Mode != "retry_after" || sc.Client.Retry.Max < 1 {
				t.Fatalf("client retry %+v: the argument assumes retry_after, at least once", sc.Client.Retry)
			}
			echo := min(1, (2*retryAfterFloor-decide).Seconds()/retryAfterFloor.Seconds())
			if offered := peak * (1 + echo); offered < 1.1*fleet {
				t.Errorf("offered %.0f/s at the last deciding check (%s after the warm-up), want ≥ 1.1 × the fleet's %.0f/s", offered, decide, fleet)
			}
			if flood := 2 * peak; flood < 1.2*fleet {
				t.Errorf("retrying peak %.0f/s, want ≥ 1.2 × the fleet's %.0f/s", flood, fleet)
			}
		})
	}
}

func TestScaled(t *testing.T) {
	sc := Default().Scaled(0.5)
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := sc.Window(); got.Start != 7500*time.Millisecond || got.End != 17500*time.Millisecond {
		t.Errorf("window = %s to %s", got.Start, got.End)
	}
	if sc.Tempo != 0.1 || sc.Fleet.Boot != 3*time.Second || sc.Backend.Latency != 50*time.Millisecond || sc.Client.Timeout != 800*time.Millisecond {
		t.Errorf("scaled: tempo %v, boot %s, latency %s, client timeout %s", sc.Tempo, sc.Fleet.Boot, sc.Backend.Latency, sc.Client.Timeout)
	}
	if Default().Tempo != 0.2 {
		t.Error("Scaled changed the original")
	}
}

func TestParseProfiles(t *testing.T) {
	for in, want := range map[string][]Profile{"both": Profiles, "2018": {Profile2018}, "spillway": {ProfileSpillway}} {
		got, err := ParseProfiles(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseProfiles(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseProfiles("2019"); err == nil {
		t.Error("ParseProfiles(2019): no error")
	}
}

// TestUpConfig checks that both profiles configure the same system but for
// the incident's settings, and that `spillway up` can read the file back
// strictly.
func TestUpConfig(t *testing.T) {
	sc := Default()
	cfg := map[Profile]*config.File{}
	for _, p := range Profiles {
		f, err := upConfig(p, sc, "http://127.0.0.1:9")
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		data, err := f.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// As `spillway up --config` reads it: strictly, onto up's defaults.
		path := filepath.Join(t.TempDir(), "up.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := config.Load(path, config.ForUp())
		if err != nil {
			t.Fatalf("%s: decode the file back: %v\n%s", p, err, data)
		}
		back.Resolve()
		if err := back.Validate(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cfg[p] = &back
	}
	old, cur := cfg[Profile2018], cfg[ProfileSpillway]
	def := config.Default()
	def.Resolve()
	if !old.Login.Health.SharedPort || !old.Login.Health.Deep || cur.Login.Health.SharedPort || cur.Login.Health.Deep {
		t.Error("health.shared_port and health.deep: want on in 2018 only")
	}
	if old.Login.Admission.QueueTimeout != config.Backlog2018 || cur.Login.Admission.QueueTimeout != def.Login.Admission.QueueTimeout {
		t.Errorf("admission.queue_timeout: 2018 %s, spillway %s; want %s (a backlog without timeout) and the default",
			old.Login.Admission.QueueTimeout, cur.Login.Admission.QueueTimeout, config.Backlog2018)
	}
	if old.Login.Backend.Timeout != 5*cur.Login.Backend.Timeout {
		t.Errorf("backend timeout: 2018 %s, spillway %s; want five times as long", old.Login.Backend.Timeout, cur.Login.Backend.Timeout)
	}
	if old.LB.Panic.Threshold != 0 || old.LB.SlowStart.Window != 0 || old.LB.Shedding.Quorum != 0 || old.LB.HealthCheck.ReportPath != "" {
		t.Error("2018 load balancer: want panic 0, slow start 0, quorum 0, no report")
	}
	if cur.LB.Panic != def.LB.Panic || cur.LB.Shedding.Quorum != def.LB.Shedding.Quorum || cur.LB.HealthCheck.ReportPath != def.LB.HealthCheck.ReportPath {
		t.Error("spillway load balancer: want the defaults")
	}
	if old.Fleet.ReplaceOn != "traffic" || old.Fleet.Check.Traffic.Port != "service" || !old.Fleet.Budget.Max.IsZero() || old.Fleet.Freeze.Share != 0 {
		t.Errorf("2018 fleet: %+v", old.Fleet)
	}
	if cur.Fleet.ReplaceOn != def.Fleet.ReplaceOn || cur.Fleet.Budget.Max != def.Fleet.Budget.Max || cur.Fleet.Freeze.Share != def.Fleet.Freeze.Share {
		t.Errorf("spillway fleet: want the defaults, got %+v", cur.Fleet)
	}
	// Everything else is the same: capacity, timers, the fleet's size.
	same := []struct {
		name string
		a, b any
	}{
		{"admission but its queue timeout", withQueueTimeout(old.Login.Admission, cur.Login.Admission.QueueTimeout), cur.Login.Admission},
		{"warmup", old.Login.Health.Warmup, cur.Login.Health.Warmup},
		{"open_interval", old.Login.Backend.OpenInterval, cur.Login.Backend.OpenInterval},
		{"lb interval", old.LB.HealthCheck.Interval, cur.LB.HealthCheck.Interval},
		{"fleet size", old.Fleet.Size, cur.Fleet.Size},
		{"grace", old.Fleet.Grace, cur.Fleet.Grace},
		{"fleet interval", old.Fleet.Check.Interval, cur.Fleet.Check.Interval},
	}
	for _, s := range same {
		if diff := cmp.Diff(s.a, s.b); diff != "" {
			t.Errorf("%s differs between the profiles (-2018 +spillway):\n%s", s.name, diff)
		}
	}
}

// withQueueTimeout returns c with its queue timeout set to d.
func withQueueTimeout(c admission.Config, d time.Duration) admission.Config {
	c.QueueTimeout = d
	return c
}

func TestParseFleetMetrics(t *testing.T) {
	text := `# HELP spillway_fleet_instances Instances.
# TYPE spillway_fleet_instances gauge
spillway_fleet_instances 4
spillway_fleet_replacements_total{reason="liveness"} 1
spillway_fleet_replacements_total{reason="rolling_restart"} 7
spillway_fleet_replacements_total{reason="traffic"} 12
spillway_fleet_restarts_total 2
spillway_lb_requests_total{outcome="ok"} 99
`
	got, err := parseFleetMetrics(text)
	if want := (fleetMetrics{instances: 4, replacements: 13, restarts: 2}); err != nil || got != want {
		t.Errorf("parseFleetMetrics = %+v, %v, want %+v", got, err, want)
	}
}

// TestLedgerAgreesWithLoadgen sends a load through the ledger's transport
// to a server answering every kind of outcome and checks that the ledger
// and the load generator count the same.
func TestLedgerAgreesWithLoadgen(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Ticket string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		switch body.Ticket[len(body.Ticket)-1] {
		case '0', '1', '2':
			w.WriteHeader(http.StatusOK)
		case '3':
			w.WriteHeader(http.StatusUnauthorized)
		case '4':
			w.Header().Set("X-Spillway-Reason", "dependency_unavailable")
			w.WriteHeader(http.StatusServiceUnavailable)
		case '5':
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"overloaded"}`))
		case '6':
			w.WriteHeader(http.StatusBadGateway)
		case '7':
			time.Sleep(300 * time.Millisecond) // past the client's timeout
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	t0 := time.Now()
	led := newLedger(t0)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:      srv.URL,
		Body:     func(i int) []byte { return []byte(`{"ticket":"t` + string(rune('0'+i%10)) + `"}`) },
		Rate:     200,
		Duration: 500 * time.Millisecond,
		Timeout:  100 * time.Millisecond,
		Client:   &http.Client{Transport: &transport{base: tr, l: led}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, a := range led.all() {
		got[a.outcome.String()]++
		if a.start < 0 || a.start > time.Second {
			t.Errorf("attempt started at %s", a.start)
		}
	}
	for _, o := range health.Outcomes {
		if got[o.String()] != res.Outcomes[o.String()] {
			t.Errorf("%s: ledger %d, loadgen %d", o, got[o.String()], res.Outcomes[o.String()])
		}
	}
	if res.Outcomes["client_timeout"] == 0 || res.Outcomes["shed"] == 0 || res.Outcomes["overloaded"] == 0 {
		t.Errorf("the server did not produce every outcome: %v", res.Outcomes)
	}
}

// TestAnalyze checks the timeline and the summary on a made-up run:
// everything ok before, everything shed during, then a second with one
// failure in a hundred too many, then ok.
func TestAnalyze(t *testing.T) {
	sc := &Scenario{Name: "t", Phases: []Phase{
		{At: 0, RPS: 100}, {At: 10 * time.Second, Backend: "hang"}, {At: 20 * time.Second, Backend: "up"},
	}, Observe: 20 * time.Second}
	sc.SetDefaults()
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	pr := &ProfileRun{Profile: ProfileSpillway}
	for s := range 40 {
		for i := range 100 {
			o := health.OutcomeOK
			switch {
			case s >= 10 && s < 20:
				o = health.OutcomeShed
			case s == 20 && i < 50, s == 22 && i < 2:
				o = health.OutcomeOverloaded
			}
			lat := 50 * time.Millisecond
			if o != health.OutcomeOK {
				lat = time.Duration(i%10+1) * time.Millisecond
			}
			pr.attempts = append(pr.attempts, attempt{start: time.Duration(s)*time.Second + time.Duration(i)*10*time.Millisecond, latency: lat, outcome: o})
		}
	}
	pr.Load = LoadResult{Sent: 4000, Answered: 4000, Outcomes: map[string]int64{}}
	pr.Samples = []Sample{{T: 0.1, Running: 4, Routable: 4}, {T: 15, Running: 4, Routable: 4, Replacements: 2}, {T: 25, Running: 4, Routable: 3, Replacements: 3}}
	pr.analyze(sc)
	s := pr.Summary
	if !s.Recovered || *s.TimeToRecoverS != 3 {
		t.Errorf("recovered %v after %v, want 3s (seconds 20 and 22 are below 99%%)", s.Recovered, s.TimeToRecoverS)
	}
	if s.SuccessBefore != 1 || s.SuccessDuring != 0 || s.SuccessAfter != 1-52.0/2000 {
		t.Errorf("success %v / %v / %v", s.SuccessBefore, s.SuccessDuring, s.SuccessAfter)
	}
	if s.FailedP99Ms != 10 || pr.Details.FailedP50Ms != 5 {
		t.Errorf("failed p50 %v, p99 %v", pr.Details.FailedP50Ms, s.FailedP99Ms)
	}
	if s.Replacements != 3 || pr.Details.ReplacementsDuring != 2 || pr.Details.ReplacementsAfter != 1 {
		t.Errorf("replacements %d (during %d, after %d)", s.Replacements, pr.Details.ReplacementsDuring, pr.Details.ReplacementsAfter)
	}
	if len(pr.Seconds) != 40 {
		t.Fatalf("%d seconds", len(pr.Seconds))
	}
	if got := pr.Seconds[20]; got.Offered != 100 || got.OK != 50 || got.Overloaded != 50 || got.Backend != "up" || got.Routable != 4 {
		t.Errorf("second 20 = %+v", got)
	}
	if got := pr.Seconds[15]; got.Shed != 100 || got.Backend != "hang" || got.Replacements != 2 {
		t.Errorf("second 15 = %+v", got)
	}
}

func TestReportWrite(t *testing.T) {
	sc := Default()
	rep := &Report{Scenario: sc, TimeScale: 1}
	for _, p := range Profiles {
		pr := &ProfileRun{Profile: p, Load: LoadResult{Outcomes: map[string]int64{}}}
		for s := range 60 {
			for i := range 20 {
				o := health.OutcomeOK
				if s >= 15 && s < 35 {
					o = health.OutcomeShed
				}
				pr.attempts = append(pr.attempts, attempt{start: time.Duration(s)*time.Second + time.Duration(i)*50*time.Millisecond, latency: time.Millisecond, outcome: o})
			}
			pr.Samples = append(pr.Samples, Sample{T: float64(s), Running: 4, Routable: 4, Shedding: "ok"})
		}
		pr.analyze(sc)
		rep.Profiles = append(rep.Profiles, pr)
	}
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	files := []string{TimelineFile, SummaryFile, ReportFile}
	if Charts {
		files = append(files, ChartFile, ChartPNGFile)
	}
	for _, f := range files {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	var sum struct {
		Profiles map[string]map[string]json.RawMessage `json:"profiles"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	want := []string{"client_timeouts", "failed_p99_ms", "lost", "recovered", "replacements", "sent", "success_after", "success_before", "success_during", "time_to_recover_s"}
	for _, p := range []string{"2018", "spillway"} {
		var keys []string
		for k := range sum.Profiles[p] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("summary.json profiles.%s keys (-want +got):\n%s", p, diff)
		}
	}
	if svg, _ := os.ReadFile(filepath.Join(dir, ChartFile)); Charts && (!bytes.HasPrefix(bytes.TrimSpace(svg), []byte("<?xml")) || !bytes.Contains(svg, []byte("<svg"))) {
		t.Errorf("%s is not an SVG document", ChartFile)
	}
	md, _ := os.ReadFile(filepath.Join(dir, ReportFile))
	mention := ChartFile
	if !Charts {
		mention = "built without plots"
	}
	for _, w := range []string{"| recovered |", "time to recover", mention} {
		if !bytes.Contains(md, []byte(w)) {
			t.Errorf("report.md lacks %q", w)
		}
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add(incidentYAML)
	for _, name := range []string{"backend-error.yaml", "unknown-field.bad.yaml", "bad-values.bad.yaml"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScenario(data)
		if err != nil {
			return
		}
		// A valid scenario has a window that ends within its duration
		// and load segments that cover it.
		w := s.Window()
		if !w.Found || !w.Ends || w.End > s.Duration() {
			t.Fatalf("valid scenario with window %+v, duration %s", w, s.Duration())
		}
		segs := s.segments()
		if len(segs) == 0 || segs[0].from != 0 || segs[len(segs)-1].to != s.Duration() {
			t.Fatalf("segments %+v do not cover %s", segs, s.Duration())
		}
	})
}

// TestIncident runs the short incident scenario on the real binaries, both
// profiles, and asserts the drill's acceptance: the 2018 profile
// reproduces the incident, the spillway profile survives it. The margins
// are the acceptance's own (failed requests under 50ms at p99), with a
// margin for a loaded machine (a recovery within the 3 s bound + 2 s: the
// bound itself is measured on the default scenario, docs/DRILL.md), or
// generous (replacements: at least two during the outage); nothing
// depends on exact timings. About 90s.
func TestIncident(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole system for about 90s")
	}
	bin := spillwayBinary(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "drill", "--scenario", "testdata/incident-short.yaml", "--out", out)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("spillway drill: %v\n%s", err, log.String())
	}
	t.Logf("drill took %s", time.Since(start).Round(time.Second))
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "2018 ") || strings.HasPrefix(strings.TrimSpace(l), "spillway ") {
			t.Log(strings.TrimSpace(l))
		}
	}
	data, err := os.ReadFile(filepath.Join(out, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Profiles map[Profile]Summary `json:"profiles"`
		Details  map[Profile]Details `json:"details"`
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf(format, a...)
	}
	old, oldD := sum.Profiles[Profile2018], sum.Details[Profile2018]
	if old.Recovered {
		fail("2018: recovered after %vs; want no recovery (the incident)", *old.TimeToRecoverS)
	}
	if oldD.ReplacementsDuring < 2 {
		fail("2018: %d replacements during the outage, want at least 2", oldD.ReplacementsDuring)
	}
	if oldD.ReplacementsAfter < 1 {
		fail("2018: %d replacements after the backend returned, want the replacements to go on", oldD.ReplacementsAfter)
	}
	cur, curD := sum.Profiles[ProfileSpillway], sum.Details[ProfileSpillway]
	t.Logf("2018: %d replacements during the outage, %d after; spillway: %d of %d failed attempts of the outage took 50ms or more (p99 needs under 1%%)",
		oldD.ReplacementsDuring, oldD.ReplacementsAfter, curD.FailedSlowDuring, curD.FailedDuring)
	if cur.Replacements != 0 {
		fail("spillway: %d replacements, want 0", cur.Replacements)
	}
	if !cur.Recovered || *cur.TimeToRecoverS > recoveryBound.Seconds()+2 {
		fail("spillway: recovered %v after %v, want within %s + 2s", cur.Recovered, cur.TimeToRecoverS, recoveryBound)
	}
	if cur.FailedP99Ms >= 50 {
		fail("spillway: failed p99 %vms during the outage, want under 50ms", cur.FailedP99Ms)
	}
	if curD.ClientTimeoutsDuring != 0 {
		fail("spillway: %d client timeouts during the outage, want every request answered", curD.ClientTimeoutsDuring)
	}
	if cur.SuccessBefore < 0.98 {
		fail("spillway: %.1f%% ok before the outage", 100*cur.SuccessBefore)
	}
	for p, s := range sum.Profiles {
		if s.Lost != 0 {
			fail("%s: %d lost", p, s.Lost)
		}
	}
	if t.Failed() {
		t.Logf("drill output:\n%s", log.String())
		md, _ := os.ReadFile(filepath.Join(out, ReportFile))
		t.Logf("report:\n%s", md)
	}
}
