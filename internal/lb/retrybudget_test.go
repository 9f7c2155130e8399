package lb

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newBudget returns a budget that has seen requests requests at t0.
func newBudget(t testing.TB, c RetryBudgetConfig, requests int) *RetryBudget {
	t.Helper()
	b, err := NewRetryBudget(c)
	if err != nil {
		t.Fatal(err)
	}
	for range requests {
		b.Request(t0)
	}
	return b
}

// noFloor is the default budget without its floor of retries per second:
// only the ratio of requests counts.
func noFloor() RetryBudgetConfig {
	c := DefaultRetryBudgetConfig()
	c.MinRetriesPerSecond = 0
	return c
}

// retries returns how many TryRetry calls succeed out of n at now.
func retries(b *RetryBudget, now time.Time, n int) int {
	ok := 0
	for range n {
		if b.TryRetry(now) {
			ok++
		}
	}
	return ok
}

func TestRetryBudget(t *testing.T) {
	noMin := noFloor()
	tests := []struct {
		name     string
		cfg      RetryBudgetConfig
		requests int
		want     int // retries allowed, asking for 10000
	}{
		{"20% of requests", noMin, 1000, 200},
		{"no requests, no floor: none", noMin, 0, 0},
		{"floor alone: 10/s × 10s", DefaultRetryBudgetConfig(), 0, 100},
		{"ratio plus floor", DefaultRetryBudgetConfig(), 1000, 300},
		{"ratio 0 and floor 0 disable retries", RetryBudgetConfig{Window: 10 * time.Second}, 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(t, tt.cfg, tt.requests)
			if got := retries(b, t0, 10000); got != tt.want {
				t.Fatalf("allowed %d retries, want %d", got, tt.want)
			}
			reqs, rets := b.Counts(t0)
			if reqs != int64(tt.requests) || rets != int64(tt.want) {
				t.Fatalf("Counts = %d, %d", reqs, rets)
			}
		})
	}
}

func TestRetryBudgetSlides(t *testing.T) {
	b := newBudget(t, noFloor(), 1000)
	if got := retries(b, at(time.Second), 150); got != 150 {
		t.Fatalf("retried %d of 150", got)
	}
	// 9.5s later the deposits still count, and so do the retries.
	if got := retries(b, at(9500*time.Millisecond), 100); got != 50 {
		t.Fatalf("at 9.5s: %d retries, want the 50 left", got)
	}
	// At 10s the first bucket has left the window: no deposit, retries
	// from t0+1s still count.
	if reqs, rets := b.Counts(at(10 * time.Second)); reqs != 0 || rets != 200 {
		t.Fatalf("at 10s: Counts = %d, %d; want 0, 200", reqs, rets)
	}
	if b.TryRetry(at(10 * time.Second)) {
		t.Fatal("at 10s: retry allowed without deposits")
	}
	// After a full window everything has expired and the ring is reused.
	for range 10 {
		b.Request(at(30 * time.Second))
	}
	if got := retries(b, at(30*time.Second), 10); got != 2 {
		t.Fatalf("at 30s: %d retries, want 2", got)
	}
	// A stale now (older than the ring) is dropped, not counted in a
	// newer bucket.
	b.Request(at(-time.Hour))
	if reqs, _ := b.Counts(at(30 * time.Second)); reqs != 10 {
		t.Fatalf("stale request counted: %d", reqs)
	}
}

// TestRetryBudgetConcurrent checks that concurrent retries never overshoot
// the budget (run with -race).
func TestRetryBudgetConcurrent(t *testing.T) {
	b := newBudget(t, noFloor(), 5000)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if b.TryRetry(t0) {
					ok.Add(1)
				}
				b.Request(t0)
			}
		})
	}
	wg.Wait()
	// 5000 + 8000 requests → at most 2600 retries; at least the 1000
	// allowed before any concurrent request landed.
	if n := ok.Load(); n > 2600 || n < 1000 {
		t.Fatalf("%d retries allowed", n)
	}
	reqs, rets := b.Counts(t0)
	if reqs != 13000 || float64(rets) > 0.2*float64(reqs) {
		t.Fatalf("Counts = %d, %d", reqs, rets)
	}
}

func TestRetryBudgetConfigValidate(t *testing.T) {
	if err := DefaultRetryBudgetConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	_, err := NewRetryBudget(RetryBudgetConfig{Ratio: -1, MinRetriesPerSecond: -1, Window: time.Millisecond})
	for _, want := range []string{"ratio: -1", "min_retries_per_second: -1", "window: 1ms: must be at least 100ms"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func BenchmarkRetryBudget(b *testing.B) {
	rb := newBudget(b, DefaultRetryBudgetConfig(), 0)
	now := t0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			rb.Request(now)
			if i%10 == 0 {
				rb.TryRetry(now)
			}
			i++
		}
	})
}
