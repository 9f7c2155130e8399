package registry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a retry policy: the delay before retry number attempt,
// counted from 0 within one outage.
type Backoff func(attempt int) time.Duration

// Exponential returns a Backoff that starts at first and doubles up to
// limit; each delay is drawn from [d/2, d] by rnd (a number in [0, 1)), so
// that a fleet that lost etcd together does not retry in step.
func Exponential(first, limit time.Duration, rnd func() float64) Backoff {
	return func(attempt int) time.Duration {
		d := first
		for i := 0; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		return d/2 + time.Duration(rnd()*float64(d/2))
	}
}

// DefaultBackoff is the retry policy of a zero Options: 250 ms doubling to
// 2 s, jittered. Its ceiling stays well under DefaultTTL, so that an
// instance registers again soon after etcd comes back, before etcd expires
// the lease it lost.
var DefaultBackoff = Exponential(250*time.Millisecond, 2*time.Second, rand.Float64)

// sleep waits d, or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
