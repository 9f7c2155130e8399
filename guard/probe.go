package guard

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"
)

// halfOpenSlack is how long after the end of the open interval Run sends
// its probe: the breaker turns half-open only once the interval has passed.
const halfOpenSlack = time.Millisecond

// Run probes Config.ProbeURL until ctx is done, then returns nil. Probes
// go through the breaker (not the bulkhead), and Run sends them:
//
//   - once at start, so that Status leaves "unknown" early;
//   - never while the breaker is closed: user calls are the signal then;
//   - the moment an open breaker turns half-open (OpenInterval after it
//     opened): a probe while open could change nothing, so none is sent;
//   - while half-open, as its trial calls, up to HalfOpenRequests back to
//     back, so a recovered dependency closes the breaker at once; if user
//     calls hold every trial slot, again every ProbeInterval.
//
// So once the dependency has recovered, the breaker closes within
// OpenInterval plus a probe's round trip (plus the duration of a trial
// that was in flight at the recovery and failed), without user calls.
// With an empty ProbeURL, Run only waits for ctx. Run returns an error if
// it is already running.
func (g *Guard) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("guard %s: Run is already running", g.name)
	}
	defer g.running.Store(false)
	if g.cfg.ProbeURL == "" {
		<-ctx.Done()
		return nil
	}
	if g.ownClient {
		defer g.client.CloseIdleConnections()
	}

	g.probe(ctx)
	probed := true
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var fire <-chan time.Time
		if d, ok := g.nextProbe(probed); ok {
			timer.Reset(d)
			fire = timer.C
		} else {
			timer.Stop()
		}
		probed = false
		select {
		case <-ctx.Done():
			return nil
		case <-g.wake: // the breaker changed state
		case <-fire:
			g.probe(ctx)
			probed = true
		}
	}
}

// nextProbe returns how long Run waits before its next probe, and false
// when it sends none until the breaker changes state. probed tells that a
// probe has just run.
func (g *Guard) nextProbe(probed bool) (time.Duration, bool) {
	switch g.cb.State() { // this also turns an expired open breaker half-open
	case gobreaker.StateClosed:
		return 0, false
	case gobreaker.StateOpen:
		g.mu.Lock()
		halfOpen := g.openedAt.Add(g.cfg.OpenInterval)
		g.mu.Unlock()
		return time.Until(halfOpen) + halfOpenSlack, true
	default: // half-open
		if probed {
			return g.cfg.ProbeInterval, true
		}
		return 0, true
	}
}

// probe sends probes through the breaker: one while it is closed, none
// while it is open, and while it is half-open up to HalfOpenRequests back
// to back, stopping at the first that does not succeed, so that a
// recovered dependency closes the breaker within one tick.
func (g *Guard) probe(ctx context.Context) {
	for range g.cfg.HalfOpenRequests {
		if ctx.Err() != nil || g.cb.State() == gobreaker.StateOpen {
			return
		}
		result, _ := g.call(ctx, g.cfg.ProbeTimeout, g.probeOnce)
		g.m.probes.WithLabelValues(result).Inc()
		if result != resultSuccess || g.cb.State() == gobreaker.StateClosed {
			return
		}
	}
}

// probeOnce GETs the probe URL: a 2xx answer is healthy.
func (g *Guard) probeOnce(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.ProbeURL, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	req.Header.Set("User-Agent", "spillway-guard-probe")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	// Drain a little so that a kept-alive connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe: GET %s: %w", req.URL.Redacted(), errStatus(resp.Status))
	}
	return nil
}

// errStatus is a probe's non-2xx status line.
type errStatus string

func (e errStatus) Error() string { return "status " + string(e) }

// newProbeClient returns the default probe client: its own transport with
// every timeout set, no keep-alives (a probe every second or so dials
// afresh and leaves no idle connection behind) and no redirects.
func newProbeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            (&net.Dialer{Timeout: timeout}).DialContext,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
