package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/sidecar"
)

// runGuard runs the sidecar of package sidecar in front of one dependency:
//
//	spillway guard --listen ADDR --health-listen ADDR --upstream URL [--timeout D]
//	               [--service-ready URL] [--name NAME] [--config FILE]
//
// Flags override the file's guard: section. It logs "listening" with the
// bound addresses (proxy=, health=) once both listeners are open.
func runGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFileFlags("guard", "configuration `file` (its guard: section)", stderr)
	bind(cl, cl.String, "listen", "proxy `address` the service calls instead of the upstream (default 127.0.0.1:8100)",
		func(f *config.File, v string) { f.Guard.Listen = v })
	bind(cl, cl.String, "health-listen", "health port `address`: /livez, /readyz, /health, /metrics (default 127.0.0.1:9100)",
		func(f *config.File, v string) { f.Guard.HealthListen = v })
	bind(cl, cl.String, "upstream", "the dependency's base `URL`; its probe is URL/healthz unless the file sets probe_url (default http://127.0.0.1:9000)",
		func(f *config.File, v string) {
			f.Guard.URL = v
			f.Guard.ProbeURL = "" // derived again from the upstream named here
		})
	bind(cl, cl.Duration, "timeout", "deadline of each call, response body included (default 1s)",
		func(f *config.File, v time.Duration) { f.Guard.Timeout = v })
	bind(cl, cl.String, "service-ready", "the service's readiness `URL`, polled every second: /readyz and the report's ready fail while it does (default none)",
		func(f *config.File, v string) { f.Guard.ServiceReady.URL = v })
	bind(cl, cl.String, "name", "the dependency's `name` in /health and metrics (default backend)",
		func(f *config.File, v string) { f.Guard.Name = v })
	logger, err := cl.parse(args, stderr)
	if err != nil {
		return err
	}
	f, err := cl.load(config.Default())
	if err != nil {
		return err
	}
	if err := field.Prefix("guard", f.Guard.Validate()); err != nil {
		return err
	}
	defer onHangup(logger, "spillway guard reloads nothing; restart it to apply a change", nil)()
	sc, err := sidecar.New(&f.Guard, sidecar.Options{Logger: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.Guard.Listen)
	if err != nil {
		return fmt.Errorf("listen (--listen): %w", err)
	}
	hl, err := net.Listen("tcp", f.Guard.HealthListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("health listen (--health-listen): %w", err)
	}
	logger.Info("listening", "proxy", ln.Addr().String(), "health", hl.Addr().String(),
		"upstream", f.Guard.URL, "dependency", f.Guard.Name, "service_ready", f.Guard.ServiceReady.URL)
	return sc.Run(ctx, ln, hl)
}
