package fleet

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// probeResult is one round of checks of one instance.
type probeResult struct {
	p        *proc
	hasCheck bool  // check holds a result of the replacement check
	check    Probe // the check that replace_on selects
	ready    bool  // the traffic check passed
}

// probeLoop checks p until ctx is done: the replacement check every
// interval and, until p is first ready, its traffic check every 100ms (at
// most every interval) so a new instance's readiness is seen quickly.
func (f *Fleet) probeLoop(ctx context.Context, p *proc) {
	defer f.wg.Done()
	decide := f.cfg.Check.Liveness
	if f.cfg.ReplaceOn == ReplaceOnTraffic {
		decide = f.cfg.Check.Traffic
	}
	traffic := f.cfg.Check.Traffic
	same := decide == traffic

	interval := time.NewTicker(f.cfg.Check.Interval)
	defer interval.Stop()
	fast := time.NewTicker(min(100*time.Millisecond, f.cfg.Check.Interval))
	defer fast.Stop()
	fastC := fast.C
	ready := false
	for {
		var r probeResult
		select {
		case <-ctx.Done():
			return
		case <-interval.C:
			r.hasCheck = true
			r.check = f.probe.check(ctx, p.addr(decide.Port), decide.Path, f.clock)
			r.ready = same && r.check.OK
		case <-fastC:
			r.ready = f.probe.check(ctx, p.addr(traffic.Port), traffic.Path, f.clock).OK
		}
		if ctx.Err() != nil {
			return // a check cut short by the stop says nothing about p
		}
		if r.ready && !ready {
			ready = true
			fast.Stop()
			fastC = nil
		}
		if !r.hasCheck && !r.ready {
			continue
		}
		r.p = p
		select {
		case f.results <- r:
		case <-ctx.Done():
			return
		}
	}
}

// prober checks instances over HTTP. It keeps no connections: every check
// dials afresh, so a check never rides on a connection to a process that
// has since died, and nothing lingers after the fleet stops.
type prober struct {
	client  *http.Client
	timeout time.Duration
}

func newProber(timeout time.Duration) *prober {
	tr := &http.Transport{
		Proxy:                  nil, // checks go to the instance, never through a proxy
		DialContext:            (&net.Dialer{Timeout: timeout}).DialContext,
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConns:           1,
		IdleConnTimeout:        time.Second,
		TLSHandshakeTimeout:    timeout,
		ExpectContinueTimeout:  timeout,
	}
	return &prober{
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		timeout: timeout,
	}
}

// check makes one GET http://addr+path and reports whether it answered 2xx
// within the timeout.
func (p *prober) check(ctx context.Context, addr, path string, now func() time.Time) Probe {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	r := Probe{Target: addr + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		r.Time, r.Error = now(), err.Error()
		return r
	}
	resp, err := p.client.Do(req)
	r.Time = now()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	r.Status = resp.StatusCode
	r.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	if !r.OK {
		r.Error = resp.Status
	}
	return r
}

func (p *prober) close() { p.client.CloseIdleConnections() }
