package lb

// This file holds one attempt to an instance: the transport side of the
// proxy (upstream.RoundTrip), what a response or a failure tells the
// pool about the instance (observe, observeFailure), and how a failed
// attempt is classified.

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// upstream is the ReverseProxy's RoundTripper: it sends an attempt to the
// picked instance, classifies the result for outlier detection and
// retries on another instance when that is safe: once, or twice when
// nothing could be sent (retryable).
type upstream Balancer

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	b := (*Balancer)(u)
	c, _ := req.Context().Value(callKey{}).(*call)
	if c == nil {
		return nil, errors.New("lb: request without call state")
	}
	c.attempted = true
	if req.Body != nil && req.Body != http.NoBody {
		c.body.rc = req.Body
		req.Body = &c.body
		if !replayable(req) {
			req.GetBody = c.getBody
		}
	}
	var tr http.RoundTripper = b.transport.Load()
	if b.traced != nil {
		tr = b.traced // a client span per attempt
	}
	req.URL.Host = c.ep.id
	c.attempts++
	res, err := tr.RoundTrip(req)
	if err == nil {
		b.observe(c, res, time.Time{})
		return res, nil
	}
	now := time.Now()
	kind := c.classify(err)
	if kind == outClientError || kind == outOverloaded {
		c.fail = kind // not the instance's failure: nothing to observe or retry
		return nil, err
	}
	b.observeFailure(c.ep, now)
	c.fail = kind
	if !retryable(kind, err, req, c) {
		return nil, err
	}
	// A connect failure sent nothing: it may be retried again, on yet
	// another instance (two instances of a host that died together, say),
	// up to maxConnectRetries; any other failure ends the retries.
	var tried [maxConnectRetries + 1]*Endpoint
	for n := 0; ; n++ {
		if !b.budget.Load().TryRetry(now) {
			b.m.retries[retryBudgetExhausted].Add(1)
			return nil, err
		}
		tried[n] = c.ep
		var ep *Endpoint
		var ok bool
		if n == 0 {
			ep, ok = b.picker.PickFor(now, c.ep, req.URL.Path)
		} else {
			ep, ok = b.picker.PickAvoiding(now, tried[:n+1], req.URL.Path)
		}
		if !ok {
			b.m.retries[retryNoInstance].Add(1)
			return nil, err
		}
		c.ep.Release()
		c.ep, c.retried, c.fail = ep, true, outOK
		retry := req.WithContext(req.Context())
		u2 := *req.URL
		u2.Host = ep.id
		retry.URL = &u2
		c.armHeader(now)
		c.attempts++
		var res *http.Response
		res, err = tr.RoundTrip(retry)
		if err == nil {
			b.m.retries[retryOK].Add(1)
			b.observe(c, res, now)
			return res, nil
		}
		b.m.retries[retryFailed].Add(1)
		now = time.Now()
		if c.fail = c.classify(err); c.fail != outClientError && c.fail != outOverloaded {
			b.observeFailure(c.ep, now)
		}
		if n+1 >= maxConnectRetries || !connectFailed(c.fail, err, c) {
			return nil, err
		}
	}
}

// observe records a response's headers: a 502/503/504 without
// health.ReasonHeader is a gateway failure, anything else a success. A deliberate
// 503 dependency_unavailable says the instance cannot reach a dependency:
// the picker avoids it for requests that need one until its next report
// (Pool.ObserveFailingFast); it is never a failure of the instance.
func (b *Balancer) observe(c *call, res *http.Response, now time.Time) {
	if isStream(res) {
		c.startStream(res)
	} else {
		c.armTotal()
	}
	c.status = res.StatusCode
	c.headersAt = time.Now()
	c.tk.Answered(c.headersAt, res.StatusCode >= 500) // a stream's body is not waiting on the dependency
	switch res.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		reason, deliberate := res.Header[health.ReasonHeader]
		if !deliberate {
			if now.IsZero() {
				now = time.Now()
			}
			b.observeFailure(c.ep, now)
			return
		}
		if len(reason) > 0 && reason[0] == health.ReasonDependencyUnavailable && !c.ep.FailingFast() {
			b.mu.Lock()
			if b.pool.ObserveFailingFast(c.ep) {
				b.evaluateLocked(time.Now())
			}
			b.mu.Unlock()
		}
	}
	if c.ep.Failing() {
		b.mu.Lock()
		b.pool.ObserveSuccess(c.ep)
		b.mu.Unlock()
	}
}

func (b *Balancer) observeFailure(ep *Endpoint, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.pool.ObserveFailure(ep, now) {
	case OutlierEjected:
		b.m.ejections.Add(1)
		b.log.Warn("instance ejected after consecutive gateway failures", "instance", ep.id)
		b.event("ejected", ep.id+": ejected after consecutive gateway failures")
		b.evaluateLocked(now)
	case OutlierRefused:
		b.log.Debug("ejection refused: max ejected share reached", "instance", ep.id)
	}
}

// classify maps a transport error to the outcome it gives the client.
// The client's own failures (it left, its streamed body broke off) and
// this balancer's (out of descriptors or ports) are never the instance's.
func (c *call) classify(err error) outcome {
	if c.parent.Err() != nil || c.body.failed.get() != nil {
		return outClientError
	}
	if isLocalExhaustion(err) {
		return outOverloaded
	}
	if cause := context.Cause(c.Context); cause == errHeaderTimeout || cause == errTotalTimeout {
		return outTimeout
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() && !isDial(err) {
		return outTimeout // the transport's own response header backstop
	}
	return outBadGateway
}
