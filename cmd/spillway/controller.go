package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/controller"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/lb"
)

// controllerRecoveryWindow is the controller's default
// lb.shedding.recovery_window. HAProxy cannot bound the requests in
// flight per dependency, so the controller's recovery ramp is a share
// rising with the clock ("window"), short enough that a backend that is
// back gets ≥99 % of its traffic within about 2 s (docs/HAPROXY.md).
const controllerRecoveryWindow = time.Second

// runController runs `spillway controller`: spillway's checks and
// policies (an lb.Balancer without a proxy) driving an HAProxy through
// its Runtime API (package controller), until ctx is done:
//
//	spillway controller [--config FILE] --haproxy-socket PATH [--admin-listen ADDR] --instance SERVICE=HEALTH [--instance ...]
//	spillway controller [...] --discovery etcd://HOST:PORT[,HOST:PORT...]/PREFIX [--dynamic-servers]
//	spillway controller --print-haproxy-config [--listen ADDR] --haproxy-socket PATH (--instance SERVICE=HEALTH [...] | --dynamic-servers)
//
// The file's lb: section and the flags are `spillway lb`'s, except that
// shedding.recovery defaults to "window" with a 1s recovery_window (and
// "feedback" is refused). --print-haproxy-config prints the haproxy.cfg
// HAProxy needs (frontend on --listen) and exits. SIGHUP reloads the
// policies from the file. The instance list in HAProxy is fixed by its
// configuration, unless --dynamic-servers (given to both commands): then
// the backend starts empty and the controller adds and deletes servers as
// instances come and go.
func runController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("controller", stderr)
	cfgPath := fs.String("config", "", "configuration `file` (its lb: section); reloaded on SIGHUP")
	socket := fs.String("haproxy-socket", "", "HAProxy's Runtime API: a unix socket `path`, unix://PATH or tcp://HOST:PORT (required)")
	mapFile := fs.String("haproxy-map", haproxy.DefaultMapFile, "the share map's absolute `path`, as HAProxy's configuration names it")
	printCfg := fs.Bool("print-haproxy-config", false, "print the haproxy.cfg HAProxy needs, with the share map's initial content in its header, and exit")
	listen := fs.String("listen", "", "with --print-haproxy-config: HAProxy's frontend `address` (default lb.listen, 127.0.0.1:8080)")
	adminListen := fs.String("admin-listen", "", "admin API `address` (default 127.0.0.1:8081)")
	var instances instanceFlag
	fs.Var(&instances, "instance", "an instance as `SERVICE_ADDR=HEALTH_ADDR`; repeat for each (replaces the file's list)")
	discovery := fs.String("discovery", "", "find the instances at `URL` instead of a list: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (not with --instance; each needs a server in HAProxy, or --dynamic-servers)")
	dynamic := fs.Bool("dynamic-servers", false, "HAProxy's backend starts without servers: the controller adds one per instance it learns (add server, in maintenance until checked) and deletes it when the instance leaves; for --discovery, where instances come and go")
	adminToken := fs.String("admin-token", "", "admin API bearer `token` (default: $SPILLWAY_ADMIN_TOKEN, else generated and printed)")
	logFlags := addLogFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *socket == "" {
		fmt.Fprintln(stderr, "spillway controller: --haproxy-socket is required")
		return errUsage
	}
	load := func() (*lb.Config, error) {
		def := config.Default()
		def.LB.Shedding.Recovery = lb.RecoveryWindow
		def.LB.Shedding.RecoveryWindow = controllerRecoveryWindow
		f, err := loadFile(*cfgPath, def, func(f *config.File) {
			c := &f.LB
			fs.Visit(func(fl *flag.Flag) {
				switch fl.Name {
				case "listen":
					c.Listen = *listen
				case "admin-listen":
					c.AdminListen = *adminListen
				case "instance":
					c.Instances = append([]lb.Instance(nil), instances...)
				case "discovery":
					c.Discovery = *discovery
				}
			})
		})
		if err != nil {
			return nil, err
		}
		if err := field.Prefix("lb", f.LB.Validate()); err != nil {
			return nil, err
		}
		if f.LB.Shedding.Recovery != lb.RecoveryWindow {
			return nil, field.New("lb.shedding.recovery", string(f.LB.Shedding.Recovery), `must be "window" with the controller: HAProxy cannot bound requests in flight per dependency (docs/HAPROXY.md)`)
		}
		if _, err := discoveryFor(f.LB.Discovery); err != nil {
			return nil, err
		}
		return &f.LB, nil
	}
	c, err := load()
	if err != nil {
		return err
	}
	hc := haproxy.ConfigFor(c, *socket, *mapFile)
	hc.Dynamic = *dynamic
	if *printCfg {
		if len(c.Instances) == 0 && !hc.Dynamic {
			return errors.New("--print-haproxy-config needs the instances: --instance SERVICE=HEALTH or lb.instances (HAProxy has one server per instance), or --dynamic-servers")
		}
		return hc.Render(stdout)
	}
	if err := hc.Validate(); err != nil && (len(c.Instances) > 0 || hc.Dynamic) {
		return fmt.Errorf("haproxy config: %w", err)
	}
	if len(c.Instances) == 0 && c.Discovery == "" {
		return errors.New("no instances: --instance SERVICE=HEALTH (repeat) or --discovery URL")
	}
	rt, err := haproxy.NewRuntime(runtimeAddr(*socket))
	if err != nil {
		return fmt.Errorf("--haproxy-socket: %w", err)
	}
	logger, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}

	var (
		disc   lb.Discovery
		shared lb.Shared
	)
	if open, _ := discoveryFor(c.Discovery); open != nil { // validated by load
		src, err := open(logger, lbSelf{id: lbID(), weight: 1})
		if err != nil {
			return fmt.Errorf("lb.discovery: %w", err)
		}
		defer src.close() // after Run has returned: its watch has stopped
		disc = src.disc
		if src.shared != nil {
			// The operators' overrides and drains, shared with the
			// balancers in front of the same fleet. The controller does
			// not register as a balancer: HAProxy is not one of the
			// proxies that split the fleet's capacity.
			shared = src.shared
			sctx, stopShared := context.WithCancel(context.WithoutCancel(ctx))
			var wg sync.WaitGroup
			defer wg.Wait()
			defer stopShared() // once Run has returned
			wg.Go(func() { _ = src.shared.Run(sctx) })
		}
	}
	token, generated, err := adminTokenFor(*adminToken, c)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	feed := lb.NewPlanFeed()
	b, err := lb.New(*c, lb.Options{Logger: logger, Registry: reg, AdminToken: token, Discovery: disc, Shared: shared, DataPlane: feed})
	if err != nil {
		return err
	}
	ctl, err := controller.New(controller.Options{
		Runtime: rt, Config: hc, Plans: feed, Logger: logger, Registerer: reg,
		Fix: printCommand(*cfgPath, c, *socket, *mapFile, hc.Dynamic),
	})
	if err != nil {
		return err
	}
	var reload func()
	if *cfgPath != "" {
		reload = func() {
			logger.Info("SIGHUP: reloading", "config", *cfgPath)
			_ = b.Reload(load) // logged and counted by Reload
		}
	}
	stopHangup := onHangup(logger, "no --config file to reload", reload)
	defer stopHangup()
	aln, err := net.Listen("tcp", c.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen (--admin-listen): %w", err)
	}
	if generated {
		fmt.Fprintf(stderr, "spillway controller: admin token (generated; set SPILLWAY_ADMIN_TOKEN to choose one): %s\n", token)
	}
	logger.Info("listening", "admin", aln.Addr().String(), "haproxy_socket", rt.Addr(), "instances", len(c.Instances), "discovery", c.Discovery)
	if !httpapi.IsLoopback(aln.Addr()) {
		logger.Warn("admin API on a non-loopback address: reads need the token too", "admin", aln.Addr().String())
	}
	// The balancer decides, the controller applies; either failing stops
	// both (the controller fails only at start, when HAProxy lacks what
	// it needs).
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Run(gctx, nil, aln) })
	g.Go(func() error { return ctl.Run(gctx) })
	return g.Wait()
}

// runtimeAddr is --haproxy-socket as haproxy.NewRuntime takes it: a
// host:port without a scheme is TCP.
func runtimeAddr(socket string) string {
	if !strings.Contains(socket, "://") && !strings.Contains(socket, "/") {
		if _, _, err := net.SplitHostPort(socket); err == nil {
			return "tcp://" + socket
		}
	}
	return socket
}

// printCommand is the command line that prints the configuration this
// controller needs, for the error that says what HAProxy lacks.
func printCommand(cfgPath string, c *lb.Config, socket, mapFile string, dynamic bool) string {
	var b strings.Builder
	b.WriteString("spillway controller --print-haproxy-config")
	if cfgPath != "" {
		fmt.Fprintf(&b, " --config %s", cfgPath)
	}
	fmt.Fprintf(&b, " --listen %s --haproxy-socket %s", c.Listen, socket)
	if mapFile != haproxy.DefaultMapFile {
		fmt.Fprintf(&b, " --haproxy-map %s", mapFile)
	}
	for _, in := range c.Instances {
		fmt.Fprintf(&b, " --instance %s=%s", in.Service, in.Health)
	}
	if dynamic {
		b.WriteString(" --dynamic-servers")
	}
	b.WriteString(" > haproxy.cfg (and its share map: see its header), then reload HAProxy")
	return b.String()
}
