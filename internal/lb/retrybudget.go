package lb

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// RetryBudgetConfig configures the retry budget, which keeps retries a
// bounded fraction of traffic so they cannot multiply load during an
// outage.
type RetryBudgetConfig struct {
	// Ratio is the number of retries allowed per original request over
	// Window. Default 0.2 (Finagle RetryBudget percentCanRetry, Linkerd
	// retryBudget.retryRatio).
	Ratio float64 `yaml:"ratio"`
	// MinRetriesPerSecond is a floor that lets a quiet balancer retry at
	// all: the budget holds MinRetriesPerSecond × Window retries on top of
	// the ratio. Default 10 (Finagle minRetriesPerSec, Linkerd
	// minRetriesPerSecond).
	MinRetriesPerSecond float64 `yaml:"min_retries_per_second"`
	// Window is how long a request's deposit counts. Default 10s (Finagle
	// ttl, Linkerd ttl). Counted in 10 buckets, so the effective window
	// slides between 0.9 × Window and Window.
	Window time.Duration `yaml:"window"`
}

// DefaultRetryBudgetConfig returns the defaults documented on
// RetryBudgetConfig.
func DefaultRetryBudgetConfig() RetryBudgetConfig {
	return RetryBudgetConfig{Ratio: 0.2, MinRetriesPerSecond: 10, Window: 10 * time.Second}
}

// Validate reports every invalid field.
func (c RetryBudgetConfig) Validate() error {
	var errs []error
	if !(c.Ratio >= 0) || math.IsInf(c.Ratio, 0) {
		errs = append(errs, field.New("ratio", c.Ratio, "must be a non-negative number"))
	}
	if !(c.MinRetriesPerSecond >= 0) || math.IsInf(c.MinRetriesPerSecond, 0) {
		errs = append(errs, field.New("min_retries_per_second", c.MinRetriesPerSecond, "must be a non-negative number"))
	}
	if c.Window < 100*time.Millisecond {
		errs = append(errs, field.New("window", c.Window, "must be at least 100ms"))
	}
	return errors.Join(errs...)
}

const budgetBuckets = 10

// RetryBudget allows a retry only while retries ≤ Ratio × requests +
// MinRetriesPerSecond × Window over the sliding window. Retries do not
// count as requests, so the budget cannot feed itself.
//
// Counts live in a ring of 10 buckets; each bucket is one atomic word
// holding the bucket's epoch (high 32 bits) and count (low 32 bits), so a
// bucket is reset and counted with one compare-and-swap, without a lock and
// without allocating. TryRetry re-checks the budget if another retry lands
// between its check and its count, so the retry limit is exact; requests
// counted concurrently with a check may be seen a moment late. Safe for
// concurrent use.
type RetryBudget struct {
	width   int64 // nanoseconds per bucket
	ratio   float64
	reserve float64
	reqs    [budgetBuckets]atomic.Uint64
	_       [cacheLine]byte
	rets    [budgetBuckets]atomic.Uint64
}

// NewRetryBudget returns an empty budget, or the validation error of c.
func NewRetryBudget(c RetryBudgetConfig) (*RetryBudget, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &RetryBudget{
		width:   int64(c.Window) / budgetBuckets,
		ratio:   c.Ratio,
		reserve: c.MinRetriesPerSecond * c.Window.Seconds(),
	}, nil
}

func (b *RetryBudget) epoch(now time.Time) uint32 {
	return uint32(now.UnixNano() / b.width)
}

// Request records one original request (not a retry) at now.
func (b *RetryBudget) Request(now time.Time) {
	ep := b.epoch(now)
	w := &b.reqs[ep%budgetBuckets]
	for {
		old := w.Load()
		switch we := uint32(old >> 32); {
		case we == ep:
			w.Add(1)
			return
		case int32(we-ep) > 0: // bucket already reused by a later epoch: now is stale
			return
		}
		if w.CompareAndSwap(old, uint64(ep)<<32|1) {
			return
		}
	}
}

// TryRetry reports whether a retry is within the budget at now and, if so,
// counts it.
func (b *RetryBudget) TryRetry(now time.Time) bool {
	ep := b.epoch(now)
	w := &b.rets[ep%budgetBuckets]
	for {
		old := w.Load()
		var next uint64
		switch we := uint32(old >> 32); {
		case we == ep:
			next = old + 1
		case int32(we-ep) > 0:
			return false
		default:
			next = uint64(ep)<<32 | 1
		}
		reqs, rets := sum(&b.reqs, ep), sum(&b.rets, ep)
		if float64(rets+1) > b.ratio*float64(reqs)+b.reserve {
			return false
		}
		if w.CompareAndSwap(old, next) {
			return true
		}
	}
}

// Counts returns the requests and retries counted in the window at now.
func (b *RetryBudget) Counts(now time.Time) (requests, retries int64) {
	ep := b.epoch(now)
	return sum(&b.reqs, ep), sum(&b.rets, ep)
}

func sum(ring *[budgetBuckets]atomic.Uint64, ep uint32) int64 {
	var n int64
	for i := range ring {
		w := ring[i].Load()
		if ep-uint32(w>>32) < budgetBuckets {
			n += int64(uint32(w))
		}
	}
	return n
}
