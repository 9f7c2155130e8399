package admission

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBoundUnderConcurrency: whatever the load, never more than the limit
// (the highest limit set) is in flight, and every request is served.
func TestBoundUnderConcurrency(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		flap     []int // limits SetLimit cycles through while the load runs
		maxBound int
	}{
		{name: "static", cfg: Config{Limit: 4}, maxBound: 4},
		{name: "static with SetLimit", cfg: Config{Limit: 4}, flap: []int{2, 8, 0, 5}, maxBound: 8},
		{name: "aimd", cfg: Config{Algorithm: "aimd", Limit: 4, MinLimit: 2, MaxLimit: 6}, maxBound: 6},
	}
	const workers, rounds = 64, 200
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.QueueSize = workers
			tt.cfg.QueueTimeout = time.Hour // never reached: the test is about the bound
			l := mustNew(t, tt.cfg, Options{})

			stop := make(chan struct{})
			var flapper sync.WaitGroup
			if len(tt.flap) > 0 {
				flapper.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							l.SetLimit(tt.flap[0])
							return
						default:
							l.SetLimit(tt.flap[i%len(tt.flap)])
							runtime.Gosched()
						}
					}
				})
			}

			var cur, peak, served atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range rounds {
						tk, err := l.Acquire(context.Background())
						if err != nil {
							t.Errorf("Acquire: %v", err)
							return
						}
						n := cur.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						runtime.Gosched()
						cur.Add(-1)
						served.Add(1)
						tk.Release(Success)
					}
				})
			}
			wg.Wait()
			close(stop)
			flapper.Wait()

			if p := peak.Load(); p > int64(tt.maxBound) || p < 1 {
				t.Errorf("peak in flight = %d, want 1..%d", p, tt.maxBound)
			}
			if s := served.Load(); s != workers*rounds {
				t.Errorf("served %d requests, want %d", s, workers*rounds)
			}
			if got := l.Stats(); got.InFlight != 0 || got.Queue != 0 {
				t.Errorf("after the load Stats() = %+v, want nothing in flight or queued", got)
			}
		})
	}
}

// waitQueued starts Acquire in a goroutine and returns once it is queued
// (inside a synctest bubble). The result arrives on the returned channel.
func waitQueued(t *testing.T, l *Limiter, ctx context.Context) <-chan acquired {
	t.Helper()
	ch := make(chan acquired, 1)
	before := l.QueueLen()
	go func() {
		tk, err := l.Acquire(ctx)
		ch <- acquired{tk, err}
	}()
	synctest.Wait()
	if got := l.QueueLen(); got != before+1 {
		t.Fatalf("QueueLen() = %d after queuing one more, want %d", got, before+1)
	}
	return ch
}

type acquired struct {
	t   Ticket
	err error
}

// admitted waits for the queued Acquire that reports on ch, which must
// succeed, and releases its ticket.
func admitted(t *testing.T, ch <-chan acquired) {
	t.Helper()
	a := <-ch
	if a.err != nil {
		t.Fatalf("queued Acquire: %v", a.err)
	}
	a.t.Release(Success)
}

// wantRejected checks the count of the limiter name's rejections for
// reason.
func wantRejected(t *testing.T, reg *prometheus.Registry, name, reason string, want float64) {
	t.Helper()
	if got := metricValue(t, reg, "spillway_admission_rejected_total", map[string]string{"name": name, "reason": reason}); got != want {
		t.Errorf("rejected_total{name=%q,reason=%q} = %v, want %v", name, reason, got, want)
	}
}

func TestQueueFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, Config{Limit: 1, QueueSize: 8, QueueTimeout: time.Minute}, Options{})
		held := mustAcquire(t, l)
		const n = 6
		order := make(chan int, n)
		for i := range n {
			ch := waitQueued(t, l, t.Context())
			go func() {
				a := <-ch
				if a.err != nil {
					t.Errorf("waiter %d: %v", i, a.err)
					return
				}
				order <- i
				a.t.Release(Success)
			}()
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1, Queue: n})
		held.Release(Success)
		for want := range n {
			if got := <-order; got != want {
				t.Fatalf("waiter %d got the slot, want waiter %d (FIFO)", got, want)
			}
		}
		synctest.Wait()
		wantStats(t, l, Stats{Limit: 1})
	})
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	tests := []struct {
		name      string
		queueSize int
	}{
		{"no queue", 0},
		{"queue of two", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				l := mustNew(t, Config{Limit: 1, QueueSize: tt.queueSize}, Options{Name: "login", Registerer: reg})
				held := mustAcquire(t, l)
				var queued []<-chan acquired
				for range tt.queueSize {
					queued = append(queued, waitQueued(t, l, t.Context()))
				}
				start := time.Now()
				_, err := l.Acquire(t.Context())
				if !errors.Is(err, ErrQueueFull) || !errors.Is(err, ErrRejected) {
					t.Errorf("Acquire with a full queue = %v, want ErrQueueFull matching ErrRejected", err)
				}
				if errors.Is(err, ErrQueueTimeout) {
					t.Errorf("%v matches ErrQueueTimeout", err)
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("rejection took %v, want no wait", d)
				}
				wantRejected(t, reg, "login", "queue_full", 1)
				held.Release(Success)
				for _, ch := range queued {
					admitted(t, ch)
				}
				wantStats(t, l, Stats{Limit: 1})
			})
		})
	}
}

func TestQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		l := mustNew(t, Config{Limit: 1, QueueSize: 2, QueueTimeout: 250 * time.Millisecond},
			Options{Registerer: reg})
		held := mustAcquire(t, l)
		start := time.Now()
		_, err := l.Acquire(t.Context())
		if !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, ErrRejected) {
			t.Errorf("Acquire = %v, want ErrQueueTimeout matching ErrRejected", err)
		}
		if d := time.Since(start); d != 250*time.Millisecond {
			t.Errorf("rejected after %v, want QueueTimeout 250ms", d)
		}
		wantRejected(t, reg, "default", "queue_timeout", 1)
		wantStats(t, l, Stats{Limit: 1, InFlight: 1})

		// The recycled waiter's timer starts afresh.
		ch := waitQueued(t, l, t.Context())
		time.Sleep(200 * time.Millisecond) // fake time in the bubble
		held.Release(Success)
		admitted(t, ch) // within the timeout
		wantStats(t, l, Stats{Limit: 1})
	})
}

func TestContextEndsWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, Config{Limit: 1, QueueSize: 2, QueueTimeout: time.Minute}, Options{})
		held := mustAcquire(t, l)
		ctx, cancel := context.WithCancelCause(t.Context())
		gone := errors.New("client gone")
		ch := waitQueued(t, l, ctx)
		cancel(gone)
		a := <-ch
		if !errors.Is(a.err, gone) || errors.Is(a.err, ErrRejected) {
			t.Errorf("Acquire = %v, want the context's cause and no rejection", a.err)
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1})

		// Already ended: not queued at all.
		if _, err := l.Acquire(ctx); !errors.Is(err, gone) {
			t.Errorf("Acquire with an ended context = %v, want its cause", err)
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1})
		held.Release(Success)
		wantStats(t, l, Stats{Limit: 1})
	})
}

// TestGrantRacesGivingUp: a slot handed to a waiter just as it gives up is
// used (timeout) or passed on (context), never lost.
func TestGrantRacesGivingUp(t *testing.T) {
	for _, cause := range []string{"context", "timeout"} {
		t.Run(cause, func(t *testing.T) {
			for range 50 {
				synctest.Test(t, func(t *testing.T) {
					l := mustNew(t, Config{Limit: 1, QueueSize: 2, QueueTimeout: time.Second}, Options{})
					held, _ := l.Acquire(t.Context())
					ctx, cancel := context.WithCancel(t.Context())
					defer cancel()
					first := waitQueued(t, l, ctx)
					second := waitQueued(t, l, t.Context())
					if cause == "context" {
						cancel()
					} else {
						// Both waiters' timers fire at this same instant.
						time.Sleep(time.Second)
					}
					held.Release(Success)
					for _, ch := range []<-chan acquired{first, second} {
						a := <-ch
						a.t.Release(Success) // the zero Ticket if rejected
					}
					synctest.Wait()
					if s := l.Stats(); s.Queue != 0 || s.InFlight != 0 {
						t.Fatalf("Stats() = %+v, want nothing in flight or queued", s)
					}
				})
			}
		})
	}
}

func TestSetLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, Config{Limit: 1, QueueSize: 4, QueueTimeout: time.Minute}, Options{})
		first := mustAcquire(t, l)
		var waiters []<-chan acquired
		for range 3 {
			waiters = append(waiters, waitQueued(t, l, t.Context()))
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1, Queue: 3})

		// Raising admits the oldest waiters at once.
		l.SetLimit(3)
		wantStats(t, l, Stats{Limit: 3, InFlight: 3, Queue: 1})
		a0, a1 := <-waiters[0], <-waiters[1]
		if a0.err != nil || a1.err != nil {
			t.Fatalf("admitted waiters: %v, %v", a0.err, a1.err)
		}

		// Lowering cancels nothing: all three stay in flight, and the
		// last waiter waits until in-flight falls below the new limit.
		l.SetLimit(1)
		wantStats(t, l, Stats{Limit: 1, InFlight: 3, Queue: 1})
		first.Release(Success)
		a0.t.Release(Success)
		synctest.Wait()
		wantStats(t, l, Stats{Limit: 1, InFlight: 1, Queue: 1})
		a1.t.Release(Success)
		a2 := <-waiters[2]
		if a2.err != nil {
			t.Fatal(a2.err)
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1})
		a2.t.Release(Success)

		// Zero sheds everything; negative counts as zero.
		l.SetLimit(-1)
		if _, err := l.Acquire(t.Context()); !errors.Is(err, ErrQueueTimeout) {
			t.Errorf("Acquire at limit 0 = %v, want ErrQueueTimeout", err)
		}
		wantStats(t, l, Stats{Limit: 0})
	})
}

// TestStaticReadsNoClock: static mode never calls Options.Now.
func TestStaticReadsNoClock(t *testing.T) {
	var calls atomic.Int64
	now := func() time.Time { calls.Add(1); return time.Time{} }
	l := mustNew(t, Config{Limit: 2}, Options{Now: now})
	for range 3 {
		tk := mustAcquire(t, l)
		tk.Release(Success)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("Options.Now called %d times in static mode, want 0", n)
	}
}

func TestRelease(t *testing.T) {
	l := mustNew(t, Config{Limit: 2}, Options{})
	Ticket{}.Release(Success) // the zero Ticket: no-op
	tk := mustAcquire(t, l)
	tk.Release(Success)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "released more often") {
			t.Errorf("second Release recovered %v, want a panic", r)
		}
	}()
	tk.Release(Success)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	login := mustNew(t, Config{Limit: 3, QueueSize: 1}, Options{Name: "login", Registerer: reg})
	edge := mustNew(t, Config{Limit: 7}, Options{Name: "edge", Registerer: reg})
	if _, err := New(Config{}, Options{Name: "edge", Registerer: reg}); err == nil {
		t.Error("New with a name already registered: nil error, want one")
	}
	tk, err := login.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Release(Success)
	edge.SetLimit(9)

	tests := []struct {
		metric, name string
		want         float64
	}{
		{"spillway_admission_limit", "login", 3},
		{"spillway_admission_in_flight", "login", 1},
		{"spillway_admission_queue_length", "login", 0},
		{"spillway_admission_limit", "edge", 9},
		{"spillway_admission_in_flight", "edge", 0},
	}
	for _, tt := range tests {
		if got := metricValue(t, reg, tt.metric, map[string]string{"name": tt.name}); got != tt.want {
			t.Errorf("%s{name=%q} = %v, want %v", tt.metric, tt.name, got, tt.want)
		}
	}
	for _, reason := range []string{"queue_full", "queue_timeout"} {
		wantRejected(t, reg, "edge", reason, 0) // before any rejection
	}
}
