package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where and how the race ran.
type machine struct {
	NProc    int    `json:"nproc"`
	Kernel   string `json:"kernel"`
	CPU      string `json:"cpu"`
	Go       string `json:"go"`
	HAProxy  string `json:"haproxy"`
	Spillway string `json:"spillway"`
	Commit   string `json:"commit"`
	Date     string `json:"date"`
	Command  string `json:"command"`
}

// gatherMachine reads the machine's description; whatever cannot be read
// is "unknown".
func gatherMachine(ctx context.Context, b *bench, command string) machine {
	m := machine{
		NProc:   runtime.NumCPU(),
		Kernel:  "unknown",
		CPU:     "unknown",
		Go:      runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		HAProxy: haproxyVersion(ctx, b.haproxy),
		Date:    time.Now().Format(time.RFC3339),
		Command: command,
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil {
			m.NProc = n
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m.Spillway = firstLine(exec.CommandContext(ctx, b.spillway, "version").Output())
	m.Commit = firstLine(exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output())
	return m
}

func firstLine(out []byte, err error) string {
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// shellQuote renders args as a shell command line.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ',' || r == '=' || r == ':' || r == '+' ||
				('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// doors lists the front doors in the tables' order, with their names
// there.
var doors = []struct{ key, label string }{
	{doorSpillway, "spillway lb"},
	{doorHAProxy, "HAProxy"},
	{doorController, "HAProxy + spillway controller"},
}

// renderResults is results.md: the machine, the method, and one table per
// scenario with the medians over the runs. Trials with an error count in
// the runs column only.
func renderResults(m machine, sel []Scenario, rate float64, runs int, trials []*Trial, took time.Duration) string {
	var b strings.Builder
	b.WriteString("# Recovery race: spillway lb vs HAProxy\n\n")
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| date | %s |\n| command | `%s` |\n", m.Date, m.Command)
	fmt.Fprintf(&b, "| machine | %d CPUs (nproc), %s, kernel %s |\n", m.NProc, m.CPU, m.Kernel)
	fmt.Fprintf(&b, "| Go | %s |\n| HAProxy | %s |\n| spillway | %s, commit %s |\n", m.Go, m.HAProxy, m.Spillway, m.Commit)
	fmt.Fprintf(&b, "| runs | %d, interleaved: each run plays every scenario against both front doors, the first door alternating run by run |\n", runs)
	fmt.Fprintf(&b, "| took | %v for %d trials |\n\n", took.Round(time.Second), len(trials))

	b.WriteString(method(rate))
	for _, sc := range sel {
		if !slices.ContainsFunc(trials, func(t *Trial) bool { return t.Scenario == sc.Name }) {
			continue // interrupted before it
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n", sc.Name, sc.describe(rate))
		b.WriteString("| front door | recover_s | runs | failed_p99_ms | failed_p99_settled_ms | client_timeouts | lost | peak_busy | peak_queued | queue_503_after_1s | ok_pct | retries | shed_after_report_ms | failed_p99_after_shed_ms |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, d := range doors {
			var rec, p99, p99s, cto, lost, busy, queued, q503, okp, retries, shed, p99shed []float64
			var perRun []string
			for _, t := range trials {
				if t.Scenario != sc.Name || t.Door != d.key {
					continue
				}
				if t.Err != "" {
					perRun = append(perRun, "err")
					continue
				}
				mt := t.Metrics
				r := math.Inf(1)
				if mt.Recovered {
					r = mt.RecoverS
				}
				rec = append(rec, r)
				perRun = append(perRun, fmtRecover(r))
				p := math.NaN()
				if mt.FailedDuringOutage > 0 {
					p = mt.FailedP99MS
				}
				p99 = append(p99, p)
				p = math.NaN()
				if mt.FailedSettled > 0 {
					p = mt.FailedP99SettledMS
				}
				p99s = append(p99s, p)
				cto = append(cto, float64(mt.ClientTimeouts))
				lost = append(lost, float64(mt.Lost))
				busy = append(busy, float64(mt.Pool.PeakBusy))
				queued = append(queued, float64(mt.Pool.PeakQueued))
				q503 = append(q503, float64(mt.Pool.Queue503After1s))
				okp = append(okp, mt.OKPct)
				retries = append(retries, float64(mt.Retries))
				p = math.NaN()
				if mt.ShedAfterReportMS != nil {
					p = *mt.ShedAfterReportMS
				}
				shed = append(shed, p)
				p = math.NaN()
				if mt.FailedP99AfterShedMS != nil {
					p = *mt.FailedP99AfterShedMS
				}
				p99shed = append(p99shed, p)
			}
			if len(perRun) == 0 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", d.label,
				fmtRecover(median(rec)), strings.Join(perRun, " "), fmtMS(median(p99)), fmtMS(median(p99s)),
				fmtCount(median(cto)), fmtCount(median(lost)), fmtCount(median(busy)), fmtCount(median(queued)),
				fmtCount(median(q503)), fmtPct(median(okp)), fmtCount(median(retries)), fmtMS(median(shed)), fmtMS(median(p99shed)))
		}
	}
	var notes []string
	for _, t := range trials {
		for _, n := range t.Notes {
			notes = append(notes, fmt.Sprintf("run %d %s %s: %s", t.Run, t.Scenario, t.Door, n))
		}
		if t.Err != "" {
			notes = append(notes, fmt.Sprintf("run %d %s %s failed: %s", t.Run, t.Scenario, t.Door, t.Err))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// method describes the race and defines every column.
func method(rate float64) string {
	c := stormCapacity(rate)
	return fmt.Sprintf(`## Method

Each trial starts fresh processes on 127.0.0.1: one spillway backend-sim
(latency %v), three `+"`spillway login --dev --rate-limit 0`"+` instances (defaults
otherwise) and one front door: `+"`spillway lb`"+` with every policy at its default,
or HAProxy composed as the seed's team planned it (a backend "dep" checked
on /healthz, the instances checked on their health ports' /readyz, both
inter %v fall %d rise %d; the frontend answers 503 dependency_unavailable
with Retry-After 1 itself while "dep" has no server up). Once a login
through the front door succeeds, the backend's stats are reset and an
open-loop load of %g logins/s starts (POST /v1/login, ticket
"valid-<i>", client timeout %v, loadgen); the backend breaks at %v and
returns at R, both as its control endpoint confirmed.

The storm backend has %d workers and a %v queue timeout: %d × 1/%v = %g
calls/s, %.2f × the %g/s steady load.

- recover_s: the smallest t ≥ 0, on a %v grid, such that every %v window
  [R+t+k·%v, +%v) (k ≥ 0) that ends by the end of the load has ≥ %.0f %% of
  its attempts (by start time, retries included) ok; "never" when even the
  last such window is not. "runs" lists it run by run.
- failed_p99_ms: p99 (nearest rank) latency of the attempts that were not
  ok and started during the outage [break, R); "–" when none.
- failed_p99_settled_ms: the same from 2 s after the break on: the first
  second of a hang or a slow backend is the instances' 1 s backend timeout
  running out (nothing can tell a hang from a slow answer sooner), and the
  front door then needs its own check or report.
- client_timeouts: attempts with no answer within the client timeout, over
  the whole load; lost: attempts without an outcome (must be 0); ok_pct:
  ok attempts over all attempts; retries: attempts that were retries.
- peak_busy, peak_queued: the backend's highest busy workers and queued
  calls in the per-second figures of the seconds that overlap [R, R+%v)
  (whole seconds: up to one second before R may be included).
- queue_503_after_1s: the backend's queue timeouts and queue-full 503s in
  the seconds that begin at or after R+%v (mostly after R+%v), to the end;
  the storm's acceptance is 0.
- shed_after_report_ms: from the first /health report of an instance
  with a dependency down to the front door shedding: spillway lb's
  /status with the dependency "shedding", or HAProxy's share map with a
  route at 0 (show map), from which on the door answers 503
  dependency_unavailable itself. Both are asked every %v from the break
  on; each mark is when the asking that saw it began. "–" for a door
  that cannot be asked (HAProxy alone) or when either was not seen.
- failed_p99_after_shed_ms: failed_p99_ms for the attempts started from
  the door's shedding mark on, until R.

Every column is the median over the runs (an even count averages the two
middle ones; "never" counts as infinite). Each trial's summary (marks,
loadgen result, per-second outcomes, the backend's per-second pool) is in
trials/<run>-<scenario>-<door>/summary.json, with the processes' logs.
`,
		backendLatency, haproxyInter, haproxyFall, haproxyRise, rate, clientTimeout, seconds(breakAt),
		c, stormQueueTimeout, c, backendLatency, float64(c)/backendLatency.Seconds(),
		float64(c)/backendLatency.Seconds()/rate, rate,
		recoveryGrid, recoveryWindow, recoveryGrid, recoveryWindow, float64(recoveryOKPermille)/10,
		peakSpan, queueGrace-time.Second/2, queueGrace, markPoll)
}

// fmtRecover renders a recovery time in seconds; +Inf is "never", NaN
// (no trial) "–".
func fmtRecover(s float64) string {
	switch {
	case math.IsNaN(s):
		return "–"
	case math.IsInf(s, 1):
		return "never"
	}
	return strconv.FormatFloat(s, 'f', 1, 64)
}

// fmtMS renders milliseconds: one decimal under 10, none above.
func fmtMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtCount renders a median count: whole, or with .5 between two.
func fmtCount(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtPct renders a percentage with two decimals.
func fmtPct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// trialLine is a trial's one-line progress summary.
func trialLine(t *Trial, took time.Duration) string {
	mt := t.Metrics
	r := math.Inf(1)
	if mt.Recovered {
		r = mt.RecoverS
	}
	p, ps := math.NaN(), math.NaN()
	if mt.FailedDuringOutage > 0 {
		p = mt.FailedP99MS
	}
	if mt.FailedSettled > 0 {
		ps = mt.FailedP99SettledMS
	}
	rs := fmtRecover(r)
	if mt.Recovered {
		rs += " s"
	}
	return fmt.Sprintf("recover %s, failed p99 %s ms (settled %s ms), ok %s %%, client timeouts %d, lost %d, retries %d, backend peak busy %d queued %d, queue 503s after 1 s %d (%s)",
		rs, fmtMS(p), fmtMS(ps), fmtPct(mt.OKPct), mt.ClientTimeouts, mt.Lost, mt.Retries,
		mt.Pool.PeakBusy, mt.Pool.PeakQueued, mt.Pool.Queue503After1s, took.Round(time.Second))
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
