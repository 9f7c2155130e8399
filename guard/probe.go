package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/spillway-dev/spillway/health"
)

// Run probes Config.ProbeURL until ctx is done, then returns nil. It
// sends probes (never through the bulkhead):
//
//   - once at start, through the breaker like a call, so that Status
//     leaves "unknown" early (and a dependency down at start counts);
//   - never while the breaker is closed: user calls are the signal then;
//   - while the breaker is open or half-open, every ProbeInterval from
//     the start of one to the start of the next, one at a time and
//     directly: a probe is not a trial call, takes no trial slot and
//     does not wait for OpenInterval. After ProbeSuccesses successes in
//     a row Run closes the breaker at once (see closeByProbes); a failed
//     probe, or the breaker opening again, starts the count over.
//
// So once the dependency has recovered, the breaker closes within
// ProbeInterval × ProbeSuccesses plus a probe's round trip (plus up to
// ProbeTimeout if a probe was hanging at the recovery), without user
// calls and whatever OpenInterval is. User calls still act as trial
// calls once the breaker is half-open; whichever closes it first wins.
//
// Run also calls Options.OnChange for the changes that Status and the
// metrics notice (an open breaker turning half-open). With an empty
// ProbeURL, that is all it does until ctx is done. Run returns an error
// if it is already running.
func (g *Guard) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return fmt.Errorf("guard %s: Run is already running", g.name)
	}
	defer g.running.Store(false)
	probing := g.cfg.ProbeURL != ""
	if probing && g.ownClient {
		defer g.client.CloseIdleConnections()
	}

	var r recovery
	if probing {
		if state, opens := g.breakerState(); state == gobreaker.StateClosed {
			result, _ := g.call(ctx, g.cfg.ProbeTimeout, g.probeOnce)
			g.m.probes.WithLabelValues(result).Inc()
		} else {
			r = recovery{probing: true, epoch: opens, next: time.Now()}
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var fire <-chan time.Time
		state, opens := g.breakerState()
		g.notify()
		if probing && r.update(state, opens, g.cfg.ProbeInterval) {
			timer.Reset(time.Until(r.next))
			fire = timer.C
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.wake: // the breaker changed state
		case <-fire:
			r.next = time.Now().Add(g.cfg.ProbeInterval)
			if !g.probeDirect(ctx) {
				r.successes = 0
				continue
			}
			r.successes++
			if r.successes >= g.cfg.ProbeSuccesses {
				g.closeByProbes(r.epoch, r.successes)
			}
		}
	}
}

// recovery is Run's state while the breaker is not closed: when the
// next probe is due and how many probes in a row have succeeded since
// the breaker last opened.
type recovery struct {
	probing   bool      // the breaker is open or half-open
	epoch     uint64    // the Guard's count of opens when the count began
	successes int       // probes in a row that succeeded in this epoch
	next      time.Time // when the next probe is due
}

// update follows the breaker's state and its count of opens, and reports
// whether a probe is due at r.next. A breaker that has just left the
// closed state is first probed one interval later; one that opened again
// keeps its schedule but starts the count over.
func (r *recovery) update(state gobreaker.State, opens uint64, interval time.Duration) bool {
	switch {
	case state == gobreaker.StateClosed:
		r.probing = false
		return false
	case !r.probing:
		*r = recovery{probing: true, epoch: opens, next: time.Now().Add(interval)}
	case opens != r.epoch:
		r.epoch, r.successes = opens, 0
	}
	return true
}

// probeDirect sends one probe outside the breaker, counts it in the
// metrics, keeps a failure as LastError, and reports whether it
// succeeded.
func (g *Guard) probeDirect(ctx context.Context) bool {
	pctx, cancel := context.WithTimeoutCause(ctx, g.cfg.ProbeTimeout, errOwnTimeout)
	defer cancel()
	err := g.probeOnce(pctx)
	result := resultSuccess
	switch {
	case err == nil:
	case ctx.Err() != nil:
		result = resultCanceled
	case errors.Is(context.Cause(pctx), errOwnTimeout):
		result = resultTimeout
		g.failed(fmt.Errorf("%w after %s: %w", ErrTimeout, g.cfg.ProbeTimeout, err).Error())
	default:
		result = resultFailure
		g.failed(err.Error())
	}
	g.m.probes.WithLabelValues(result).Inc()
	return err == nil
}

// closeByProbes closes the breaker after n probes in a row succeeded,
// unless it has opened again since the count began (epoch) or has been
// closed by a trial call meanwhile.
//
// gobreaker has no way to close a breaker from outside, so closeByProbes
// replaces it with a fresh, closed one, as if it had just been created.
// Calls in flight report their outcomes to the breaker that admitted them
// (gobreaker's own generations work the same way), and onStateChange
// ignores the state changes of a replaced breaker, so a trial call that
// was in flight cannot reopen the new breaker. Then closeByProbes does
// what a close by a trial call does: Status turns up, the change is
// logged, counted and reported to OnChange.
func (g *Guard) closeByProbes(epoch uint64, n int) {
	g.cb.Load().State() // an expired open breaker turns half-open: log the true "from"
	fresh := g.newBreaker()
	g.mu.Lock()
	if g.opens != epoch || g.breaker == gobreaker.StateClosed {
		g.mu.Unlock()
		return
	}
	from, lastErr := g.breaker, g.lastErr
	g.cb.Store(fresh)
	g.breaker = gobreaker.StateClosed
	g.lastErr = ""
	g.setStateLocked(health.DepUp)
	g.mu.Unlock()

	g.m.stateChanges.WithLabelValues(gobreaker.StateClosed.String()).Inc()
	g.m.probeCloses.Inc()
	g.log.LogAttrs(context.Background(), slog.LevelInfo, "circuit breaker closed by recovery probes",
		slog.String("dependency", g.name),
		slog.String("from", from.String()),
		slog.String("to", gobreaker.StateClosed.String()),
		slog.Int("probes", n),
		slog.String("last_error", lastErr))
	g.notify()
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
