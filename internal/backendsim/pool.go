package backendsim

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Errors by which pool.acquire turns a request away.
var (
	errQueueFull    = errors.New("backend-sim: queue full")
	errQueueTimeout = errors.New("backend-sim: queue timeout")
	errPoolClosed   = errors.New("backend-sim closed")
)

// SecondsKept is how many seconds of per-second pool figures Stats keeps:
// five minutes.
const SecondsKept = 300

// pool is the worker pool of the validate path, a thread pool with a FIFO
// backlog: at most capacity requests hold a worker at once (0: no limit),
// the rest wait in arrival order, at most queueSize of them (0: no limit)
// and each for at most the queue timeout in force when it arrived (0: until
// its caller gives up).
//
// A pool starts no goroutines: a request waits on its own goroutine. Queue
// timeouts are runtime timers and the per-second figures read time.Now, so
// tests run a pool in testing/synctest. The zero pool is a pool without
// limits, ready to use.
type pool struct {
	mu           sync.Mutex
	capacity     int
	queueSize    int
	queueTimeout time.Duration
	closed       bool

	busy  int
	queue list.List // of *waiter, oldest first

	peakBusy, peakQueued int
	seconds              secondRing
}

// waiter is a request in the queue. ready is closed when it leaves the
// queue by a grant (granted set) or by close (granted unset).
type waiter struct {
	ready   chan struct{}
	granted bool
	elem    *list.Element
}

// setLimits applies new limits at once: raising the capacity (or lifting
// it) hands free workers to the oldest waiters; lowering it takes no worker
// away from a request that holds one, it only makes new ones wait. A new
// queue size or timeout applies to requests that arrive from now on.
func (p *pool) setLimits(capacity, queueSize int, queueTimeout time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked()
	p.capacity, p.queueSize, p.queueTimeout = capacity, queueSize, queueTimeout
	p.grantLocked()
}

// acquire waits for a worker. On success the caller must call release
// exactly once when its work ends. It fails with errQueueFull at once when
// every worker is busy and the queue is full; with errQueueTimeout after the
// queue timeout; with context.Cause(ctx) when ctx ends first; with
// errPoolClosed when the pool is (or gets) closed before a worker is free.
func (p *pool) acquire(ctx context.Context) (release func(), err error) {
	p.mu.Lock()
	p.advanceLocked()
	p.seconds.cur().Arrived++
	switch {
	case p.queue.Len() == 0 && p.freeLocked():
		p.startLocked()
		p.noteLocked()
		p.mu.Unlock()
		return p.release, nil
	case p.closed:
		p.seconds.cur().Abandoned++
		p.mu.Unlock()
		return nil, errPoolClosed
	case p.queueSize > 0 && p.queue.Len() >= p.queueSize:
		p.seconds.cur().QueueFull++
		p.mu.Unlock()
		return nil, errQueueFull
	}
	w := &waiter{ready: make(chan struct{})}
	w.elem = p.queue.PushBack(w)
	p.noteLocked()
	timeout := p.queueTimeout
	p.mu.Unlock()

	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-w.ready:
	case <-expired:
		err = errQueueTimeout
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case w.granted:
		// Granted, possibly just as the wait ended otherwise: take the
		// worker rather than lose it; a caller that has gone finds its
		// context done and releases it at once.
		return p.release, nil
	case w.elem == nil:
		return nil, errPoolClosed // close took it out and counted it
	}
	p.advanceLocked()
	p.queue.Remove(w.elem)
	w.elem = nil
	if errors.Is(err, errQueueTimeout) {
		p.seconds.cur().QueueTimeout++
	} else {
		p.seconds.cur().Abandoned++
	}
	return nil, err
}

// release returns a worker and hands it to the oldest waiter, if any.
func (p *pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked()
	p.busy--
	p.grantLocked()
}

// close makes the pool release every waiter with errPoolClosed, and turn
// away every later request that would have to wait. Requests that hold a
// worker keep it until they release it.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked()
	p.closed = true
	for e := p.queue.Front(); e != nil; e = p.queue.Front() {
		w := p.queue.Remove(e).(*waiter)
		w.elem = nil
		close(w.ready)
		p.seconds.cur().Abandoned++
	}
}

func (p *pool) freeLocked() bool { return p.capacity == 0 || p.busy < p.capacity }

// advanceLocked makes the current second of the wall clock the ring's
// current one. Every change of the levels is preceded by a call, so the
// seconds it skips get the levels that held through them.
func (p *pool) advanceLocked() { p.seconds.advance(time.Now(), p.busy, p.queue.Len()) }

// startLocked gives a worker to a request.
func (p *pool) startLocked() {
	p.busy++
	p.seconds.cur().Started++
}

// grantLocked hands free workers to the oldest waiters.
func (p *pool) grantLocked() {
	for p.queue.Len() > 0 && p.freeLocked() {
		w := p.queue.Remove(p.queue.Front()).(*waiter)
		w.elem = nil
		w.granted = true
		close(w.ready)
		p.startLocked()
	}
	p.noteLocked()
}

// noteLocked records the current levels in the peaks.
func (p *pool) noteLocked() {
	busy, queued := p.busy, p.queue.Len()
	p.peakBusy = max(p.peakBusy, busy)
	p.peakQueued = max(p.peakQueued, queued)
	s := p.seconds.cur()
	s.PeakBusy = max(s.PeakBusy, busy)
	s.PeakQueued = max(s.PeakQueued, queued)
}

// snapshot returns the pool's figures, and with reset starts them afresh
// from the current levels, in one step.
func (p *pool) snapshot(reset bool) PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advanceLocked()
	st := PoolStats{
		Busy:       p.busy,
		Queued:     p.queue.Len(),
		PeakBusy:   p.peakBusy,
		PeakQueued: p.peakQueued,
		Seconds:    p.seconds.list(),
	}
	if reset {
		p.peakBusy, p.peakQueued = p.busy, p.queue.Len()
		p.seconds = secondRing{}
		p.advanceLocked()
	}
	return st
}

// secondRing holds the figures of the last SecondsKept seconds of the wall
// clock. Seconds in which nothing happened are filled in with the levels
// that held through them, so the ring has no holes. The zero value is
// empty and ready to use.
type secondRing struct {
	buf  [SecondsKept]Second
	n    int   // seconds held, at most SecondsKept
	head int   // index of the current second
	unix int64 // the current second, as Unix time
}

// advance makes the second of now the current one. busy and queued are the
// levels that held since the last event: the peaks of the seconds it skips
// and the starting peaks of the new one. A clock that steps back stays in
// the current second.
func (r *secondRing) advance(now time.Time, busy, queued int) {
	sec := now.Unix()
	if r.n > 0 && sec <= r.unix {
		return
	}
	steps := int64(1)
	if r.n > 0 {
		steps = min(sec-r.unix, SecondsKept)
	}
	for i := steps - 1; i >= 0; i-- {
		if r.n > 0 {
			r.head = (r.head + 1) % SecondsKept
		}
		r.n = min(r.n+1, SecondsKept)
		r.buf[r.head] = Second{Start: time.Unix(sec-i, 0).UTC(), PeakBusy: busy, PeakQueued: queued}
	}
	r.unix = sec
}

// cur returns the current second; advance must have been called once.
func (r *secondRing) cur() *Second { return &r.buf[r.head] }

// list returns the seconds held, oldest first.
func (r *secondRing) list() []Second {
	out := make([]Second, 0, r.n)
	for i := r.n - 1; i >= 0; i-- {
		out = append(out, r.buf[(r.head-i+SecondsKept)%SecondsKept])
	}
	return out
}
