package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spillway-dev/spillway/internal/drill"
	"github.com/spillway-dev/spillway/internal/stack"
)

// runDrill replays the incident end to end and writes the report:
//
//	spillway drill [--scenario FILE] [--profile 2018|spillway|both] [--out DIR] [--time-scale X] [--data-plane lb|haproxy]
func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("drill", stderr)
	scenario := fs.String("scenario", "", "scenario `file` (default: the built-in 2018 incident)")
	profile := fs.String("profile", "both", "`profile` to run: 2018, spillway or both")
	out := fs.String("out", "drill-report", "`directory` for the report (timeline.json, summary.json, report.md, timeline.svg unless built with -tags noplot)")
	timeScale := fs.Float64("time-scale", 1, "multiply the scenario's schedule and tempo by `x` (0.5 runs it twice as fast)")
	dataPlane := fs.String("data-plane", drill.DataPlaneLB, "what carries the logins: lb, or haproxy (HAProxy on PATH driven by the controller: spillway up --data-plane haproxy)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	profiles, err := drill.ParseProfiles(*profile)
	if err != nil {
		fmt.Fprintf(stderr, "spillway drill: --profile: %v\n", err)
		return errUsage
	}
	if !(*timeScale > 0 && *timeScale <= 10) {
		fmt.Fprintf(stderr, "spillway drill: --time-scale: %v: must be in (0, 10]\n", *timeScale)
		return errUsage
	}
	switch *dataPlane {
	case drill.DataPlaneLB:
	case drill.DataPlaneHAProxy:
		if _, err := exec.LookPath("haproxy"); err != nil {
			return fmt.Errorf("--data-plane haproxy: %w", stack.ErrNoHAProxy)
		}
	default:
		fmt.Fprintf(stderr, "spillway drill: --data-plane %q: want %s or %s\n", *dataPlane, drill.DataPlaneLB, drill.DataPlaneHAProxy)
		return errUsage
	}
	// A drill runs in a terminal: a hangup ends it as Ctrl-C does, with
	// every process it started stopped and the report written so far.
	ctx, stopHangup := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stopHangup()
	sc := drill.Default()
	if *scenario != "" {
		if sc, err = drill.LoadScenario(*scenario); err != nil {
			return err
		}
	}
	rep, err := drill.Run(ctx, drill.Options{
		Scenario:  sc,
		Profiles:  profiles,
		OutDir:    *out,
		TimeScale: *timeScale,
		DataPlane: *dataPlane,
		Progress:  stdout,
	})
	if err != nil {
		return err
	}
	if drill.Charts {
		fmt.Fprintf(stdout, "\nreport: %s/%s (chart %s/%s)\n", *out, drill.ReportFile, *out, drill.ChartFile)
	} else {
		fmt.Fprintf(stdout, "\nreport: %s/%s (no chart: spillway built without plots, -tags noplot)\n", *out, drill.ReportFile)
	}
	for _, pr := range rep.Profiles {
		fmt.Fprintf(stdout, "  %-8s %s\n", pr.Profile, pr.Summary.Line())
	}
	return nil
}
