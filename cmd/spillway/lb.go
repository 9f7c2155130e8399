package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/tracing"
)

// runLB runs the load balancer until ctx is done:
//
//	spillway lb --config FILE
//	spillway lb [--listen ADDR] [--admin-listen ADDR] [--trusted-proxies LIST] [--proxy-protocol MODE] [--tls-cert FILE --tls-key FILE] --instance SERVICE_ADDR=HEALTH_ADDR [--instance ...]
//	spillway lb [...] --discovery etcd://HOST:PORT[,HOST:PORT...]/PREFIX
//
// Flags override the file's lb: section (--instance replaces its list;
// --discovery and a list are mutually exclusive).
// SIGHUP reloads the file, all or nothing, with the same flags applied,
// and the TLS certificate files (each listener's all or nothing).
// SIGTERM or SIGINT (or ctx) stops it: /readyz turns 503, the proxy serves
// on for server.drain_delay, then closes its listener and gives the
// requests in flight server.shutdown_timeout. Each further SIGTERM or
// SIGINT moves the stop on a step (Balancer.Hurry).
func runLB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFileFlags("lb", "configuration `file` (its lb: section); reloaded on SIGHUP", stderr)
	bindLBListen(cl, "proxy `address` (default 127.0.0.1:8080)", "admin API `address` (default 127.0.0.1:8081)")
	var instances instanceFlag
	bindVar(cl, &instances, "instance", "an instance as `SERVICE_ADDR=HEALTH_ADDR`; repeat for each (replaces the file's list)",
		func(f *config.File) { f.LB.Instances = append([]lb.Instance(nil), instances...) })
	bind(cl, cl.String, "discovery", "find the instances at `URL` instead of a list: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (not with --instance)",
		func(f *config.File, v string) { f.LB.Discovery = v })
	bind(cl, cl.Float64, "weight", "with etcd discovery, this balancer's part of the fleet's capacity among the balancers registered there (default 1)",
		func(f *config.File, v float64) { f.LB.Weight = v })
	bindTrustedProxies(cl, "comma-separated `IPs/CIDRs` whose X-Forwarded-*/Forwarded headers are kept and appended to (default none: replaced)",
		func(f *config.File, list []string) { f.LB.TrustedProxies = list })
	bind(cl, cl.String, "proxy-protocol", "PROXY protocol on the proxy listener: `off`, optional or required (default off)",
		func(f *config.File, v string) { f.LB.Server.ProxyProtocol = v })
	bindTLS(cl, func(f *config.File) (*string, *string) { return &f.LB.Server.TLS.CertFile, &f.LB.Server.TLS.KeyFile })
	bind(cl, cl.String, "access-log", "write a JSON line per request to `PATH`, or - for stderr; reopened on SIGHUP (default none: off)",
		func(f *config.File, v string) { f.LB.AccessLog.Path = v })
	adminToken := cl.String("admin-token", "", "admin API bearer `token` (default: $SPILLWAY_ADMIN_TOKEN, else generated and printed)")
	logger, err := cl.parse(args, stderr)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(lbGCPercent))
	}
	var traceCfg tracing.Config // read at start; a change needs a restart
	load := func() (*lb.Config, error) {
		f, err := cl.load(config.Default())
		if err != nil {
			return nil, err
		}
		if err := errors.Join(field.Prefix("lb", f.LB.Validate()), field.Prefix("tracing", f.Tracing.Validate())); err != nil {
			return nil, err
		}
		if _, err := discoveryFor(f.LB.Discovery); err != nil {
			return nil, err
		}
		traceCfg = f.Tracing
		return &f.LB, nil
	}
	c, err := load()
	if err != nil {
		return err
	}
	tp, stopTracing, err := startTracing(ctx, traceCfg, "spillway-lb", logger)
	if err != nil {
		return err
	}
	defer stopTracing() // after Run has returned

	open, _ := discoveryFor(c.Discovery) // validated by load
	var (
		disc   lb.Discovery
		src    *source
		peers  lb.Peers
		shared lb.Shared
	)
	if open != nil {
		if src, err = open(logger, lbSelf{id: lbID(), weight: c.Weight}); err != nil {
			return fmt.Errorf("lb.discovery: %w", err)
		}
		defer src.close() // after Run has returned: its watch has stopped
		disc = src.disc
		if src.peers != nil {
			peers = src.peers
		}
		if src.shared != nil {
			shared = src.shared
			cur, _ := src.shared.Current()
			logger.Info("shared decisions", "overrides", len(cur.Overrides), "drains", len(cur.Drains), "id", src.shared.Status().Self)
		}
	}
	token, generated, err := adminTokenFor(*adminToken, c)
	if err != nil {
		return err
	}
	if len(c.Instances) == 0 && disc == nil {
		logger.Warn("no instances configured: every request gets 503 no_healthy_instance until some are added")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := lb.New(*c, lb.Options{Logger: logger, Registry: reg, AdminToken: token, Discovery: disc, Peers: peers, Shared: shared, TracerProvider: tp})
	if err != nil {
		return err
	}
	// SIGHUP reloads, SIGTERM and SIGINT stop; registered before
	// "listening" is logged, so a script that waits for that line can
	// send them safely. main's signal.NotifyContext also ends ctx on the
	// first SIGTERM or SIGINT; counting them here tells a second one,
	// which hurries the stop, from the first.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var reload func()
	if cl.path() != "" || b.HasCertificates() || c.AccessLog.Path != "" {
		reload = func() {
			if runCtx.Err() != nil {
				logger.Warn("SIGHUP: stopping; not reloading")
				return
			}
			_ = b.ReloadCertificates() // logged and counted by the stores
			switch {
			case cl.path() != "":
				logger.Info("SIGHUP: reloading", "config", cl.path())
				_ = b.Reload(load) // logged and counted by Reload; reopens the access log
			case c.AccessLog.Path != "":
				// No file to reload, but an access log (--access-log)
				// that logrotate moves away and signals.
				if err := b.ReopenAccessLog(); err != nil {
					logger.Error("SIGHUP: access log not reopened; writing to the old file", "error", err)
					return
				}
				logger.Info("SIGHUP: access log reopened", "access_log", c.AccessLog.Path)
			}
		}
	}
	stopHangup := onHangup(logger, "no --config file, TLS certificates or access log to reload", reload)
	defer stopHangup()
	term := make(chan os.Signal, 3)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen (--listen): %w", err)
	}
	aln, err := net.Listen("tcp", c.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin listen (--admin-listen): %w", err)
	}
	if generated {
		fmt.Fprintf(stderr, "spillway lb: admin token (generated; set SPILLWAY_ADMIN_TOKEN to choose one): %s\n", token)
	}
	attrs := []any{"proxy", ln.Addr().String(), "admin", aln.Addr().String()}
	if disc != nil {
		attrs = append(attrs, "discovery", c.Discovery)
	} else {
		attrs = append(attrs, "instances", len(c.Instances))
	}
	if c.Server.TLS.Enabled() {
		attrs = append(attrs, "tls", true)
	}
	logger.Info("listening", attrs...)
	if !httpapi.IsLoopback(aln.Addr()) {
		logger.Warn("admin API on a non-loopback address: reads need the token too", "admin", aln.Addr().String())
	}

	// With etcd: this balancer registers under PREFIX/lbs/ so that the
	// others count it, follows them (its share) and the operators'
	// decisions, and deregisters as soon as it starts draining. The
	// goroutines stop once Run has returned.
	if src != nil && src.register != nil {
		lbReg, err := src.register(ctx, aln.Addr().String())
		if err != nil {
			ln.Close()
			aln.Close()
			return fmt.Errorf("lb.discovery: %w", err)
		}
		sh, _ := src.peers.Share()
		logger.Info("registered", "key", lbReg.Key(), "weight", c.Weight, "share", sh.Share, "peers", sh.Peers)
		regCtx, stopReg := context.WithCancel(context.WithoutCancel(ctx))
		var wg sync.WaitGroup
		defer wg.Wait()
		defer stopReg()
		wg.Go(func() { _ = lbReg.Run(regCtx) })
		wg.Go(func() { _ = src.peers.Run(regCtx) })
		wg.Go(func() { _ = src.shared.Run(regCtx) })
		deregister := sync.OnceFunc(func() {
			if err := lbReg.Deregister(context.WithoutCancel(ctx)); err != nil {
				logger.Warn("deregister failed; the registration expires with its lease", "error", err)
				return
			}
			logger.Info("deregistered", "key", lbReg.Key())
		})
		context.AfterFunc(runCtx, deregister) // the drain begins
		defer deregister()                    // or Run failed
	}

	// The signal goroutine stops once Run has returned, before runLB does.
	sigDone, runDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sigDone)
		signals := 0
		for {
			select {
			case <-runDone:
				return
			case sig := <-term:
				if signals++; signals == 1 {
					logger.Info("signal received: stopping", "signal", sig.String())
					stop()
					continue
				}
				logger.Warn("signal received again: hurrying the stop", "signal", sig.String(), "count", signals)
				b.Hurry()
			}
		}
	}()
	err = b.Run(runCtx, ln, aln)
	close(runDone)
	<-sigDone
	return err
}

// lbID names this balancer among those registered in etcd: hostname-pid.
func lbID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "lb"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// lbGCPercent is the garbage collector's target percentage (GOGC) for
// `spillway lb` when the environment sets no GOGC. A proxy allocates a few
// KB per request and keeps little alive, so with Go's default of 100 it
// collects dozens of times a second under load, each time scanning the
// stacks of every connection's goroutines. 200 halves the collections for
// a heap that may grow to 3× the live data instead of 2×: in the loopback
// benchmark, 12–16% less CPU per request for 3–9 MiB more RSS
// (docs/BENCHMARKS.md, "Load balancer"). No memory limit is set: one only
// makes the collector work harder, and the live heap grows with the number
// of connections; set GOMEMLIMIT to have one.
const lbGCPercent = 200

// adminTokenFor picks the admin token: the flag, else the environment
// variable named by admin_token_env, else the file's admin_token, else a
// generated one (generated is then true).
func adminTokenFor(flagValue string, c *lb.Config) (token string, generated bool, err error) {
	const minLen = 16
	check := func(src, tok string) (string, bool, error) {
		if len(tok) < minLen {
			return "", false, fmt.Errorf("%s: the admin token must be at least %d characters", src, minLen)
		}
		return tok, false, nil
	}
	switch {
	case flagValue != "":
		return check("--admin-token", flagValue)
	case os.Getenv(c.AdminTokenEnv) != "":
		return check("$"+c.AdminTokenEnv, os.Getenv(c.AdminTokenEnv))
	case c.AdminToken.Reveal() != "":
		return check("lb.admin_token", c.AdminToken.Reveal())
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("generate admin token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), true, nil
}

// instanceFlag collects --instance SERVICE_ADDR=HEALTH_ADDR values.
type instanceFlag []lb.Instance

func (f *instanceFlag) String() string {
	parts := make([]string, len(*f))
	for i, in := range *f {
		parts[i] = in.Service + "=" + in.Health
	}
	return strings.Join(parts, ",")
}

func (f *instanceFlag) Set(s string) error {
	svc, hl, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want SERVICE_ADDR=HEALTH_ADDR", s)
	}
	*f = append(*f, lb.Instance{Service: svc, Health: hl})
	return nil
}
