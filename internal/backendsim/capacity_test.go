package backendsim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// The capacity model through the Sim's handler: first in testing/synctest
// with a recorder, where every wait is exact, then over real loopback
// servers, where net/http must notice the callers that leave.

// call is one request to a Sim's handler in a synctest bubble.
type call struct {
	code   int
	body   string
	header http.Header
	at     time.Duration // since t0, when the handler returned
}

// serve starts a validate call in its own goroutine and waits until it is
// blocked (in the queue, or at work); the channel gets its result.
func serve(ctx context.Context, sim *Sim, ticket string) <-chan call {
	c := make(chan call, 1)
	go func() { // ends when the handler returns
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, PathValidate, strings.NewReader(`{"ticket":"`+ticket+`"}`))
		sim.Handler().ServeHTTP(rec, req)
		c <- call{rec.Code, strings.TrimSpace(rec.Body.String()), rec.Header(), time.Since(t0)}
	}()
	synctest.Wait()
	return c
}

func newSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	sim, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// TestCapacitySurge is the model's worked example (docs/BACKEND-SIM.md):
// two workers, 50 ms of work per call, 20 calls at once. They are served two
// at a time in arrival order, so the n-th (from 0) is answered after
// (n/2 + 1) × 50 ms and the last two wait 450 ms for a worker. With a queue
// timeout of 275 ms the calls that would wait 300 ms or more get a 503 at
// 275 ms instead.
func TestCapacitySurge(t *testing.T) {
	const work = 50 * time.Millisecond
	for _, queueTimeout := range []time.Duration{0, 275 * time.Millisecond} {
		t.Run(fmt.Sprintf("queue timeout %v", queueTimeout), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(t, Config{Latency: work, Capacity: 2, QueueTimeout: queueTimeout})
				var calls []<-chan call
				for range 20 {
					calls = append(calls, serve(t.Context(), sim, "valid-alice"))
				}
				if p := sim.Stats().Pool; p.Busy != 2 || p.Queued != 18 {
					t.Fatalf("busy %d, queued %d; want 2, 18", p.Busy, p.Queued)
				}
				var served, timedOut uint64
				for n, c := range calls {
					r := <-c
					wait := time.Duration(n/2) * work
					if queueTimeout > 0 && wait > queueTimeout {
						timedOut++
						if r.code != 503 || r.at != queueTimeout {
							t.Errorf("call %d: %d at %v, want 503 at %v", n, r.code, r.at, queueTimeout)
						}
						continue
					}
					served++
					if want := wait + work; r.code != 200 || r.at != want {
						t.Errorf("call %d: %d at %v, want 200 at %v", n, r.code, r.at, want)
					}
				}
				st := sim.Stats()
				if v := st.Paths[PathValidate]; v != (Outcomes{Valid: served, QueueTimeout: timedOut}) {
					t.Errorf("validate outcomes %+v, want %d valid, %d queue timeouts", v, served, timedOut)
				}
				p := st.Pool
				if p.PeakBusy != 2 || p.PeakQueued != 18 || p.Busy != 0 || p.Queued != 0 {
					t.Errorf("pool %+v, want peaks 2 and 18, now idle", p)
				}
				if s := p.Seconds[0]; s.Arrived != 20 || s.Started != served || s.QueueTimeout != timedOut {
					t.Errorf("second 0: %+v", s)
				}
				t.Logf("%d served, %d queue timeouts", served, timedOut)
			})
		})
	}
}

// TestCapacityQueueTimeout: a call that waits QueueTimeout for a worker is
// answered a plain 503.
func TestCapacityQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, Config{Mode: ModeHang, Capacity: 1, QueueTimeout: 100 * time.Millisecond})
		ctx, leave := context.WithCancel(t.Context())
		hung := serve(ctx, sim, "valid-a")
		r := <-serve(t.Context(), sim, "valid-b")
		if r.code != 503 || r.body != `{"error":"backend-sim: queue timeout"}` || r.at != 100*time.Millisecond {
			t.Errorf("queued call: %d %s at %v, want 503 queue timeout at 100ms", r.code, r.body, r.at)
		}
		for _, h := range []string{"Retry-After", "X-Spillway-Reason"} {
			if v := r.header.Get(h); v != "" {
				t.Errorf("%s: %q on a backend's 503", h, v)
			}
		}
		leave()
		<-hung
		if v := sim.Stats().Paths[PathValidate]; v != (Outcomes{Hung: 1, QueueTimeout: 1}) {
			t.Errorf("outcomes %+v", v)
		}
	})
}

// TestCapacityHangHoldsWorker: a hanging call holds its worker until its
// caller gives up, whatever the mode does meanwhile; a queued call reads the
// mode when it gets the worker, so after hang → up it is served.
func TestCapacityHangHoldsWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const work = 50 * time.Millisecond
		sim := newSim(t, Config{Mode: ModeHang, Capacity: 1, Latency: work})
		ctx, leave := context.WithCancel(t.Context())
		hung := serve(ctx, sim, "valid-a")
		queued := serve(t.Context(), sim, "valid-b")
		if err := sim.SetMode(ModeUp); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if p := sim.Stats().Pool; p.Busy != 1 || p.Queued != 1 {
			t.Fatalf("a second after hang → up: busy %d, queued %d; want the hung call still holding the worker", p.Busy, p.Queued)
		}
		leave()
		if r := <-hung; r.code != 200 || r.body != "" || r.at != time.Second {
			// The recorder's defaults: the handler wrote nothing.
			t.Errorf("hung call: %d %q at %v, want no answer at 1s", r.code, r.body, r.at)
		}
		r := <-queued
		if r.code != 200 || !strings.Contains(r.body, `"valid":true`) || r.at != time.Second+work {
			t.Errorf("queued call: %d %s at %v, want valid at %v", r.code, r.body, r.at, time.Second+work)
		}
		if v := sim.Stats().Paths[PathValidate]; v != (Outcomes{Hung: 1, Valid: 1}) {
			t.Errorf("outcomes %+v", v)
		}
	})
}

func TestCapacityCloseReleasesQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, Config{Mode: ModeHang, Capacity: 1})
		hung := serve(t.Context(), sim, "valid-a")
		queued := serve(t.Context(), sim, "valid-b")
		sim.Close()
		for name, c := range map[string]<-chan call{"hung": hung, "queued": queued} {
			r := <-c
			if r.code != 503 || !strings.Contains(r.body, "closed") || r.header.Get("Connection") != "close" {
				t.Errorf("%s call at close: %d %s %v, want 503 closed", name, r.code, r.body, r.header)
			}
		}
		if v := sim.Stats().Paths[PathValidate]; v != (Outcomes{Hung: 1, Abandoned: 1}) {
			t.Errorf("outcomes %+v", v)
		}
	})
}

// TestCapacityLive: capacity, queue size and timeout change through
// PUT /control while calls wait; a raised capacity serves the queue at once.
func TestCapacityLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, Config{Mode: ModeHang, Capacity: 1})
		put := func(body string) {
			t.Helper()
			rec := httptest.NewRecorder()
			sim.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/control", strings.NewReader(body)))
			if rec.Code != 200 {
				t.Fatalf("PUT /control %s: %d %s", body, rec.Code, rec.Body)
			}
		}
		ctx, leave := context.WithCancel(t.Context())
		defer leave()
		var calls []<-chan call
		for range 3 {
			calls = append(calls, serve(ctx, sim, "valid-a"))
		}
		put(`{"capacity":3}`)
		if p := sim.Stats().Pool; p.Busy != 3 || p.Queued != 0 {
			t.Errorf("after capacity 3: busy %d, queued %d", p.Busy, p.Queued)
		}
		put(`{"capacity":1,"queue_size":1,"queue_timeout":"1s"}`)
		waiting := serve(t.Context(), sim, "valid-b")
		if r := <-serve(t.Context(), sim, "valid-c"); r.code != 503 || !strings.Contains(r.body, "queue full") {
			t.Errorf("call beyond the queue: %d %s, want 503 queue full", r.code, r.body)
		}
		if r := <-waiting; r.code != 503 || !strings.Contains(r.body, "queue timeout") {
			t.Errorf("queued call: %d %s, want 503 queue timeout", r.code, r.body)
		}
		leave()
		for _, c := range calls {
			<-c
		}
		if v := sim.Stats().Paths[PathValidate]; v != (Outcomes{Hung: 3, QueueFull: 1, QueueTimeout: 1}) {
			t.Errorf("outcomes %+v", v)
		}
	})
}

// blockWorkers fills n workers of a Sim in mode hang with calls whose
// callers leave when the returned function is called; it waits for them to
// be gone.
func blockWorkers(t *testing.T, h *harness, n int) (leave func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { h.do(ctx, "POST", PathValidate, `{"ticket":"valid-blocker"}`) }) // ends on cancel
	}
	testkit.WaitFor(t, 5*time.Second, "the workers to be taken", func() bool { return h.sim.Stats().Pool.Busy == n })
	return func() { cancel(); wg.Wait() }
}

// TestCapacitySurgeLoopback: over a real server, 20 calls queue behind two
// busy workers; once the workers come free the calls are served two at a
// time, so the k-th answer comes no sooner than (k/2 + 1) × 50 ms later and
// the last caller waits at least half a second.
func TestCapacitySurgeLoopback(t *testing.T) {
	const (
		work  = 50 * time.Millisecond
		surge = 20
	)
	h := newHarness(t, Config{Mode: ModeHang, Capacity: 2, Latency: work})
	leave := blockWorkers(t, h, 2)
	if err := h.sim.SetMode(ModeUp); err != nil {
		t.Fatal(err)
	}
	type done struct {
		r       response
		elapsed time.Duration // since the caller sent it
		at      time.Time
	}
	results := make(chan done, surge)
	for range surge {
		go func() { // ends when answered, within the harness client's timeout
			start := time.Now()
			r := h.do(context.Background(), "POST", PathValidate, `{"ticket":"valid-alice"}`)
			results <- done{r, time.Since(start), time.Now()}
		}()
	}
	testkit.WaitFor(t, 5*time.Second, "the surge to queue", func() bool { return h.sim.Stats().Pool.Queued == surge })
	freed := time.Now()
	leave()

	var after []time.Duration // since the workers came free
	var slowest time.Duration
	for range surge {
		d := <-results
		if d.r.err != nil || d.r.status != 200 || !strings.Contains(d.r.body, `"valid":true`) {
			t.Fatalf("surge call: %+v", d.r)
		}
		after = append(after, d.at.Sub(freed))
		slowest = max(slowest, d.elapsed)
	}
	slices.Sort(after)
	for k, a := range after {
		if floor := time.Duration(k/2+1) * work; a < floor {
			t.Errorf("answer %d came %v after the workers came free, sooner than %v: more than 2 at work", k, a, floor)
		}
	}
	t.Logf("answers after the workers came free: %v; slowest caller waited %v", after, slowest)
	if slowest < surge/2*work {
		t.Errorf("slowest caller waited %v, want at least %v", slowest, surge/2*work)
	}
	st := h.sim.Stats()
	if p := st.Pool; p.PeakBusy != 2 || p.PeakQueued != surge {
		t.Errorf("peaks: busy %d, queued %d; want 2, %d", p.PeakBusy, p.PeakQueued, surge)
	}
	if v := st.Paths[PathValidate]; v != (Outcomes{Hung: 2, Valid: surge}) {
		t.Errorf("outcomes %+v", v)
	}
}

// TestCapacityQueueLoopback: over a real server, a full queue answers 503
// at once, a queue timeout answers 503, and a caller that gives up frees its
// place in the queue.
func TestCapacityQueueLoopback(t *testing.T) {
	h := newHarness(t, Config{Mode: ModeHang, Capacity: 1, QueueSize: 1, QueueTimeout: 200 * time.Millisecond})
	leave := blockWorkers(t, h, 1)
	defer leave()
	ctx := t.Context()

	queued := make(chan response, 1)
	start := time.Now()
	go func() { queued <- h.do(ctx, "POST", PathValidate, `{"ticket":"valid-b"}`) }() // ends at the queue timeout
	testkit.WaitFor(t, 5*time.Second, "a call to queue", func() bool { return h.sim.Stats().Pool.Queued == 1 })
	if r := h.do(ctx, "POST", PathValidate, `{"ticket":"valid-c"}`); r.status != 503 || r.body != `{"error":"backend-sim: queue full"}` {
		t.Errorf("call beyond the queue: %+v, want 503 queue full", r)
	}
	r := <-queued
	if r.status != 503 || r.body != `{"error":"backend-sim: queue timeout"}` || r.header.Get("Retry-After") != "" {
		t.Errorf("queued call: %+v, want a plain 503 queue timeout", r)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("queue timeout after %v, want at least 200ms", d)
	}

	// A caller that gives up leaves the queue at once.
	if err := h.sim.SetQueueTimeout(0); err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if r := h.do(gctx, "POST", PathValidate, `{"ticket":"valid-d"}`); r.err == nil {
		t.Errorf("caller with a 50ms deadline: %+v, want its own timeout", r)
	}
	testkit.WaitFor(t, 5*time.Second, "the caller to leave the queue", func() bool {
		st := h.sim.Stats()
		return st.Pool.Queued == 0 && st.Paths[PathValidate].Abandoned == 1
	})
	if v := h.outcomes(t, PathValidate); v != (Outcomes{Hung: 1, QueueFull: 1, QueueTimeout: 1, Abandoned: 1}) {
		t.Errorf("outcomes %+v", v)
	}
}

// TestCapacityOtherPaths: with every worker busy, mode down still drops a
// validate call at once (a crashed backend has no queue), and health checks
// take no worker.
func TestCapacityOtherPaths(t *testing.T) {
	h := newHarness(t, Config{Mode: ModeHang, Capacity: 1})
	leave := blockWorkers(t, h, 1)
	defer leave()
	ctx := t.Context()
	if err := h.sim.SetMode(ModeUp); err != nil {
		t.Fatal(err)
	}
	if r := h.do(ctx, "GET", PathHealthz, ""); r.status != 200 {
		t.Errorf("health check with the pool full: %+v, want 200", r)
	}
	if err := h.sim.SetMode(ModeDown); err != nil {
		t.Fatal(err)
	}
	if r := h.do(ctx, "POST", PathValidate, `{"ticket":"valid-b"}`); r.err == nil {
		t.Errorf("validate in mode down: %+v, want the connection dropped", r)
	}
	st := h.sim.Stats()
	if st.Pool.PeakQueued != 0 || st.Paths[PathValidate].Dropped != 1 {
		t.Errorf("peak queued %d, validate %+v: want nothing queued, 1 dropped", st.Pool.PeakQueued, st.Paths[PathValidate])
	}
}
