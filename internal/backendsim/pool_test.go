package backendsim

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The tests of the pool run in testing/synctest: time.Sleep in a bubble
// advances the bubble's clock at once, so the waits below are exact and
// cost nothing.

// t0 is the bubble's clock at start: midnight UTC, 2000-01-01.
var t0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// newPool returns a pool with the limits.
func newPool(capacity, queueSize int, queueTimeout time.Duration) *pool {
	p := &pool{}
	p.setLimits(capacity, queueSize, queueTimeout)
	return p
}

// mustAcquire takes a worker that must be free.
func mustAcquire(t *testing.T, p *pool) func() {
	t.Helper()
	release, err := p.acquire(t.Context())
	if err != nil {
		t.Fatalf("acquire with a free worker: %v", err)
	}
	return release
}

// result is what a queued acquire returned, and when.
type result struct {
	release func()
	err     error
	at      time.Duration // since t0
}

// enqueue starts an acquire in its own goroutine and waits until it is
// blocked, in the queue; the channel gets its result.
func enqueue(ctx context.Context, p *pool) <-chan result {
	c := make(chan result, 1)
	go func() { // ends when the acquire does
		release, err := p.acquire(ctx)
		c <- result{release, err, time.Since(t0)}
	}()
	synctest.Wait()
	return c
}

// ready reports whether c has a result, without waiting for one.
func ready(c <-chan result) bool {
	synctest.Wait()
	return len(c) > 0
}

func levels(p *pool) (busy, queued int) {
	st := p.snapshot(false)
	return st.Busy, st.Queued
}

func TestPoolFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const work = 50 * time.Millisecond
		p := newPool(1, 0, 0)
		first := mustAcquire(t, p)
		var waiting []<-chan result
		for range 4 {
			waiting = append(waiting, enqueue(t.Context(), p))
		}
		if b, q := levels(p); b != 1 || q != 4 {
			t.Fatalf("busy %d, queued %d; want 1, 4", b, q)
		}
		time.Sleep(work) // the first call's work
		first()
		// Each call gets the worker when the one before it is done, in
		// arrival order: the n-th waits n × work.
		for i, c := range waiting {
			r := <-c
			if r.err != nil {
				t.Fatalf("waiter %d: %v", i, r.err)
			}
			if want := time.Duration(i+1) * work; r.at != want {
				t.Errorf("waiter %d got the worker at %v, want %v", i, r.at, want)
			}
			for _, later := range waiting[i+1:] {
				if ready(later) {
					t.Fatalf("a later waiter got the worker while waiter %d held it", i)
				}
			}
			time.Sleep(work)
			r.release()
		}
		if b, q := levels(p); b != 0 || q != 0 {
			t.Errorf("busy %d, queued %d at the end", b, q)
		}
	})
}

func TestPoolQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(1, 0, time.Second)
		release := mustAcquire(t, p)
		a := enqueue(t.Context(), p)
		// A new timeout applies to calls that arrive from now on.
		p.setLimits(1, 0, 3*time.Second)
		b := enqueue(t.Context(), p)

		ra := <-a
		if !errors.Is(ra.err, errQueueTimeout) || ra.at != time.Second {
			t.Errorf("first waiter: %v at %v, want a queue timeout at 1s", ra.err, ra.at)
		}
		rb := <-b
		if !errors.Is(rb.err, errQueueTimeout) || rb.at != 3*time.Second {
			t.Errorf("second waiter: %v at %v, want a queue timeout at 3s", rb.err, rb.at)
		}
		if _, q := levels(p); q != 0 {
			t.Errorf("queued %d after the timeouts", q)
		}
		release()
		if b, _ := levels(p); b != 0 {
			t.Errorf("busy %d after release: a timed-out waiter got the worker", b)
		}
		st := p.snapshot(false)
		var timeouts uint64
		for _, s := range st.Seconds {
			timeouts += s.QueueTimeout
		}
		if timeouts != 2 || st.Seconds[1].QueueTimeout != 1 || st.Seconds[3].QueueTimeout != 1 {
			t.Errorf("timeouts by second: %+v", st.Seconds)
		}
	})
}

func TestPoolCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(1, 0, 0)
		release := mustAcquire(t, p)
		ctx, cancel := context.WithCancelCause(t.Context())
		gone := errors.New("client gone")
		a := enqueue(ctx, p)
		b := enqueue(t.Context(), p)
		time.Sleep(time.Second)
		cancel(gone)
		if ra := <-a; !errors.Is(ra.err, gone) || ra.release != nil || ra.at != time.Second {
			t.Errorf("cancelled waiter: %v at %v, want its context's cause at 1s", ra.err, ra.at)
		}
		if b, q := levels(p); b != 1 || q != 1 {
			t.Errorf("busy %d, queued %d after the cancel; want 1, 1", b, q)
		}
		// The worker goes to the next waiter, not to the one that left.
		release()
		rb := <-b
		if rb.err != nil {
			t.Fatal(rb.err)
		}
		rb.release()
		if b, q := levels(p); b != 0 || q != 0 {
			t.Errorf("busy %d, queued %d at the end", b, q)
		}
		if s := p.snapshot(false).Seconds[1]; s.Abandoned != 1 || s.Started != 1 {
			t.Errorf("second 1: %+v, want 1 abandoned, 1 started", s)
		}
	})
}

func TestPoolQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(1, 2, 0)
		release := mustAcquire(t, p)
		a, b := enqueue(t.Context(), p), enqueue(t.Context(), p)
		if _, err := p.acquire(t.Context()); !errors.Is(err, errQueueFull) {
			t.Errorf("acquire with a full queue: %v, want errQueueFull", err)
		}
		release()
		ra := <-a
		ra.release()
		rb := <-b
		rb.release()
		if ra.err != nil || rb.err != nil {
			t.Errorf("waiters: %v, %v", ra.err, rb.err)
		}
		s := p.snapshot(false).Seconds[0]
		if s.Arrived != 4 || s.Started != 3 || s.QueueFull != 1 || s.PeakQueued != 2 || s.PeakBusy != 1 {
			t.Errorf("second 0: %+v", s)
		}
	})
}

func TestPoolCapacityLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(1, 0, 0)
		held := []func(){mustAcquire(t, p)}
		var waiting []<-chan result
		for range 3 {
			waiting = append(waiting, enqueue(t.Context(), p))
		}
		// Raising the capacity hands workers to the oldest waiters at
		// once.
		p.setLimits(3, 0, 0)
		for i, c := range waiting[:2] {
			if !ready(c) {
				t.Fatalf("waiter %d still waits with capacity 3", i)
			}
			held = append(held, (<-c).release)
		}
		if ready(waiting[2]) {
			t.Fatal("the third waiter got a worker beyond the capacity")
		}
		// Lifting the limit admits everyone.
		p.setLimits(0, 0, 0)
		if !ready(waiting[2]) {
			t.Fatal("the third waiter still waits without a limit")
		}
		held = append(held, (<-waiting[2]).release)

		// Lowering it takes no worker away; new calls wait until the
		// busy ones are fewer than the capacity.
		p.setLimits(1, 0, 0)
		if b, _ := levels(p); b != 4 {
			t.Fatalf("busy %d after lowering the capacity, want 4", b)
		}
		late := enqueue(t.Context(), p)
		for _, release := range held[:3] {
			release()
			if ready(late) {
				t.Fatal("a new call got a worker while the busy ones were not below the capacity")
			}
		}
		held[3]()
		r := <-late
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.release()
	})
}

func TestPoolClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(1, 0, 0)
		release := mustAcquire(t, p)
		a, b := enqueue(t.Context(), p), enqueue(t.Context(), p)
		p.close()
		for _, c := range []<-chan result{a, b} {
			if r := <-c; !errors.Is(r.err, errPoolClosed) {
				t.Errorf("waiter at close: %v, want errPoolClosed", r.err)
			}
		}
		if _, err := p.acquire(t.Context()); !errors.Is(err, errPoolClosed) {
			t.Errorf("acquire that would wait after close: %v, want errPoolClosed", err)
		}
		// A worker that is free is still given: only waiting ends.
		release()
		mustAcquire(t, p)()
		s := p.snapshot(false).Seconds[0]
		if s.Arrived != 5 || s.Started != 2 || s.Abandoned != 3 {
			t.Errorf("second 0: %+v, want 5 arrived = 2 started + 3 abandoned", s)
		}
	})
}

// TestPoolSeconds follows the per-second figures through busy and quiet
// seconds: a second in which nothing happens takes the levels that held
// through it.
func TestPoolSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPool(2, 0, 0)
		r1, r2 := mustAcquire(t, p), mustAcquire(t, p)
		q := enqueue(t.Context(), p)
		time.Sleep(1500 * time.Millisecond)
		r1() // at 1.5s: the waiter takes the worker
		r3 := (<-q).release
		time.Sleep(1700 * time.Millisecond)
		r2() // at 3.2s
		r3()

		sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
		want := PoolStats{
			PeakBusy: 2, PeakQueued: 1,
			Seconds: []Second{
				{Start: sec(0), PeakBusy: 2, PeakQueued: 1, Arrived: 3, Started: 2},
				{Start: sec(1), PeakBusy: 2, PeakQueued: 1, Started: 1},
				{Start: sec(2), PeakBusy: 2},
				{Start: sec(3), PeakBusy: 2},
			},
		}
		if diff := cmp.Diff(want, p.snapshot(false)); diff != "" {
			t.Errorf("snapshot (-want +got):\n%s", diff)
		}

		// A reset starts afresh from the current levels.
		held := mustAcquire(t, p)
		p.snapshot(true)
		want = PoolStats{Busy: 1, PeakBusy: 1, Seconds: []Second{{Start: sec(3), PeakBusy: 1}}}
		if diff := cmp.Diff(want, p.snapshot(false)); diff != "" {
			t.Errorf("after reset (-want +got):\n%s", diff)
		}

		// The ring keeps SecondsKept seconds, the quiet ones filled in.
		time.Sleep(400 * time.Second)
		st := p.snapshot(false)
		if n := len(st.Seconds); n != SecondsKept {
			t.Fatalf("%d seconds kept, want %d", n, SecondsKept)
		}
		first, last := st.Seconds[0], st.Seconds[SecondsKept-1]
		if !last.Start.Equal(sec(403)) || !first.Start.Equal(sec(403-SecondsKept+1)) || first.PeakBusy != 1 || last.PeakBusy != 1 {
			t.Errorf("seconds from %+v to %+v, want %v to %v with one busy worker", first, last, sec(403-SecondsKept+1), sec(403))
		}
		for i := 1; i < len(st.Seconds); i++ {
			if d := st.Seconds[i].Start.Sub(st.Seconds[i-1].Start); d != time.Second {
				t.Fatalf("seconds %d and %d are %v apart", i-1, i, d)
			}
		}
		held()
	})
}

func TestSecondRingClockStepsBack(t *testing.T) {
	var r secondRing
	r.advance(t0.Add(10*time.Second), 1, 0)
	r.cur().Arrived++
	r.advance(t0.Add(5*time.Second), 3, 3) // the wall clock stepped back
	r.cur().Arrived++
	want := []Second{{Start: t0.Add(10 * time.Second), PeakBusy: 1, Arrived: 2}}
	if diff := cmp.Diff(want, r.list()); diff != "" {
		t.Errorf("seconds (-want +got):\n%s", diff)
	}
}
