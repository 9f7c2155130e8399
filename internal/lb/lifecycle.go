package lb

import (
	"context"
	"net/http"
	"time"
)

// The balancer's own life cycle, as Run drives it and /readyz, /status and
// the spillway_health_* metrics report it:
//
//		starting ──(first health checks done)──▶ serving ──(ctx done)──▶ draining
//		    ──(drain_delay, or Hurry)──▶ stopping ──(in flight done, or shutdown_timeout, or Hurry)──▶ stopped
//
//	  - starting: the admin API answers (/livez 200, /readyz 503 "starting");
//	    the proxy listener is bound but not served, so connections wait in
//	    the kernel's backlog instead of getting no_healthy_instance while the
//	    first health checks run (Envoy's cluster warming). At most twice the
//	    health check timeout.
//	  - serving: /readyz 200.
//	  - draining: /readyz 503 "draining"; the proxy still accepts and serves,
//	    and every answer carries "Connection: close", for drain_delay, so
//	    that whatever routes traffic here notices and moves it elsewhere
//	    (Envoy's /healthcheck/fail then drain, HAProxy's grace, an AWS
//	    target group's deregistration delay).
//	  - stopping: the listener is closed; requests in flight, streams and
//	    upgraded connections included, get shutdown_timeout to finish, then
//	    are cut off (HAProxy's hard-stop-after).
const (
	stageStarting int32 = iota
	stageServing
	stageDraining
	stageStopping
	stageStopped
)

var stageNames = [...]string{"starting", "serving", "draining", "stopping", "stopped"}

// Hurry moves a stop under way on to its next step, as a second SIGTERM or
// SIGINT does: during the drain delay it closes the listener at once;
// while requests in flight finish, it cuts them off. A call made before
// the stop reaches a step is remembered for it (two at most), so a Hurry
// that races Run's noticing its context is not lost. It never blocks.
func (b *Balancer) Hurry() {
	select {
	case b.hurry <- struct{}{}:
	default:
	}
}

// awaitFirstChecks waits, for at most d, until discovery has given its
// first set and every instance in it has had its first health check (pass
// or fail), so that the proxy does not answer no_healthy_instance merely
// because it has not looked yet. It returns early when ctx or gctx is done.
func (b *Balancer) awaitFirstChecks(ctx, gctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		b.mu.Lock()
		done, unchecked := b.discovered && b.ev.Unchecked == 0, b.ev.Unchecked
		b.mu.Unlock()
		if done {
			return
		}
		select {
		case <-b.evaluated:
		case <-t.C:
			b.log.Warn("serving before every instance has had its first health check", "unchecked", unchecked, "waited", d)
			return
		case <-ctx.Done():
			return
		case <-gctx.Done():
			return
		}
	}
}

// drain runs the draining stage: /readyz already answers 503; the proxy
// serves on for delay, or until Hurry.
func (b *Balancer) drain(delay time.Duration) {
	if delay <= 0 {
		return
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		b.log.Info("drain delay over")
	case <-b.hurry:
		b.log.Warn("drain delay cut short (signal received again)")
	}
}

// shutdown runs the stopping stage: it closes srv's listener and waits
// for the requests in flight, the upgraded connections included, for at
// most timeout (or until Hurry); then it cuts off what is left: cut
// cancels every request's context, the server and the upgraded
// connections are closed. srv is nil when the proxy never served.
func (b *Balancer) shutdown(ctx context.Context, srv *http.Server, timeout time.Duration, cut context.CancelFunc) {
	st := b.limiter.Load().Stats()
	b.log.Info("closing the proxy listener; requests in flight get the shutdown timeout",
		"shutdown_timeout", timeout, "in_flight", st.InFlight+st.Queue, "upgraded", b.upgrades.len())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	hurried := make(chan struct{})
	go func() { // ends with sctx, which shutdown cancels before it returns
		select {
		case <-b.hurry:
			close(hurried)
			cancel()
		case <-sctx.Done():
		}
	}()
	clean := true
	if srv != nil && srv.Shutdown(sctx) != nil {
		clean = false
	}
	// Shutdown does not wait for hijacked connections.
	if clean && !b.upgrades.wait(sctx) {
		clean = false
	}
	if clean {
		b.log.Info("requests in flight finished")
		return
	}
	why := "shutdown timeout reached"
	select {
	case <-hurried:
		why = "signal received again"
	default:
	}
	st = b.limiter.Load().Stats()
	b.log.Warn("cutting off requests in flight: "+why, "in_flight", st.InFlight, "upgraded", b.upgrades.len())
	cut()
	if srv != nil {
		_ = srv.Close()
	}
	b.upgrades.closeAll()
	// Their handlers end as soon as their connections fail.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer wcancel()
	if !b.upgrades.wait(wctx) {
		b.log.Warn("upgraded connections still open after being closed", "upgraded", b.upgrades.len())
	}
}
