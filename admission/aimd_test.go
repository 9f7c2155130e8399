package admission

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestAIMDObserve(t *testing.T) {
	t0 := time.Date(2018, 7, 1, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name         string
		limit        float64
		lastDecrease time.Time
		start, now   time.Time
		inFlight     int
		outcome      Outcome
		wantLimit    float64
		wantDecrease time.Time
	}{
		{name: "fast success, busy: grow by 1/limit",
			limit: 10, start: ms(0), now: ms(50), inFlight: 5, outcome: Success, wantLimit: 10.1},
		{name: "fast success, idle: hold",
			limit: 10, start: ms(0), now: ms(50), inFlight: 4, outcome: Success, wantLimit: 10},
		{name: "growth capped at max",
			limit: 20, start: ms(0), now: ms(50), inFlight: 20, outcome: Success, wantLimit: 20},
		{name: "at target is not overload",
			limit: 10, start: ms(0), now: ms(100), inFlight: 10, outcome: Success, wantLimit: 10.1},
		{name: "slow success: back off",
			limit: 10, start: ms(0), now: ms(101), inFlight: 10, outcome: Success, wantLimit: 5, wantDecrease: ms(101)},
		{name: "dropped: back off",
			limit: 10, start: ms(0), now: ms(10), inFlight: 1, outcome: Dropped, wantLimit: 5, wantDecrease: ms(10)},
		{name: "back off rounds down",
			limit: 9, start: ms(0), now: ms(10), inFlight: 1, outcome: Dropped, wantLimit: 4, wantDecrease: ms(10)},
		{name: "back off floored at min",
			limit: 3, start: ms(0), now: ms(10), inFlight: 1, outcome: Dropped, wantLimit: 2, wantDecrease: ms(10)},
		{name: "admitted before the last decrease: already answered",
			limit: 5, lastDecrease: ms(200), start: ms(100), now: ms(300), inFlight: 5, outcome: Dropped,
			wantLimit: 5, wantDecrease: ms(200)},
		{name: "admitted at the last decrease: already answered",
			limit: 5, lastDecrease: ms(200), start: ms(200), now: ms(400), inFlight: 5, outcome: Success,
			wantLimit: 5, wantDecrease: ms(200)},
		{name: "admitted after the last decrease: back off again",
			limit: 5, lastDecrease: ms(200), start: ms(201), now: ms(400), inFlight: 5, outcome: Success,
			wantLimit: 2, wantDecrease: ms(400)},
		{name: "ignore: nothing",
			limit: 10, start: ms(0), now: ms(500), inFlight: 10, outcome: Ignore, wantLimit: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAIMD(Config{Limit: 1, MinLimit: 2, MaxLimit: 20, LatencyTarget: 100 * time.Millisecond, Backoff: 0.5})
			a.limit, a.lastDecrease = tt.limit, tt.lastDecrease
			a.observe(tt.start, tt.now, tt.inFlight, tt.outcome)
			if a.limit != tt.wantLimit {
				t.Errorf("limit = %v, want %v", a.limit, tt.wantLimit)
			}
			if !a.lastDecrease.Equal(tt.wantDecrease) {
				t.Errorf("lastDecrease = %v, want %v", a.lastDecrease, tt.wantDecrease)
			}
		})
	}
}

func TestAIMDSetClamps(t *testing.T) {
	a := newAIMD(Config{Limit: 8, MinLimit: 2, MaxLimit: 20, LatencyTarget: time.Second, Backoff: 0.5})
	for _, tt := range []struct{ in, want int }{{1, 2}, {-5, 2}, {7, 7}, {21, 20}} {
		if got := a.set(tt.in); got != tt.want {
			t.Errorf("set(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestLimiterAIMD drives the policy through a Limiter on a fake clock.
func TestLimiterAIMD(t *testing.T) {
	clock := testkit.NewClock(time.Date(2018, 7, 1, 12, 0, 0, 0, time.UTC))
	l := mustNew(t, Config{
		Algorithm: "aimd", Limit: 4, MinLimit: 2, MaxLimit: 6,
		LatencyTarget: 100 * time.Millisecond, Backoff: 0.5,
	}, Options{Now: clock.Now})
	ctx := t.Context()
	acquire := func() Ticket {
		t.Helper()
		tk, err := l.Acquire(ctx)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		return tk
	}

	// Fast successes with at least half the limit in use grow it by
	// 1/limit each: from 4, five make it 5 (4.25, 4.49, 4.71, 4.92, 5.12).
	for range 5 {
		a, b, c := acquire(), acquire(), acquire()
		clock.Advance(10 * time.Millisecond)
		a.Release(Success)
		b.Release(Ignore)
		c.Release(Ignore)
	}
	if got := l.Limit(); got != 5 {
		t.Fatalf("after fast successes Limit() = %d, want 5", got)
	}

	// A burst of slow requests: one decrease, not one per request.
	burst := []Ticket{acquire(), acquire(), acquire()}
	clock.Advance(300 * time.Millisecond)
	for _, tk := range burst {
		tk.Release(Success)
	}
	if got := l.Limit(); got != 2 {
		t.Fatalf("after a slow burst Limit() = %d, want 2 (5*0.5 rounded down, once)", got)
	}

	// A request admitted after that decrease can decrease again, down to
	// MinLimit only.
	tk := acquire()
	clock.Advance(time.Millisecond)
	tk.Release(Dropped)
	if got := l.Limit(); got != 2 {
		t.Fatalf("after a drop at the floor Limit() = %d, want MinLimit 2", got)
	}

	// SetLimit is clamped to MinLimit..MaxLimit in aimd mode.
	l.SetLimit(100)
	wantStats(t, l, Stats{Limit: 6})
	l.SetLimit(0)
	wantStats(t, l, Stats{Limit: 2})
}
