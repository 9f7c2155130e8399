package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Report is a drill's result: the scenario as run and one ProfileRun per
// profile. Write puts it in a directory.
type Report struct {
	Scenario  *Scenario
	TimeScale float64
	// DataPlane is what carried the logins: "lb" or "haproxy".
	DataPlane string
	Started   time.Time
	Profiles  []*ProfileRun
}

// Profile returns the run of profile p, or nil.
func (rep *Report) Profile(p Profile) *ProfileRun {
	for _, pr := range rep.Profiles {
		if pr.Profile == p {
			return pr
		}
	}
	return nil
}

// Files a report is made of.
const (
	TimelineFile = "timeline.json"
	SummaryFile  = "summary.json"
	ReportFile   = "report.md"
	ChartFile    = "timeline.svg"
	ChartPNGFile = "timeline.png"
)

// Write writes the report's files to dir: timeline.json, summary.json,
// report.md, timeline.svg and timeline.png (the same chart, for viewers
// without SVG); the two charts only when Charts is true.
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tl, err := rep.timelineJSON()
	if err != nil {
		return err
	}
	sum, err := rep.SummaryJSON()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{TimelineFile: tl, SummaryFile: sum, ReportFile: []byte(rep.Markdown())} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	if !Charts {
		return nil
	}
	if err := rep.writeChart(filepath.Join(dir, ChartFile), false); err != nil {
		return err
	}
	return rep.writeChart(filepath.Join(dir, ChartPNGFile), true)
}

// SummaryJSON is summary.json: one object per profile under "profiles",
// with the keys of Summary; further figures under "details".
func (rep *Report) SummaryJSON() ([]byte, error) {
	doc := struct {
		Scenario  string              `json:"scenario"`
		TimeScale float64             `json:"time_scale"`
		Profiles  map[Profile]Summary `json:"profiles"`
		Details   map[Profile]Details `json:"details"`
	}{rep.Scenario.Name, rep.TimeScale, map[Profile]Summary{}, map[Profile]Details{}}
	for _, pr := range rep.Profiles {
		doc.Profiles[pr.Profile] = pr.Summary
		doc.Details[pr.Profile] = pr.Details
	}
	return marshalIndent(doc)
}

func (rep *Report) timelineJSON() ([]byte, error) {
	scy, err := yaml.Marshal(rep.Scenario)
	if err != nil {
		return nil, err
	}
	w := rep.Scenario.Window()
	doc := struct {
		Scenario  string                      `json:"scenario"`
		TimeScale float64                     `json:"time_scale"`
		Window    map[string]float64          `json:"window"`
		Profiles  map[Profile]json.RawMessage `json:"profiles"`
	}{string(scy), rep.TimeScale, map[string]float64{"start_s": w.Start.Seconds(), "end_s": w.End.Seconds()}, map[Profile]json.RawMessage{}}
	for _, pr := range rep.Profiles {
		b, err := json.Marshal(pr)
		if err != nil {
			return nil, err
		}
		doc.Profiles[pr.Profile] = b
	}
	return marshalIndent(doc)
}

func marshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Checks are what spillway promises, judged on one run.
type Checks struct {
	NoReplacements  bool
	AllAnswered     bool // no client timeout during the disruption, nothing lost
	FastFailures    bool // failed p99 during the disruption under 50ms
	RecoveredInTime bool // time to recover at most recoveryBound
	NothingLost     bool
}

// OK reports whether every check passed.
func (c Checks) OK() bool {
	return c.NoReplacements && c.AllAnswered && c.FastFailures && c.RecoveredInTime && c.NothingLost
}

// Checks judges the run against spillway's promises.
func (pr *ProfileRun) Checks() Checks {
	s := pr.Summary
	return Checks{
		NoReplacements:  s.Replacements == 0,
		AllAnswered:     pr.Details.ClientTimeoutsDuring == 0 && s.Lost == 0,
		FastFailures:    s.FailedP99Ms < 50,
		RecoveredInTime: s.Recovered && *s.TimeToRecoverS <= recoveryBound.Seconds(),
		NothingLost:     s.Lost == 0,
	}
}

// Incident reports whether the run reproduces the incident: instances
// replaced during the disruption, and no recovery for the rest of the
// observation.
func (pr *ProfileRun) Incident() bool {
	return pr.Details.ReplacementsDuring > 0 && !pr.Summary.Recovered
}

// verdict is a profile's verdict in a sentence.
func (pr *ProfileRun) verdict(sc *Scenario) string {
	s := pr.Summary
	after := sc.Duration() - sc.Window().End
	switch {
	case pr.Incident():
		return fmt.Sprintf("**reproduces the incident**: %d instances replaced during the disruption and %d after it; "+
			"not recovered in the %s observed after the backend returned (%.0f× the %s spillway is allowed); "+
			"every instance routable in %.0f%% of the samples after it.",
			pr.Details.ReplacementsDuring, pr.Details.ReplacementsAfter, after, after.Seconds()/recoveryBound.Seconds(), recoveryBound,
			100*pr.Details.FullyRoutableAfter)
	case pr.Checks().OK():
		return fmt.Sprintf("**survives**: no instance replaced, every request answered (failed p99 %.0fms during the disruption), "+
			"recovered %gs after the backend returned (%s allowed), nothing lost.", s.FailedP99Ms, *s.TimeToRecoverS, recoveryBound)
	}
	c := pr.Checks()
	var notes []string
	add := func(ok bool, text string) {
		mark := "✗"
		if ok {
			mark = "✓"
		}
		notes = append(notes, mark+" "+text)
	}
	add(c.NoReplacements, fmt.Sprintf("%d replacements", s.Replacements))
	add(c.AllAnswered, fmt.Sprintf("%d client timeouts during the disruption", pr.Details.ClientTimeoutsDuring))
	add(c.FastFailures, fmt.Sprintf("failed p99 %.0fms during the disruption", s.FailedP99Ms))
	if s.Recovered {
		add(c.RecoveredInTime, fmt.Sprintf("recovered in %gs", *s.TimeToRecoverS))
	} else {
		add(false, fmt.Sprintf("not recovered in %s", after))
	}
	add(c.NothingLost, fmt.Sprintf("%d lost", s.Lost))
	return strings.Join(notes, "; ") + "."
}

// Markdown is report.md.
func (rep *Report) Markdown() string {
	sc := rep.Scenario
	w := sc.Window()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Drill: %s\n\n", sc.Name)
	if sc.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(sc.Description))
	}
	perInstance := float64(sc.Fleet.Limit) / sc.Backend.Latency.Seconds()
	fleetCap := perInstance * float64(sc.Fleet.Instances)
	fmt.Fprintf(&b, "%d instances, each admitting %d logins at once: at a backend latency of %s, about %.0f logins/s each, %.0f/s for the fleet. "+
		"Peak %s logins/s (%.0f%% of the fleet). Clients time out after %s; retries: %s. "+
		"Disruption from %s to %s, observed for %s after. Tempo %g (health checks every %s)",
		sc.Fleet.Instances, sc.Fleet.Limit, sc.Backend.Latency, perInstance, fleetCap,
		fmtRate(sc.peakRPS()), 100*sc.peakRPS()/fleetCap, sc.Client.Timeout, retryText(sc.Client.Retry),
		w.Start, w.End, sc.Duration()-w.End, sc.Tempo, scale(2*time.Second, sc.Tempo))
	if sc.Fleet.Boot > 0 {
		fmt.Fprintf(&b, ", instances boot in %s", sc.Fleet.Boot)
	}
	if rep.TimeScale != 1 {
		fmt.Fprintf(&b, ", time scale %g", rep.TimeScale)
	}
	if rep.DataPlane == DataPlaneHAProxy {
		b.WriteString(". HAProxy in front, driven by the controller (`spillway up --data-plane haproxy`), shedding recovering by window")
	}
	b.WriteString(".\n\n")

	// The table.
	b.WriteString("| |")
	for _, pr := range rep.Profiles {
		fmt.Fprintf(&b, " %s |", pr.Profile)
	}
	b.WriteString("\n|---|")
	for range rep.Profiles {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	row := func(name string, f func(*ProfileRun) string) {
		fmt.Fprintf(&b, "| %s |", name)
		for _, pr := range rep.Profiles {
			fmt.Fprintf(&b, " %s |", f(pr))
		}
		b.WriteString("\n")
	}
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	row("recovered", func(pr *ProfileRun) string {
		if pr.Summary.Recovered {
			return "yes"
		}
		return "**no**"
	})
	row(fmt.Sprintf("time to recover (spillway: at most %s)", recoveryBound), func(pr *ProfileRun) string {
		if !pr.Summary.Recovered {
			return fmt.Sprintf("— (not within %s)", sc.Duration()-w.End)
		}
		return fmt.Sprintf("%gs", *pr.Summary.TimeToRecoverS)
	})
	row("replacements: during / after / total", func(pr *ProfileRun) string {
		return fmt.Sprintf("%d / %d / %d", pr.Details.ReplacementsDuring, pr.Details.ReplacementsAfter, pr.Summary.Replacements)
	})
	row("ok before / during / after", func(pr *ProfileRun) string {
		s := pr.Summary
		return pct(s.SuccessBefore) + " / " + pct(s.SuccessDuring) + " / " + pct(s.SuccessAfter)
	})
	row("failed during: p50 / p99 / max", func(pr *ProfileRun) string {
		return fmt.Sprintf("%.1f / %.1f / %.0f ms", pr.Details.FailedP50Ms, pr.Summary.FailedP99Ms, pr.Details.FailedMaxMs)
	})
	row("client timeouts: during / total", func(pr *ProfileRun) string {
		return fmt.Sprintf("%d / %d", pr.Details.ClientTimeoutsDuring, pr.Summary.ClientTimeouts)
	})
	row("sent (retries) / lost", func(pr *ProfileRun) string {
		return fmt.Sprintf("%d (%d) / %d", pr.Summary.Sent, pr.Details.Retries, pr.Summary.Lost)
	})
	row("every instance routable after", func(pr *ProfileRun) string { return pct(pr.Details.FullyRoutableAfter) + " of the time" })

	b.WriteString("\n")
	for _, pr := range rep.Profiles {
		fmt.Fprintf(&b, "- **%s**: %s\n", pr.Profile, pr.verdict(sc))
	}
	if !Charts {
		b.WriteString("\nNo chart: this spillway was built without plots (-tags noplot); timeline.json has every second's figures.\n\n")
	} else {
		fmt.Fprintf(&b, "\n![outcomes per second and instances, per profile](%s)\n\n", ChartFile)
		b.WriteString("Top panel of each profile: attempts started per second, stacked by how they ended. " +
			"Bottom panel: instances running (dashed) and routable (green); a red cross marks a replacement. Grey: the disruption.\n\n")
	}

	b.WriteString("## Phases\n\n| at | phase | load | backend | kill |\n|---|---|---|---|---|\n")
	for _, p := range sc.Phases {
		load, kill := "", ""
		if p.RPS > 0 {
			load = fmtRate(p.RPS) + " logins/s"
		}
		if p.Kill > 0 {
			kill = fmt.Sprintf("%d", p.Kill)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", p.At, p.Name, load, p.Backend, kill)
	}
	b.WriteString("\n## Definitions\n\n" +
		"- Every figure counts attempts (first tries and retries) by the second they started in.\n" +
		"- ok before, during, after: share of attempts that ended 2xx, before the disruption, during it, and after it to the end.\n" +
		"- Time to recover: from the end of the disruption to the first second of a run of 5 seconds in each of which at least 99% of the attempts ended ok.\n" +
		"- Failed: every attempt that did not end ok; its latency is the client's.\n" +
		"- Lost: attempts sent without an outcome (sent − answered); a client timeout is answered, by the client.\n" +
		"- Replacements: instances the fleet replaced for failing health checks.\n\n")
	fmt.Fprintf(&b, "Files: `%s` (per second: outcomes, latencies, instances, shedding), `%s`, `%s`; per profile, `PROFILE/up.yaml` (the configuration it ran) and the processes' logs.\n",
		TimelineFile, SummaryFile, ChartPNGFile)
	return b.String()
}

func retryText(r RetrySpec) string {
	switch r.Mode {
	case "none":
		return "none"
	case "immediate":
		return fmt.Sprintf("up to %d, at once", r.Max)
	}
	return fmt.Sprintf("up to %d, after Retry-After plus jitter", r.Max)
}
