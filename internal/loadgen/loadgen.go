// Package loadgen sends an open-loop stream of HTTP requests and classifies
// every answer into an outcome (health.ClassifyAnswer, the rule the
// dashboard counts by too).
//
// Open loop means that request i starts at start + i/Rate whether or not the
// earlier ones have finished, as real clients arrive: a slow or hung target
// builds up requests in flight instead of slowing the generator down, so
// overload shows in the numbers instead of being hidden by them. In-flight
// requests are bounded by Config.MaxInFlight; a request due while the bound
// is reached is not sent and counts as a client timeout (Result.Dropped), so
// a hung target cannot exhaust memory.
//
// Every request gets exactly one outcome: Result.Lost is 0 after Run
// returns. Run starts one goroutine per request in flight and returns only
// once all have ended. Controller wraps Run for an operator's start and stop
// buttons. Nothing in this package needs closing except what Run's and
// Controller.Run's contexts already stop.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// Defaults of Config.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxInFlight = 10_000
	// DefaultRetryDelay is RetryPolicy.Delay's default.
	DefaultRetryDelay = time.Second
	// DefaultMaxRetryDelay is RetryPolicy.MaxDelay's default.
	DefaultMaxRetryDelay = 30 * time.Second
)

// Limits of Config.
const (
	MaxRate    = 1_000_000 // requests per second
	MaxRetries = 10
)

// Config describes one run.
type Config struct {
	// URL is the absolute http or https URL every request goes to.
	URL string
	// Method defaults to POST when Body is set, GET otherwise.
	Method string
	// Header is added to every request (e.g. Content-Type). Optional; not
	// modified.
	Header http.Header
	// Body returns the body of request i (0-based, counting first attempts;
	// a retry resends the body of its request). Nil sends no body. It is
	// called from the scheduler's goroutine only.
	Body func(i int) []byte
	// Rate is the number of requests started per second, > 0.
	Rate float64
	// Duration is how long requests are started for, > 0. Run returns
	// when the last request has ended, at most Timeout later (plus the
	// retries' delays).
	Duration time.Duration
	// Timeout bounds each request, answer body included. Default 5s.
	Timeout time.Duration
	// MaxInFlight bounds the requests in flight. Default 10000. Each holds
	// a connection, so keep it under the process's open-file limit.
	MaxInFlight int
	// Client sends the requests. Default: a client of its own with a
	// keep-alive pool sized for the load, closed when Run returns. The
	// client's redirect policy applies; its Timeout should be 0 (Timeout
	// above bounds each request).
	Client *http.Client
	// Retry is what a client does after a retryable outcome. Default: no
	// retry.
	Retry RetryPolicy
	// OnResult, if set, is called once per attempt when it ends, with
	// the time the attempt started, its outcome and how long it took (0
	// for one dropped at MaxInFlight). It is called from the attempt's
	// goroutine (the scheduler's for a dropped one), so it must be safe
	// for concurrent use, and fast: the attempt's goroutine, and so Run,
	// waits for it. Run returns only after every call has returned.
	OnResult func(start time.Time, o health.Outcome, d time.Duration)
}

// RetryMode names a client's retry behaviour.
type RetryMode string

// The retry modes.
const (
	// RetryNone: never retry (the default).
	RetryNone RetryMode = "none"
	// RetryImmediate: retry at once, like a naive client. Under overload
	// this multiplies the load, which is what a drill wants to show.
	RetryImmediate RetryMode = "immediate"
	// RetryAfter: wait for the answer's Retry-After (seconds), or Delay
	// when it has none, plus a random jitter of up to as much again, capped
	// at MaxDelay: a polite client.
	RetryAfter RetryMode = "retry_after"
)

// RetryPolicy is a client's retry behaviour. Outcomes Shed, Overloaded,
// Failed and ClientTimeout are retryable; OK and ClientError are not, and
// neither is a request dropped at MaxInFlight. A retry is a new request,
// scheduled when its delay is over; one that would start after the run's
// Duration is not sent (Result.RetriesSkipped).
type RetryPolicy struct {
	// Mode: RetryNone (also ""), RetryImmediate or RetryAfter.
	Mode RetryMode
	// MaxRetries is the most retries of one request, in [0, 10]; 0 means
	// no retry whatever the Mode.
	MaxRetries int
	// Delay is RetryAfter's wait when the answer has no Retry-After
	// (timeouts, transport errors). Default 1s.
	Delay time.Duration
	// MaxDelay caps RetryAfter's wait, jitter included. Default 30s.
	MaxDelay time.Duration
}

// Result counts what happened during a run. Counts are of attempts: a
// retry is an attempt of its own.
type Result struct {
	// Requests is the number of requests scheduled (first attempts).
	Requests int64 `json:"requests"`
	// Sent is the number of attempts started, retries and dropped ones
	// included.
	Sent int64 `json:"sent"`
	// Answered is the number of attempts that got an outcome; equal to
	// Sent when Run returns.
	Answered int64 `json:"answered"`
	// Retries is the number of attempts that were retries.
	Retries int64 `json:"retries"`
	// RetriesSkipped: retries not sent because they would have started
	// after the run's end or its context was done.
	RetriesSkipped int64 `json:"retries_skipped"`
	// Dropped: attempts not sent because MaxInFlight were in flight;
	// counted as ClientTimeout.
	Dropped int64 `json:"dropped"`
	// Canceled: attempts cut short by Run's context; counted as
	// ClientTimeout.
	Canceled int64 `json:"canceled"`
	// Outcomes counts attempts by the name of their health.Outcome ("ok",
	// "shed", ...); every outcome is present.
	Outcomes map[string]int64 `json:"outcomes"`
	// MaxInFlight is the largest number of attempts that were in flight
	// at once.
	MaxInFlight int64 `json:"max_in_flight"`
	// Elapsed is the run's wall time, until the last attempt ended.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Lost is Sent − Answered: the attempts without an outcome. Always 0 after
// Run returns; a nonzero value is a bug.
func (r Result) Lost() int64 { return r.Sent - r.Answered }

// ErrConfig is wrapped by every error of Run's config validation.
var ErrConfig = errors.New("loadgen: invalid config")

func (c *Config) normalize() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url %q: not an absolute http(s) URL", ErrConfig, c.URL)
	}
	if c.Method == "" {
		c.Method = http.MethodGet
		if c.Body != nil {
			c.Method = http.MethodPost
		}
	}
	if math.IsNaN(c.Rate) || c.Rate <= 0 || c.Rate > MaxRate {
		return fmt.Errorf("%w: rate %v: must be in (0, %d] requests per second", ErrConfig, c.Rate, MaxRate)
	}
	if c.Duration <= 0 {
		return fmt.Errorf("%w: duration %v: must be positive", ErrConfig, c.Duration)
	}
	if c.Timeout < 0 || c.MaxInFlight < 0 {
		return fmt.Errorf("%w: timeout %v, max in flight %d: must not be negative", ErrConfig, c.Timeout, c.MaxInFlight)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	r := &c.Retry
	switch r.Mode {
	case "":
		r.Mode = RetryNone
	case RetryNone, RetryImmediate, RetryAfter:
	default:
		return fmt.Errorf("%w: retry mode %q: not none, immediate or retry_after", ErrConfig, r.Mode)
	}
	if r.MaxRetries < 0 || r.MaxRetries > MaxRetries || r.Delay < 0 || r.MaxDelay < 0 {
		return fmt.Errorf("%w: retry: max retries %d must be in [0, %d], delays must not be negative", ErrConfig, r.MaxRetries, MaxRetries)
	}
	if r.Delay == 0 {
		r.Delay = DefaultRetryDelay
	}
	if r.MaxDelay == 0 {
		r.MaxDelay = DefaultMaxRetryDelay
	}
	return nil
}

// run is the state of one Run.
type run struct {
	cfg    Config
	client *http.Client
	rec    *timeline.Recorder
	end    time.Time // no attempt starts after it
	wg     sync.WaitGroup

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	requests    atomic.Int64
	sent        atomic.Int64
	answered    atomic.Int64
	retries     atomic.Int64
	skipped     atomic.Int64
	dropped     atomic.Int64
	canceled    atomic.Int64
	outcomes    [len(health.Outcomes)]atomic.Int64
}

// Run sends cfg.Rate requests per second to cfg.URL for cfg.Duration and
// records each outcome in rec (which may be nil). It returns when every
// request has ended. The error is a config error (ErrConfig), or ctx's error
// when ctx ended the run early; the Result is valid in both latter cases.
func Run(ctx context.Context, cfg Config, rec *timeline.Recorder) (Result, error) {
	if err := cfg.normalize(); err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, client: cfg.Client, rec: rec}
	if r.client == nil {
		tr := newTransport(cfg)
		defer tr.CloseIdleConnections()
		r.client = &http.Client{Transport: tr}
	}
	start := time.Now()
	r.end = start.Add(cfg.Duration)
	err := r.schedule(ctx, start)
	r.wg.Wait()

	res := Result{
		Requests:       r.requests.Load(),
		Sent:           r.sent.Load(),
		Answered:       r.answered.Load(),
		Retries:        r.retries.Load(),
		RetriesSkipped: r.skipped.Load(),
		Dropped:        r.dropped.Load(),
		Canceled:       r.canceled.Load(),
		Outcomes:       make(map[string]int64, len(health.Outcomes)),
		MaxInFlight:    r.maxInFlight.Load(),
		Elapsed:        time.Since(start),
	}
	for _, o := range health.Outcomes {
		res.Outcomes[o.String()] = r.outcomes[o].Load()
	}
	return res, err
}

// newTransport is the default client's transport: every timeout set, and
// enough idle connections that a steady load reuses them instead of
// churning through ephemeral ports.
func newTransport(cfg Config) *http.Transport {
	idle := int(min(max(cfg.Rate/4, 16), 1024))
	return &http.Transport{
		Proxy:                 nil, // a load generator talks to the target, not a proxy
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
	}
}

// schedule starts request i at start + i/Rate until the run's end or ctx is
// done. No ticker: each start time is computed, so a late wake-up is made
// up by starting the overdue requests at once.
func (r *run) schedule(ctx context.Context, start time.Time) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
		if !at.Before(r.end) {
			return nil
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		var body []byte
		if r.cfg.Body != nil {
			body = r.cfg.Body(i)
		}
		r.requests.Add(1)
		r.attempt(ctx, body, 0)
	}
}

// attempt sends one attempt of a request in a goroutine of its own, or
// drops it when MaxInFlight are in flight. n is the number of retries
// before it.
func (r *run) attempt(ctx context.Context, body []byte, n int) {
	r.sent.Add(1)
	if n > 0 {
		r.retries.Add(1)
	}
	cur := r.inFlight.Add(1)
	if cur > int64(r.cfg.MaxInFlight) {
		r.inFlight.Add(-1)
		r.dropped.Add(1)
		r.finish(time.Now(), health.OutcomeClientTimeout, 0)
		return
	}
	for {
		m := r.maxInFlight.Load()
		if cur <= m || r.maxInFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	r.wg.Go(func() {
		o, retryAfter := r.do(ctx, body)
		r.inFlight.Add(-1)
		if !r.retryable(o) || n >= r.cfg.Retry.MaxRetries {
			return
		}
		r.retry(ctx, body, n, r.retryDelay(retryAfter))
	})
}

// retry waits d, then sends retry number n+1 of the request, unless the
// run ends first.
func (r *run) retry(ctx context.Context, body []byte, n int, d time.Duration) {
	if time.Now().Add(d).After(r.end) {
		r.skipped.Add(1)
		return
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			r.skipped.Add(1)
			return
		case <-t.C:
		}
	}
	if ctx.Err() != nil {
		r.skipped.Add(1)
		return
	}
	r.attempt(ctx, body, n+1)
}

func (r *run) retryable(o health.Outcome) bool {
	if r.cfg.Retry.Mode == RetryNone || r.cfg.Retry.MaxRetries == 0 {
		return false
	}
	switch o {
	case health.OutcomeShed, health.OutcomeOverloaded, health.OutcomeFailed, health.OutcomeClientTimeout:
		return true
	}
	return false
}

// retryDelay is the wait before a retry; retryAfter is the answer's
// Retry-After (negative when it had none).
func (r *run) retryDelay(retryAfter time.Duration) time.Duration {
	p := r.cfg.Retry
	if p.Mode != RetryAfter {
		return 0
	}
	return jitteredDelay(retryAfter, p.Delay, p.MaxDelay, rand.Float64())
}

// jitteredDelay is base (retryAfter, or def when retryAfter < 0) plus u×base,
// capped at maxDelay; u is uniform in [0,1).
func jitteredDelay(retryAfter, def, maxDelay time.Duration, u float64) time.Duration {
	base := retryAfter
	if base < 0 {
		base = def
	}
	return min(base+time.Duration(u*float64(base)), maxDelay)
}

// do sends one attempt and records its outcome. It returns the outcome and
// the answer's Retry-After (negative when none).
func (r *run) do(ctx context.Context, body []byte) (health.Outcome, time.Duration) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	begin := time.Now()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, r.cfg.Method, r.cfg.URL, rd)
	if err != nil { // the URL was validated; cannot happen
		r.finish(begin, health.OutcomeFailed, time.Since(begin))
		return health.OutcomeFailed, -1
	}
	for k, vs := range r.cfg.Header {
		req.Header[k] = vs
	}
	res, err := r.client.Do(req)
	if err != nil {
		o := r.errOutcome(ctx, rctx, err)
		r.finish(begin, o, time.Since(begin))
		return o, -1
	}
	head, err := io.ReadAll(io.LimitReader(res.Body, classifyBytes))
	if err == nil {
		// Read the rest so that the connection can be reused, up to a
		// bound; beyond it the connection is closed instead.
		_, err = io.Copy(io.Discard, io.LimitReader(res.Body, drainBytes))
	}
	res.Body.Close()
	d := time.Since(begin)
	if err != nil { // cut short: no answer to classify
		o := r.errOutcome(ctx, rctx, err)
		r.finish(begin, o, d)
		return o, -1
	}
	o := health.ClassifyAnswer(res.StatusCode, res.Header, head)
	r.finish(begin, o, d)
	return o, parseRetryAfter(res.Header.Get("Retry-After"))
}

// Bounds of what is read of an answer.
const (
	classifyBytes = health.ReasonBodyBytes
	drainBytes    = 1 << 20
)

// errOutcome classifies a failed attempt: a timeout (the attempt's, or one
// of the client's own) or Run's context ending is the client giving up;
// anything else is a transport failure.
func (r *run) errOutcome(ctx, rctx context.Context, err error) health.Outcome {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		r.canceled.Add(1)
		return health.OutcomeClientTimeout
	case rctx.Err() != nil, errors.As(err, &ne) && ne.Timeout():
		return health.OutcomeClientTimeout
	}
	return health.OutcomeFailed
}

// finish records the outcome o of an attempt that started at start and
// took d.
func (r *run) finish(start time.Time, o health.Outcome, d time.Duration) {
	r.outcomes[o].Add(1)
	r.answered.Add(1)
	if r.rec != nil {
		r.rec.Observe(o, d)
	}
	if r.cfg.OnResult != nil {
		r.cfg.OnResult(start, o, d)
	}
}

// parseRetryAfter reads a Retry-After of delay-seconds (the only form
// spillway sends); anything else, or nothing, is -1.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return -1
	}
	s, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return -1
	}
	return time.Duration(s) * time.Second
}
