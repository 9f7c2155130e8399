package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestRenderResults(t *testing.T) {
	m := machine{NProc: 2, Kernel: "6.1", CPU: "AMD EPYC", Go: "go1.26", HAProxy: "HAProxy version 2.6.12", Spillway: "spillway devel", Commit: "abc", Date: "2026-11-29T08:00:00Z", Command: "./scripts/bench-recovery.sh -runs 3"}
	tr := func(run int, door string, recovered bool, rec float64, cto int64, okPct float64) *Trial {
		return &Trial{Run: run, Scenario: "hang", Door: door, Metrics: Metrics{
			RecoverS: rec, Recovered: recovered, FailedP99MS: 1003.4, FailedDuringOutage: 10, FailedP99SettledMS: 2.5, FailedSettled: 8,
			ClientTimeouts: cto, OKPct: okPct, Retries: 0,
			Pool: PoolFigures{PeakBusy: 7, PeakQueued: int(cto), Queue503After1s: 0},
		}}
	}
	trials := []*Trial{
		tr(1, doorSpillway, true, 1.2, 0, 60),
		tr(1, doorHAProxy, true, 1.4, 4, 58),
		tr(2, doorHAProxy, true, 1.1, 1, 57),
		tr(2, doorSpillway, false, 0, 2, 55),
		tr(3, doorSpillway, true, 0.9, 1, 61),
		{Run: 3, Scenario: "hang", Door: doorHAProxy, Err: "haproxy exited"},
	}
	trials[0].Notes = []string{"something odd"}
	sel, err := findScenarios("hang")
	if err != nil {
		t.Fatal(err)
	}
	md := renderResults(m, sel, 300, 3, trials, 90*time.Second)
	for _, want := range []string{
		"| command | `./scripts/bench-recovery.sh -runs 3` |",
		"| machine | 2 CPUs (nproc), AMD EPYC, kernel 6.1 |",
		"| took | 1m30s for 6 trials |",
		"The storm backend has 7 workers and a 500ms queue timeout: 7 × 1/20ms = 350\ncalls/s, 1.17 × the 300/s steady load.",
		"## hang\n\nbackend mode hang from 6 s to 16 s (outage 10 s); load 300 logins/s until 26 s; no client retries.\n",
		"| front door | recover_s | runs | failed_p99_ms | failed_p99_settled_ms | client_timeouts | lost | peak_busy | peak_queued | queue_503_after_1s | ok_pct | retries |",
		// Spillway: recover 1.2, never, 0.9 → median 1.2; timeouts 0 2 1 → 1.
		"| spillway lb | 1.2 | 1.2 never 0.9 | 1003 | 2.5 | 1 | 0 | 7 | 1 | 0 | 60.00 | 0 |",
		// HAProxy: two trials, one error: means of the middle two.
		"| HAProxy | 1.2 | 1.4 1.1 err | 1003 | 2.5 | 2.5 | 0 | 7 | 2.5 | 0 | 57.50 | 0 |",
		"- run 1 hang spillway: something odd",
		"- run 3 hang haproxy failed: haproxy exited",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results lack %q:\n%s", want, md)
		}
	}
}

func TestFormats(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tt := range []struct{ got, want string }{
		{fmtRecover(1.25), "1.2"}, // round half to even on the float: 1.25 is 1.25
		{fmtRecover(1.3), "1.3"},
		{fmtRecover(inf), "never"},
		{fmtRecover(nan), "–"},
		{fmtMS(3.14), "3.1"},
		{fmtMS(1003.6), "1004"},
		{fmtMS(nan), "–"},
		{fmtCount(3), "3"},
		{fmtCount(2.5), "2.5"},
		{fmtCount(nan), "–"},
		{fmtPct(99.123), "99.12"},
		{shellQuote([]string{"./scripts/bench-recovery.sh", "-runs", "1", "-out", "my dir", "it's"}), `./scripts/bench-recovery.sh -runs 1 -out 'my dir' 'it'\''s'`},
		{shellQuote([]string{""}), "''"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestScenarios(t *testing.T) {
	got, err := findScenarios("storm, hang,storm")
	if err != nil || len(got) != 2 || got[0].Name != "storm" || got[1].Name != "hang" {
		t.Errorf("findScenarios = %v, %v: want storm, hang", got, err)
	}
	for _, bad := range []string{"", ",", "hang,flood"} {
		if _, err := findScenarios(bad); err == nil {
			t.Errorf("findScenarios(%q): no error", bad)
		}
	}
	durations := map[string]time.Duration{"hang": 26 * time.Second, "error": 26 * time.Second, "slow": 26 * time.Second, "storm": 56 * time.Second}
	for _, s := range scenarios {
		if d := s.duration(); d != durations[s.Name] {
			t.Errorf("%s lasts %v, want %v", s.Name, d, durations[s.Name])
		}
	}
	for rate, want := range map[float64]int{300: 7, 100: 2, 10: 1, 1000: 24} {
		if got := stormCapacity(rate); got != want {
			t.Errorf("stormCapacity(%v) = %d, want %d", rate, got, want)
		}
	}
}
