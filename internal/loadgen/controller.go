package loadgen

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/internal/timeline"
)

// ErrNotRunning is returned by Controller.Start when Controller.Run is not
// running.
var ErrNotRunning = errors.New("loadgen: controller not running")

// Controller runs one load at a time on an operator's command, for a
// dashboard's start and stop buttons: Start replaces the running load,
// Stop ends it, Status reports it. Run owns the loads' goroutines and ends
// them when its context is done. Its methods are safe for concurrent use.
type Controller struct {
	base Config
	rec  *timeline.Recorder

	mu     sync.Mutex
	ctx    context.Context    // Run's; nil when Run is not running
	cancel context.CancelFunc // the current load's; nil when none
	gen    uint64             // numbers loads, so a replaced one cannot clear its successor's status
	status Status
	wg     sync.WaitGroup
}

// Status is a Controller's current load, as the dashboard shows it.
type Status struct {
	Running bool      `json:"running"`
	RPS     float64   `json:"rps,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Ends    time.Time `json:"ends,omitzero"`
	// Last is the result of the last load that ended, if any.
	Last *Result `json:"last,omitempty"`
}

// NewController returns a Controller whose loads use base for everything
// but Rate and Duration, and record into rec (which may be nil).
func NewController(base Config, rec *timeline.Recorder) (*Controller, error) {
	probe := base
	probe.Rate, probe.Duration = 1, time.Second
	if err := probe.normalize(); err != nil {
		return nil, err
	}
	return &Controller{base: base, rec: rec}, nil
}

// Run serves Start and Stop until ctx is done, then stops the running load
// and returns once its requests have ended. It returns nil, or an error if
// it is already running.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.ctx != nil {
		c.mu.Unlock()
		return errors.New("loadgen: controller already running")
	}
	c.ctx = ctx
	c.mu.Unlock()

	<-ctx.Done()

	c.mu.Lock()
	c.ctx = nil
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Start starts a load of rps requests per second for the given seconds,
// replacing the running one. It returns at once; ctx is not used beyond
// the call.
func (c *Controller) Start(_ context.Context, rps float64, seconds int) error {
	cfg := c.base
	cfg.Rate, cfg.Duration = rps, time.Duration(seconds)*time.Second
	if err := cfg.normalize(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil || c.ctx.Err() != nil {
		return ErrNotRunning
	}
	if c.cancel != nil {
		c.cancel()
	}
	lctx, cancel := context.WithCancel(c.ctx)
	c.gen++
	gen := c.gen
	c.cancel = cancel
	now := time.Now()
	c.status = Status{Running: true, RPS: rps, Started: now, Ends: now.Add(cfg.Duration), Last: c.status.Last}
	c.wg.Go(func() {
		res, _ := Run(lctx, cfg, c.rec)
		cancel()
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gen == gen {
			c.cancel = nil
			c.status.Running = false
			c.status.Last = &res
		}
	})
	return nil
}

// Stop ends the running load, if any; its requests in flight are cut
// short and count as client timeouts (Result.Canceled).
func (c *Controller) Stop(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	return nil
}

// Status returns the current load's status.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}
