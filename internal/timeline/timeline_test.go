package timeline

import (
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestSeries(t *testing.T) {
	c := testkit.NewClock(time.Unix(1_000_000, 0))
	r := New(10, c.Now)
	for range 90 {
		r.Observe(health.OutcomeOK, 10*time.Millisecond)
	}
	for range 10 {
		r.Observe(health.OutcomeOK, 200*time.Millisecond)
	}
	r.Observe(health.OutcomeShed, 300*time.Microsecond)
	c.Advance(time.Second) // an empty second
	c.Advance(time.Second)
	r.Observe(health.OutcomeFailed, 2*time.Second)
	c.Advance(time.Second)

	s := r.Series(3)
	if len(s) != 3 {
		t.Fatalf("len = %d, want 3", len(s))
	}
	if s[0].Counts["ok"] != 100 || s[0].Counts["shed"] != 1 || s[0].Total != 101 {
		t.Errorf("first second = %+v", s[0])
	}
	if p := s[0].OKP50Ms; p < 9 || p > 11 {
		t.Errorf("ok p50 = %v ms, want about 10", p)
	}
	if p := s[0].OKP99Ms; p < 180 || p > 220 {
		t.Errorf("ok p99 = %v ms, want about 200", p)
	}
	if s[1].Total != 0 || s[1].OKP99Ms != 0 {
		t.Errorf("empty second = %+v", s[1])
	}
	if s[2].Counts["failed"] != 1 || s[2].FailedP99Ms < 1800 {
		t.Errorf("third second = %+v", s[2])
	}
	if !s[1].Time.Equal(time.Unix(1_000_001, 0)) {
		t.Errorf("time of second 2 = %v", s[1].Time)
	}
	if got := r.Totals(); got["ok"] != 100 || got["failed"] != 1 || got["shed"] != 1 {
		t.Errorf("totals = %v", got)
	}
}

func TestRingForgets(t *testing.T) {
	c := testkit.NewClock(time.Unix(5_000, 0))
	r := New(4, c.Now)
	r.Observe(health.OutcomeOK, time.Millisecond)
	c.Advance(10 * time.Second)
	for _, p := range r.Series(10) {
		if p.Total != 0 {
			t.Errorf("second %v still holds %d requests after the ring wrapped", p.Time, p.Total)
		}
	}
	if n := len(r.Series(10)); n != 3 {
		t.Errorf("Series(10) on a ring of 4 = %d points, want 3", n)
	}
}

func TestConcurrentObserve(t *testing.T) {
	r := New(60, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				r.Observe(health.Outcomes[i%len(health.Outcomes)], time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	var sum uint64
	for _, v := range r.Totals() {
		sum += v
	}
	if sum != 4000 {
		t.Errorf("total = %d, want 4000", sum)
	}
}

func BenchmarkObserve(b *testing.B) {
	r := New(300, nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Observe(health.OutcomeOK, 3*time.Millisecond)
		}
	})
}
