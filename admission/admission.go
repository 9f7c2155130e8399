// Package admission bounds how many requests are worked on at once and
// rejects the excess fast, so an overloaded service answers 503 in a
// millisecond instead of timing out in seconds.
//
// A Limiter admits up to its limit of requests; past that, up to
// Config.QueueSize requests wait in a FIFO queue for at most
// Config.QueueTimeout, and the rest are rejected at once. Rejections are
// ErrQueueFull and ErrQueueTimeout, both matching ErrRejected with
// errors.Is; Middleware turns them into 503 with a JSON body and
// Retry-After.
//
// The limit is static (Config.Limit, changed only by SetLimit) or adaptive
// (AIMD: additive increase while requests finish under a latency target,
// multiplicative decrease on an overload signal, at most once per round
// trip). SetLimit is cheap, safe to call concurrently and takes effect at
// once: raising the limit admits queued requests, lowering it never cancels
// admitted ones (new requests wait until enough of them finish).
//
// The AIMD policy is written here rather than taken from a library:
// github.com/platinummonkey/go-concurrency-limits is maintained only
// sporadically and brings its own metric registry and blocking strategies;
// failsafe-go's adaptivelimiter is maintained but is a gradient (Vegas-like)
// limiter with its own queueing and rejection rules. Neither fits an
// explicit queue size, queue timeout, Retry-After and a limit set from
// outside, and AIMD is a few lines of pure code (see aimd.go).
//
// Contract: build a Limiter with New; the zero Limiter is not usable. All
// methods are safe for concurrent use. A Limiter starts no goroutines and
// holds nothing that must be closed; its metrics stay registered with
// Options.Registerer. Every Ticket returned by Acquire must be released
// exactly once. Queue timeouts use runtime timers (so tests can run them in
// testing/synctest); Options.Now drives only the AIMD decisions and latency
// measurement, and is never called in static mode.
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrRejected matches, through errors.Is, every error by which Acquire
// turns a request away for overload: ErrQueueFull and ErrQueueTimeout.
var ErrRejected = errors.New("admission: rejected")

var (
	// ErrQueueFull is returned by Acquire when the limit is reached and
	// the queue is full (or there is no queue).
	ErrQueueFull error = &rejection{"admission: rejected: queue full"}
	// ErrQueueTimeout is returned by Acquire when a request waited
	// Config.QueueTimeout in the queue without getting a slot.
	ErrQueueTimeout error = &rejection{"admission: rejected: queue timeout"}
)

type rejection struct{ msg string }

func (e *rejection) Error() string        { return e.msg }
func (e *rejection) Is(target error) bool { return target == ErrRejected }

// Outcome is how an admitted request ended, reported by Ticket.Release. In
// static mode it is ignored.
type Outcome uint8

const (
	// Success: the request was served; its latency is compared with the
	// latency target (aimd).
	Success Outcome = iota
	// Dropped: the request failed because of overload (for example it
	// timed out); the limit decreases (aimd).
	Dropped
	// Ignore: the outcome says nothing about this service's capacity
	// (for example a dependency failed fast); the limit is not changed.
	Ignore
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Dropped:
		return "dropped"
	case Ignore:
		return "ignore"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Options are the run-time dependencies of a Limiter.
type Options struct {
	// Name is the value of the constant label name= on the metrics, so
	// several limiters can share a registry. Default "default".
	Name string
	// Now is the clock for AIMD decisions and latency. Default time.Now.
	Now func() time.Time
	// Logger receives limit changes at debug level. Default: discard.
	Logger *slog.Logger
	// Registerer receives the metrics. Nil: no metrics.
	Registerer prometheus.Registerer
}

// Stats is a snapshot of a Limiter, cheap enough for a health endpoint
// polled often.
type Stats struct {
	Limit    int `json:"limit"`
	InFlight int `json:"in_flight"`
	Queue    int `json:"queue"`
}

// Limiter bounds concurrent work. See the package documentation.
type Limiter struct {
	mu sync.Mutex
	// limit, inFlight and queued change only with mu held; the getters
	// read them without it. Invariant: queued > 0 implies
	// inFlight >= limit (a freed slot goes straight to the oldest waiter).
	limit    atomic.Int64
	inFlight atomic.Int64
	queued   atomic.Int64
	// head and tail are the FIFO of waiters, guarded by mu.
	head, tail *waiter
	// policy is nil in static mode; its state is guarded by mu.
	policy *aimd

	queueSize    int64
	queueTimeout time.Duration
	retryAfter   string // Retry-After header value, in whole seconds
	now          func() time.Time
	log          *slog.Logger
	name         string

	rejectedFull    prometheus.Counter
	rejectedTimeout prometheus.Counter

	// waiters recycles *waiter values. It belongs to the Limiter, not the
	// package, so a waiter's channel and timer never cross from one
	// synctest bubble to another.
	waiters sync.Pool
}

// waiter is a request queued for a slot.
type waiter struct {
	prev, next *waiter
	// granted is set, with mu held, when a slot is handed to this waiter;
	// a value is then sent on ready (capacity 1, so the send never blocks).
	granted bool
	ready   chan struct{}
	timer   *time.Timer
}

// New returns a Limiter built from cfg, after applying cfg.SetDefaults and
// checking cfg.Validate, and registers its metrics with opts.Registerer.
func New(cfg Config, opts Options) (*Limiter, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: invalid config: %w", err)
	}
	if opts.Name == "" {
		opts.Name = "default"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		queueSize:    int64(cfg.QueueSize),
		queueTimeout: cfg.QueueTimeout,
		retryAfter:   strconv.FormatInt(int64(max(1, (cfg.RetryAfter+time.Second-1)/time.Second)), 10),
		now:          opts.Now,
		log:          opts.Logger.With("limiter", opts.Name),
		name:         opts.Name,
	}
	l.limit.Store(int64(cfg.Limit))
	if cfg.Algorithm == AlgorithmAIMD {
		l.policy = newAIMD(cfg)
	}
	l.waiters.New = func() any { return &waiter{ready: make(chan struct{}, 1)} }
	if err := l.initMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Limiter) initMetrics(reg prometheus.Registerer) error {
	labels := prometheus.Labels{"name": l.name}
	gauge := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "spillway", Subsystem: "admission", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "spillway", Subsystem: "admission", Name: "rejected_total",
		Help:        "Requests rejected for overload, by reason.",
		ConstLabels: labels,
	}, []string{"reason"})
	l.rejectedFull = rejected.WithLabelValues("queue_full")
	l.rejectedTimeout = rejected.WithLabelValues("queue_timeout")
	if reg == nil {
		return nil
	}
	cs := []prometheus.Collector{
		gauge("limit", "Current concurrency limit.", &l.limit),
		gauge("in_flight", "Requests admitted and not yet released.", &l.inFlight),
		gauge("queue_length", "Requests waiting for a slot.", &l.queued),
		rejected,
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("admission: register metrics for %q: %w", l.name, err)
		}
	}
	return nil
}

// Ticket is an admitted request's slot. Release it exactly once, when the
// work is done. The zero Ticket's Release does nothing.
type Ticket struct {
	l     *Limiter
	start time.Time // admission time; zero in static mode
}

// Acquire admits the request if a slot is free; otherwise it queues it (if
// the queue has room) until a slot frees, Config.QueueTimeout passes or ctx
// ends. It returns ErrQueueFull or ErrQueueTimeout (matching ErrRejected)
// on overload, and an error wrapping ctx's cause if ctx ends while queued.
// It never blocks when the queue is full or absent.
func (l *Limiter) Acquire(ctx context.Context) (Ticket, error) {
	l.mu.Lock()
	if n := l.inFlight.Load(); n < l.limit.Load() {
		l.inFlight.Store(n + 1)
		l.mu.Unlock()
		return l.ticket(), nil
	}
	if l.queued.Load() >= l.queueSize {
		l.mu.Unlock()
		l.rejectedFull.Inc()
		return Ticket{}, ErrQueueFull
	}
	if ctx.Err() != nil {
		l.mu.Unlock()
		return Ticket{}, fmt.Errorf("admission: wait for a slot: %w", context.Cause(ctx))
	}
	w := l.waiters.Get().(*waiter)
	l.pushLocked(w)
	l.mu.Unlock()
	return l.wait(ctx, w)
}

func (l *Limiter) ticket() Ticket {
	if l.policy == nil {
		return Ticket{l: l}
	}
	return Ticket{l: l, start: l.now()}
}

// wait blocks a queued waiter until it is granted a slot, times out or ctx
// ends, and recycles it.
func (l *Limiter) wait(ctx context.Context, w *waiter) (Ticket, error) {
	defer l.putWaiter(w)
	if w.timer == nil {
		w.timer = time.NewTimer(l.queueTimeout)
	} else {
		w.timer.Reset(l.queueTimeout)
	}
	var err error
	select {
	case <-w.ready:
		w.timer.Stop()
		return l.ticket(), nil
	case <-w.timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		w.timer.Stop()
		err = fmt.Errorf("admission: wait for a slot: %w", context.Cause(ctx))
	}

	l.mu.Lock()
	if !w.granted {
		l.removeLocked(w)
		l.mu.Unlock()
		if err == ErrQueueTimeout {
			l.rejectedTimeout.Inc()
		}
		return Ticket{}, err
	}
	// A slot was handed over as we gave up: its value is already in ready.
	<-w.ready
	if err == ErrQueueTimeout {
		// Still here to use it: take it.
		l.mu.Unlock()
		return l.ticket(), nil
	}
	// The caller is gone: pass the slot on.
	l.inFlight.Add(-1)
	l.admitLocked()
	l.mu.Unlock()
	return Ticket{}, err
}

func (l *Limiter) putWaiter(w *waiter) {
	w.granted = false
	l.waiters.Put(w)
}

func (l *Limiter) pushLocked(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.queued.Add(1)
}

func (l *Limiter) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.queued.Add(-1)
}

// admitLocked hands free slots to the oldest waiters.
func (l *Limiter) admitLocked() {
	n, limit := l.inFlight.Load(), l.limit.Load()
	for n < limit && l.head != nil {
		w := l.head
		l.removeLocked(w)
		w.granted = true
		w.ready <- struct{}{}
		n++
	}
	l.inFlight.Store(n)
}

// Release frees the ticket's slot, giving it to the oldest waiter if any,
// and in aimd mode feeds the outcome and the request's latency to the
// limit. Releasing a ticket twice is a bug; Release panics when it can
// tell (more releases than acquisitions).
func (t Ticket) Release(o Outcome) {
	l := t.l
	if l == nil {
		return
	}
	adapt := l.policy != nil && o != Ignore
	var now time.Time
	if adapt {
		now = l.now()
	}
	l.mu.Lock()
	n := l.inFlight.Load()
	if n <= 0 {
		l.mu.Unlock()
		panic("admission: Ticket released more often than acquired")
	}
	old := l.limit.Load()
	limit := old
	if adapt {
		l.policy.observe(t.start, now, int(n), o)
		limit = int64(l.policy.current())
		l.limit.Store(limit)
	}
	l.inFlight.Store(n - 1)
	if l.head != nil {
		l.admitLocked()
	}
	l.mu.Unlock()
	if limit != old {
		l.log.Debug("admission limit adapted", "from", old, "to", limit, "outcome", o.String())
	}
}

// SetLimit sets the limit to n at once: raising it admits queued requests
// now, lowering it cancels nothing (new requests wait until the in-flight
// count falls below it). In static mode n < 0 counts as 0, which rejects
// or queues every new request; in aimd mode n is clamped to
// MinLimit..MaxLimit and adaptation continues from there. It is cheap when
// the limit does not change.
func (l *Limiter) SetLimit(n int) {
	if l.policy == nil && int64(max(n, 0)) == l.limit.Load() {
		return
	}
	l.mu.Lock()
	if l.policy != nil {
		n = l.policy.set(n)
	}
	limit := int64(max(n, 0))
	old := l.limit.Swap(limit)
	if limit > old && l.head != nil {
		l.admitLocked()
	}
	l.mu.Unlock()
	if limit != old {
		l.log.Debug("admission limit set", "from", old, "to", limit)
	}
}

// Limit returns the current limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// InFlight returns the number of admitted requests not yet released. It may
// exceed Limit just after the limit was lowered.
func (l *Limiter) InFlight() int { return int(l.inFlight.Load()) }

// QueueLen returns the number of requests waiting for a slot.
func (l *Limiter) QueueLen() int { return int(l.queued.Load()) }

// Stats returns a consistent snapshot of Limit, InFlight and QueueLen.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Limit: l.Limit(), InFlight: l.InFlight(), Queue: l.QueueLen()}
}
