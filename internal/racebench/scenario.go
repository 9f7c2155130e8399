package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/loadgen"
)

// The schedule every scenario shares.
const (
	// breakAt is when the backend breaks, after the load's start.
	breakAt = 6 * time.Second
	// backendLatency is the backend's latency while it is up.
	backendLatency = 20 * time.Millisecond
	// clientTimeout bounds each attempt of the load.
	clientTimeout = 2 * time.Second
	// controlTimeout bounds each call to the backend's control endpoint.
	controlTimeout = 2 * time.Second
	// stormHeadroom: the storm's backend has capacity for this multiple
	// of the steady load.
	stormHeadroom = 1.2
	// stormQueueTimeout is how long a call may wait for one of the storm
	// backend's workers.
	stormQueueTimeout = 500 * time.Millisecond
)

// Scenario is one outage of the backend and what the clients do about it.
type Scenario struct {
	Name string
	// Mode is the backend's mode from breakAt for Outage; then it is up
	// again, and the load goes on for Tail.
	Mode   string
	Outage time.Duration
	Tail   time.Duration
	// Retries is how often a client retries an attempt that was not ok
	// (loadgen.RetryAfter: after the answer's Retry-After, plus jitter);
	// 0: never.
	Retries int
	// SlowLatency is mode slow's latency; 0 leaves the backend's default.
	SlowLatency time.Duration
	// Storm gives the backend a capacity (stormCapacity workers, a
	// stormQueueTimeout wait at most), so that a surge overwhelms it.
	Storm bool
}

// scenarios are the races, in their order of play.
var scenarios = []Scenario{
	{Name: "hang", Mode: "hang", Outage: 10 * time.Second, Tail: 10 * time.Second},
	{Name: "error", Mode: "error", Outage: 10 * time.Second, Tail: 10 * time.Second, Retries: 3},
	{Name: "slow", Mode: "slow", Outage: 10 * time.Second, Tail: 10 * time.Second, SlowLatency: 3 * time.Second},
	{Name: "storm", Mode: "hang", Outage: 20 * time.Second, Tail: 30 * time.Second, Retries: 3, Storm: true},
}

// findScenarios returns the scenarios named in the comma-separated list,
// in the list's order.
func findScenarios(list string) ([]Scenario, error) {
	var out []Scenario
	seen := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" || seen[name] {
			continue
		}
		i := -1
		for j, s := range scenarios {
			if s.Name == name {
				i = j
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("scenario %q: not one of hang, error, slow, storm", name)
		}
		seen[name] = true
		out = append(out, scenarios[i])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario in %q", list)
	}
	return out, nil
}

// duration is how long the load runs.
func (s Scenario) duration() time.Duration { return breakAt + s.Outage + s.Tail }

// describe says in one line what happens in the scenario.
func (s Scenario) describe(rate float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "backend mode %s", s.Mode)
	if s.SlowLatency > 0 {
		fmt.Fprintf(&b, " (slow_latency %v)", s.SlowLatency)
	}
	fmt.Fprintf(&b, " from %v to %v (outage %v); load %g logins/s until %v",
		seconds(breakAt), seconds(breakAt+s.Outage), seconds(s.Outage), rate, seconds(s.duration()))
	if s.Retries > 0 {
		fmt.Fprintf(&b, "; clients retry up to %d times after Retry-After", s.Retries)
	} else {
		b.WriteString("; no client retries")
	}
	if s.Storm {
		fmt.Fprintf(&b, "; backend capacity %d workers, queue timeout %v", stormCapacity(rate), stormQueueTimeout)
	}
	return b.String()
}

// seconds renders d as "6 s".
func seconds(d time.Duration) string { return fmt.Sprintf("%g s", d.Seconds()) }

// stormCapacity is the storm backend's number of workers: stormHeadroom ×
// the steady concurrency (rate × backendLatency), rounded; 7 for 300/s.
func stormCapacity(rate float64) int {
	return max(1, int(math.Round(stormHeadroom*rate*backendLatency.Seconds())))
}

// Trial is the summary of one scenario run against one front door, as
// kept in its directory's summary.json.
type Trial struct {
	Run      int       `json:"run"`
	Scenario string    `json:"scenario"`
	Door     string    `json:"door"`
	Started  time.Time `json:"started"`
	// Marks are when the backend broke and returned, as confirmed by
	// its control endpoint, and when the load ended.
	Marks Marks `json:"marks"`
	// ReturnWall is the return's wall-clock time, against which the
	// backend's seconds are read.
	ReturnWall time.Time      `json:"return_wall"`
	Load       loadgen.Result `json:"load"`
	Metrics    Metrics        `json:"metrics"`
	// Timeline counts the attempts per second of the load by outcome.
	Timeline []SecondCounts `json:"timeline"`
	// PoolSeconds are the backend's per-second pool figures.
	PoolSeconds []backendsim.Second `json:"pool_seconds"`
	// Notes are oddities worth a reader's attention.
	Notes []string `json:"notes,omitempty"`
	// Err is why the trial has no figures.
	Err string `json:"error,omitempty"`
}

// trialSpec names one trial and where its files go.
type trialSpec struct {
	Run      int
	Scenario Scenario
	Door     string
	Dir      string
}

// runTrial starts a fresh topology for spec, runs the scenario's load and
// outage against it, stops every process and returns the trial's figures.
func (b *bench) runTrial(ctx context.Context, spec trialSpec) (*Trial, error) {
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, err
	}
	topo, err := b.startTopology(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer topo.stop()
	bc := &backendsim.Client{BaseURL: topo.backendURL, HTTP: b.probe}

	sc := spec.Scenario
	var mu sync.Mutex
	recs := make([]Record, 0, int(b.rate*sc.duration().Seconds()*1.5))
	cfg := loadgen.Config{
		URL:      topo.frontURL + "/v1/login",
		Header:   http.Header{"Content-Type": {"application/json"}},
		Body:     func(i int) []byte { return fmt.Appendf(nil, `{"ticket":"valid-%d"}`, i) },
		Rate:     b.rate,
		Duration: sc.duration(),
		Timeout:  clientTimeout,
	}
	if sc.Retries > 0 {
		cfg.Retry = loadgen.RetryPolicy{Mode: loadgen.RetryAfter, MaxRetries: sc.Retries}
	}

	rctx, cancel := context.WithTimeout(ctx, controlTimeout)
	_, err = bc.ResetStats(rctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("reset the backend's stats: %w", err)
	}
	t0 := time.Now()
	cfg.OnResult = func(start time.Time, o health.Outcome, d time.Duration) {
		r := Record{At: start.Sub(t0), Outcome: o, Latency: d}
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
	}
	tr := &Trial{Run: spec.Run, Scenario: sc.Name, Door: spec.Door, Started: t0}

	// The load runs in a goroutine of its own; this function waits for it
	// on every path.
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	type loadResult struct {
		res loadgen.Result
		err error
	}
	done := make(chan loadResult, 1)
	go func() {
		res, err := loadgen.Run(lctx, cfg, nil)
		done <- loadResult{res, err}
	}()
	// So do the watches for the first report of the outage and for the
	// front door's shedding.
	mark := func(probe func(context.Context) bool) <-chan time.Duration {
		c := make(chan time.Duration, 1)
		if probe == nil {
			c <- 0
			return c
		}
		go func() {
			at, ok := watch(lctx, t0.Add(breakAt), t0.Add(breakAt+sc.Outage), probe)
			if !ok {
				c <- 0
				return
			}
			c <- at.Sub(t0)
		}()
		return c
	}
	reported, shedding := mark(anyReportsDown(b.probe, topo.healthURLs)), mark(topo.doorShedding)
	marks, retWall, err := drive(lctx, bc, sc, t0)
	if err != nil {
		stopLoad()
		<-done
		<-reported
		<-shedding
		return nil, err
	}
	lr := <-done
	marks.Reported, marks.DoorShed = <-reported, <-shedding
	if lr.err != nil {
		return nil, fmt.Errorf("load: %w", lr.err)
	}
	marks.End = sc.duration()
	tr.Marks, tr.ReturnWall, tr.Load = marks, retWall, lr.res

	sctx, cancel := context.WithTimeout(ctx, controlTimeout)
	st, err := bc.Stats(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("backend stats: %w", err)
	}
	if topo.adminURL != "" {
		b.saveStatus(ctx, topo.adminURL+"/status", filepath.Join(spec.Dir, "lb-status.json"))
	}
	if spec.Door == doorController {
		tr.Notes = append(tr.Notes, controllerNotes(filepath.Join(spec.Dir, "controller.log"))...)
	}
	tr.PoolSeconds = st.Pool.Seconds
	if n := len(st.Pool.Seconds); n == 0 || st.Pool.Seconds[0].Start.After(retWall.Add(-time.Second)) {
		tr.Notes = append(tr.Notes, fmt.Sprintf("the backend's %d seconds of pool figures do not reach back to the return", n))
	}

	mu.Lock()
	all := recs
	mu.Unlock()
	tr.Metrics = measure(all, marks, lr.res.Lost(), lr.res.Retries, st.Pool.Seconds, retWall)
	tr.Timeline = perSecond(all)
	if int64(len(all)) != lr.res.Answered {
		tr.Notes = append(tr.Notes, fmt.Sprintf("%d records for %d answered attempts", len(all), lr.res.Answered))
	}
	if b.raw {
		if err := writeRaw(filepath.Join(spec.Dir, "records.json"), all); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// drive breaks the backend at t0+breakAt and brings it back Outage later.
// Each mark is when the backend confirmed the change. It returns the
// marks (without End) and the return's wall time.
func drive(ctx context.Context, bc *backendsim.Client, sc Scenario, t0 time.Time) (Marks, time.Time, error) {
	var m Marks
	set := func(at time.Duration, mode string) (time.Time, error) {
		if err := sleepUntil(ctx, t0.Add(at)); err != nil {
			return time.Time{}, err
		}
		cctx, cancel := context.WithTimeout(ctx, controlTimeout)
		defer cancel()
		if err := bc.SetMode(cctx, mode, backendLatency); err != nil {
			return time.Time{}, fmt.Errorf("backend mode %s: %w", mode, err)
		}
		return time.Now(), nil
	}
	brk, err := set(breakAt, sc.Mode)
	if err != nil {
		return m, time.Time{}, err
	}
	ret, err := set(breakAt+sc.Outage, "up")
	if err != nil {
		return m, time.Time{}, err
	}
	m.Break, m.Return = brk.Sub(t0), ret.Sub(t0)
	return m, ret, nil
}

// sleepUntil waits until at, or until ctx is done.
func sleepUntil(ctx context.Context, at time.Time) error {
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// saveStatus keeps the balancer's /status (its shedding and ramp
// decisions) for a reader who wants to know why; best effort.
func (b *bench) saveStatus(ctx context.Context, url, path string) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	res, err := b.probe.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err == nil {
		_ = os.WriteFile(path, data, 0o644)
	}
}

// writeRaw writes every attempt as [start_ms, outcome, latency_ms].
func writeRaw(path string, recs []Record) error {
	rows := make([][3]any, len(recs))
	for i, r := range recs {
		rows[i] = [3]any{ms(r.At), r.Outcome.String(), ms(r.Latency)}
	}
	data, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
