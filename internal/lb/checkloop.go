package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// MaxReportBytes bounds an instance's /health report; a larger one is
// ignored. It is the contract's bound, health.MaxReportBytes.
const MaxReportBytes = health.MaxReportBytes

// newCheckClient returns the health checks' client, with a transport of
// its own: a check never waits for a connection behind proxied traffic.
// Redirects are not followed (a 3xx fails the check).
func newCheckClient(c TransportConfig, tc *tls.Config) *http.Client {
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
	setProtocols(t, c, tc, c.IdleConnTimeout)
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// runCheckLoop checks one instance's ready path until ctx is done (Run
// stops, or discovery removed the instance). Checks start every interval
// ± jitter, counted from the start of the previous one (HAProxy's inter),
// or at once after a check that overran; the first runs at once. So an
// instance that stops answering is out after unhealthy_threshold ×
// interval + timeout at most, whatever the timeouts in between. The
// dependency report has a loop of its own (runReportLoop); until it has
// delivered one, a check that reached the instance fetches the report
// itself, so that an instance's first report arrives with the check that
// makes it healthy (the edge's capacity bound then holds from its first
// request).
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
		var repErr error
		if (res == CheckPass || res == CheckFail) && set.reportPath != "" && ctx.Err() == nil {
			b.mu.Lock()
			has := b.pool.HasReport(in.Service)
			b.mu.Unlock()
			if !has {
				rep, repErr = b.fetchReport(ctx, set, in, "", 0)
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
		var warn bool
		if ok && repErr != nil {
			warn = b.recordReportErrorLocked(in.Service, now, repErr)
		}
		if ok {
			b.evaluateLocked(now)
		}
		b.mu.Unlock()
		if warn {
			b.warnReport(in.Service, repErr)
		}
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

// minReportSpacing is the least time between two report fetches from one
// instance: a report that changes on every read cannot spin the loop.
const minReportSpacing = 50 * time.Millisecond

// runReportLoop keeps one instance's dependency report fresh until ctx is
// done. It long-polls the report path (health's ?version=&wait=): the
// instance answers as soon as its phase or a dependency's state changes,
// else after wait (health_check.interval, at most half report_max_age)
// with the current report, so the load figures are as fresh as a poll
// every interval would keep them. An instance that does not long-poll
// (its report has no version, or it answers before the wait with nothing
// changed) is polled every interval ± jitter instead; so is one whose
// fetch failed.
func (b *Balancer) runReportLoop(ctx context.Context, in Instance) {
	t := time.NewTimer(0)
	defer t.Stop()
	version := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		set := b.set.Load()
		hc := &set.cfg.HealthCheck
		next := hc.NextInterval(rand.Float64())
		if set.reportPath == "" {
			t.Reset(next) // reports off (until a reload turns them on)
			continue
		}
		wait := min(hc.Interval, hc.ReportMaxAge/2)
		rep, err := b.fetchReport(ctx, set, in, version, wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			b.mu.Lock()
			warn := b.recordReportErrorLocked(in.Service, time.Now(), err)
			b.mu.Unlock()
			if warn {
				b.warnReport(in.Service, err)
			}
			version = ""
			t.Reset(max(next-time.Since(start), 0))
			continue
		}
		now := time.Now()
		b.mu.Lock()
		ok := b.pool.RecordReport(in.Service, now, *rep)
		if ok {
			b.evaluateLocked(now)
		}
		b.mu.Unlock()
		if !ok {
			return // removed meanwhile
		}
		took := time.Since(start)
		switch {
		case rep.Version != "" && (rep.Version != version || took >= wait*9/10):
			// A change, or a wait that ran its course: ask again now.
			t.Reset(max(minReportSpacing-took, 0))
		default:
			// No long poll here: poll.
			t.Reset(max(next-took, 0))
		}
		version = rep.Version
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.scheme+"://"+in.Health+set.readyPath, nil)
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

// fetchReport GETs the report path and decodes the health.Report. With a
// version it is a long poll of up to wait: the instance answers when its
// report's version differs, or when wait ends.
func (b *Balancer) fetchReport(ctx context.Context, set *settings, in Instance, version string, wait time.Duration) (*health.Report, error) {
	target := b.scheme + "://" + in.Health + set.reportPath
	timeout := set.cfg.HealthCheck.Timeout
	if version != "" {
		target += "?" + url.Values{"version": {version}, "wait": {wait.String()}}.Encode()
		timeout += wait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "spillway-lb-check")
	req.Header.Set("Accept", reportAccept)
	resp, err := b.checks.Do(req)
	if err != nil {
		return nil, health.Unreachable(err)
	}
	defer resp.Body.Close()
	rep, _, err := health.ReadReport(resp)
	if err != nil {
		return nil, fmt.Errorf("report from %s: %w", in.Health, err)
	}
	return &rep, nil
}

// reportAccept asks for spillway's report first, then the formats
// health.DecodeReport also reads.
const reportAccept = health.ContentTypeJSON + ", " + health.ContentTypeHealthJSON + ";q=0.9, " + health.ContentTypeSpring + ";q=0.8, */*;q=0.1"

// recordReportErrorLocked records that in's report could not be used:
// the pool keeps the reason for /status, the counter counts it. It
// reports whether to log a WARN (see Pool.RecordReportError).
func (b *Balancer) recordReportErrorLocked(id string, now time.Time, err error) bool {
	reason := health.ReasonOf(err)
	detail := err.Error()
	if re, ok := errors.AsType[*health.ReportError](err); ok {
		detail = re.Detail // the reason is beside it, the instance is known
		if re.Err != nil {
			detail += ": " + re.Err.Error()
		}
	}
	warn, ok := b.pool.RecordReportError(id, now, reason, detail)
	if ok {
		b.m.countUnusable(reason)
	}
	return warn
}

// warnReport logs that an instance's report is unusable and why.
func (b *Balancer) warnReport(id string, err error) {
	b.log.Warn("health report unusable: the instance casts no dependency vote and is not bounded by its limit",
		"instance", id, "reason", health.ReasonOf(err), "error", err)
}
