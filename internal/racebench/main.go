// Command racebench runs the recovery race: the same backend outages,
// played in one sitting against two front doors, each in front of the
// same three `spillway login` instances and one `spillway backend-sim`:
// (a) `spillway lb` with its defaults, (b) HAProxy composed as the seed's
// team planned it, and on request (-doors) (c) HAProxy driven by `spillway
// controller` on the configuration it prints (controller.go). It prints a
// markdown table per scenario and writes it, with every trial's summary
// and logs, to its output directory. It is a
// benchmark, run by scripts/bench-recovery.sh, not part of `go test`; its
// pure analysis functions are unit-tested.
//
// Contract: every trial starts its own processes on fresh 127.0.0.1 ports
// and stops them by PID before the next one starts, also when the trial
// fails or the command is interrupted (SIGINT, SIGTERM); on Linux they die
// with racebench even if it is killed (procgroup's parent-death signal).
// Traffic goes to 127.0.0.1 only. Every goroutine is owned by the trial
// that starts it and has ended when the trial returns. An interrupted run
// still writes the results of the trials it finished and exits 130.
//
// Usage:
//
//	racebench -spillway BIN [-haproxy BIN] [-runs 3] [-scenarios hang,error,slow,storm] [-doors spillway,haproxy[,controller]] [-rate 300] [-out DIR] [-raw]
//
// The scenarios, the measurements and their definitions are in
// scenario.go and analyze.go, and in the method section of results.md.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// bench is one invocation's settings and shared means.
type bench struct {
	spillway string // the spillway binary
	haproxy  string // the haproxy binary
	rate     float64
	raw      bool
	token    string // spillway lb's admin token
	sp       *procgroup.Spawner
	probe    *http.Client
	stdout   io.Writer
}

// progressf prints one progress line, timestamped.
func (b *bench) progressf(format string, a ...any) {
	fmt.Fprintf(b.stdout, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "racebench: interrupted")
		os.Exit(130)
	default:
		fmt.Fprintln(os.Stderr, "racebench:", err)
		os.Exit(1)
	}
}

// Limits of the flags.
const (
	maxRuns = 100
	maxRate = 10_000
)

// trialOverhead is roughly what a trial takes beyond its load: starting
// the processes, the last attempts' timeout, stopping them.
const trialOverhead = 3 * time.Second

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("racebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spillway := fs.String("spillway", "", "the spillway `binary` (required)")
	haproxy := fs.String("haproxy", "haproxy", "the haproxy `binary`")
	runs := fs.Int("runs", 3, "`n` runs of every scenario against every front door")
	list := fs.String("scenarios", "hang,error,slow,storm", "comma-separated `scenarios`: hang, error, slow, storm")
	rate := fs.Float64("rate", 300, "open-loop load in logins per `second`")
	out := fs.String("out", "bench-recovery-"+time.Now().Format("2006-01-02-150405"), "output `directory`")
	raw := fs.Bool("raw", false, "also keep every attempt of every trial (records.json)")
	doorList := fs.String("doors", doorSpillway+","+doorHAProxy, "comma-separated front `doors`: spillway, haproxy, controller (HAProxy driven by spillway controller)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *spillway == "" {
		return errors.New("-spillway: the spillway binary is required")
	}
	if *runs < 1 || *runs > maxRuns {
		return fmt.Errorf("-runs %d: must be in [1, %d]", *runs, maxRuns)
	}
	if !(*rate > 0 && *rate <= maxRate) {
		return fmt.Errorf("-rate %v: must be in (0, %d]", *rate, maxRate)
	}
	sel, err := findScenarios(*list)
	if err != nil {
		return fmt.Errorf("-scenarios: %w", err)
	}
	var order []string
	for d := range strings.SplitSeq(*doorList, ",") {
		if d != doorSpillway && d != doorHAProxy && d != doorController {
			return fmt.Errorf("-doors: %q: want %s, %s or %s", d, doorSpillway, doorHAProxy, doorController)
		}
		order = append(order, d)
	}
	b := &bench{rate: *rate, raw: *raw, token: rand.Text(), probe: newProbeClient(), stdout: stdout}
	if b.spillway, err = exec.LookPath(*spillway); err != nil {
		return fmt.Errorf("-spillway: %w", err)
	}
	if b.haproxy, err = exec.LookPath(*haproxy); err != nil {
		return fmt.Errorf("-haproxy: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	command := os.Getenv("RACEBENCH_COMMAND") // the script's own command line
	if command == "" {
		command = shellQuote(append([]string{"racebench"}, args...))
	}
	m := gatherMachine(ctx, b, command)
	fmt.Fprintf(stdout, "racebench: recovery race, spillway lb vs HAProxy\n")
	fmt.Fprintf(stdout, "  date      %s\n  command   %s\n  machine   %d CPUs, %s, kernel %s\n  go        %s\n  haproxy   %s\n  spillway  %s (%s, commit %s)\n  out       %s\n",
		m.Date, m.Command, m.NProc, m.CPU, m.Kernel, m.Go, m.HAProxy, m.Spillway, b.spillway, m.Commit, *out)
	for _, sc := range sel {
		if sc.Storm {
			c := stormCapacity(b.rate)
			fmt.Fprintf(stdout, "  storm     backend capacity %d workers × 1/%v = %g calls/s ≈ %.2f × the %g/s steady load; queue timeout %v\n",
				c, backendLatency, float64(c)/backendLatency.Seconds(), float64(c)/backendLatency.Seconds()/b.rate, b.rate, stormQueueTimeout)
		}
	}

	var specs []trialSpec
	var total time.Duration
	for r := 1; r <= *runs; r++ {
		for _, sc := range sel {
			for _, d := range order {
				dir := filepath.Join(*out, "trials", fmt.Sprintf("%d-%s-%s", r, sc.Name, d))
				specs = append(specs, trialSpec{Run: r, Scenario: sc, Door: d, Dir: dir})
				total += sc.duration() + trialOverhead
			}
		}
		// The first door rotates run by run.
		order = append(order[1:], order[0])
	}
	fmt.Fprintf(stdout, "  plan      %d trials, about %v\n\n", len(specs), total.Round(time.Minute))

	b.sp = procgroup.NewSpawner()
	defer b.sp.Close() // every trial has stopped its processes by then
	var trials []*Trial
	began := time.Now()
	left := total
	for i, spec := range specs {
		b.progressf("[%d/%d] run %d %s %s: load %v (about %v left)", i+1, len(specs), spec.Run, spec.Scenario.Name, spec.Door,
			spec.Scenario.duration(), left.Round(10*time.Second))
		left -= spec.Scenario.duration() + trialOverhead
		start := time.Now()
		t, err := b.runTrial(ctx, spec)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			b.progressf("  failed: %v", err)
			t = &Trial{Run: spec.Run, Scenario: spec.Scenario.Name, Door: spec.Door, Started: start, Err: err.Error()}
		} else {
			b.progressf("  %s", trialLine(t, time.Since(start)))
			for _, n := range t.Notes {
				b.progressf("  note: %s", n)
			}
		}
		if err := writeJSON(filepath.Join(spec.Dir, "summary.json"), t); err != nil {
			return err
		}
		trials = append(trials, t)
	}

	md := renderResults(m, sel, b.rate, *runs, trials, time.Since(began))
	if err := os.WriteFile(filepath.Join(*out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	type summary struct {
		Machine machine  `json:"machine"`
		Trials  []*Trial `json:"trials"`
	}
	slim := make([]*Trial, len(trials))
	for i, t := range trials {
		c := *t
		c.Timeline, c.PoolSeconds = nil, nil // in each trial's summary.json
		slim[i] = &c
	}
	if err := writeJSON(filepath.Join(*out, "results.json"), summary{m, slim}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\nresults in %s (took %v)\n", md, *out, time.Since(began).Round(time.Second))
	return ctx.Err()
}
