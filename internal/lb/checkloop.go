package lb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// MaxReportBytes bounds an instance's /health report; a larger one is
// ignored.
const MaxReportBytes = 64 << 10

// newCheckClient returns the health checks' client, with a transport of
// its own: a check never waits for a connection behind proxied traffic.
// Redirects are not followed (a 3xx fails the check).
func newCheckClient() *http.Client {
	t := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// runCheckLoop checks one instance until ctx is done (Run stops, or
// discovery removed the instance): the ready path for routing, then, if
// the instance answered, the report path for the dependency report. Checks
// start every interval ± jitter, counted from the start of the previous
// one (HAProxy's inter), or at once after a check that overran; the first
// runs at once. So an instance that stops answering is out after
// unhealthy_threshold × interval + timeout at most, whatever the timeouts
// in between: a check that timed out fetches no report (it would only
// time out too).
func (b *Balancer) runCheckLoop(ctx context.Context, in Instance) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		set := b.set.Load()
		res := b.checkReady(ctx, set, in)
		var rep *health.Report
		if (res == CheckPass || res == CheckFail) && set.reportPath != "" && ctx.Err() == nil {
			var err error
			if rep, err = b.fetchReport(ctx, set, in); err != nil {
				b.log.Debug("health report fetch failed", "instance", in.Service, "error", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		b.mu.Lock()
		changed, ok := b.pool.RecordCheck(in.Service, now, res)
		if ok && rep != nil {
			b.pool.RecordReport(in.Service, now, *rep)
		}
		if ok {
			b.evaluateLocked(now)
		}
		b.mu.Unlock()
		if !ok {
			return // removed meanwhile
		}
		if changed {
			if res == CheckPass {
				b.log.Info("instance healthy", "instance", in.Service)
			} else {
				b.log.Warn("instance unhealthy", "instance", in.Service, "last_check", res.String())
			}
		}
		t.Reset(max(set.cfg.HealthCheck.NextInterval(rand.Float64())-time.Since(start), 0))
	}
}

// checkReady GETs the ready path and classifies the outcome.
func (b *Balancer) checkReady(ctx context.Context, set *settings, in Instance) CheckResult {
	ctx, cancel := context.WithTimeout(ctx, set.cfg.HealthCheck.Timeout)
	defer cancel()
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Health+set.readyPath, nil)
	if err != nil {
		return CheckConnectError // unreachable: addresses and paths are validated
	}
	req.Header.Set("User-Agent", "spillway-lb-check")
	resp, err := b.checks.Do(req)
	if err != nil {
		switch {
		case !connected.Load():
			return CheckConnectError // refused, unreachable, or the dial timed out
		case ctx.Err() != nil:
			return CheckTimeout
		default:
			return CheckConnectError // reset after connecting
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return CheckPass
	}
	return CheckFail
}

// fetchReport GETs the report path and decodes the health.Report.
func (b *Balancer) fetchReport(ctx context.Context, set *settings, in Instance) (*health.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, set.cfg.HealthCheck.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Health+set.reportPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "spillway-lb-check")
	req.Header.Set("Accept", "application/json")
	resp, err := b.checks.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("report: status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(data) > MaxReportBytes {
		return nil, fmt.Errorf("report: larger than %d bytes", MaxReportBytes)
	}
	return decodeReport(data)
}

var errNoReport = errors.New("not a health report")

// decodeReport parses a /health body. Unknown fields are allowed (the
// report only ever gains fields); a body that is not a JSON object is not.
func decodeReport(data []byte) (*health.Report, error) {
	var rep health.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if rep.Limit < 0 || rep.InFlight < 0 || rep.Queue < 0 {
		return nil, fmt.Errorf("report: negative load figures: %w", errNoReport)
	}
	return &rep, nil
}
