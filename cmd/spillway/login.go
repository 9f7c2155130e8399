package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/membership"
	"github.com/spillway-dev/spillway/internal/registry"
	"github.com/spillway-dev/spillway/internal/tracing"
)

func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFileFlags("login", "configuration `file` (its login: section)", stderr)
	bind(cl, cl.String, "listen", "service port `address` (default 127.0.0.1:8001)",
		func(f *config.File, v string) { f.Login.Listen = v })
	bind(cl, cl.String, "health-listen", "health port `address` (default 127.0.0.1:9001)",
		func(f *config.File, v string) { f.Login.HealthListen = v })
	bindBackend(cl, "backend API base `URL` (default http://127.0.0.1:9000)")
	bind(cl, cl.Duration, "backend-timeout", "deadline of each backend call (default 1s)",
		func(f *config.File, v time.Duration) { f.Login.Backend.Timeout = v })
	bind(cl, cl.Int, "limit", "admission: concurrent logins (default 64)",
		func(f *config.File, v int) { f.Login.Admission.Limit = v })
	bind(cl, cl.Float64, "rate-limit", "login attempts per second per client; 0 disables (default 5)",
		func(f *config.File, v float64) { f.Login.RateLimit.PerSecond = v })
	bindTrustedProxies(cl, "comma-separated `IPs/CIDRs` whose X-Forwarded-For is believed; \"\" trusts nobody (default loopback and private ranges)",
		func(f *config.File, list []string) { f.Login.TrustedProxies = list })
	bindRegister(cl, "register this instance at `URL` etcd://HOST:PORT[,HOST:PORT...]/PREFIX once it serves (default none)")
	bind(cl, cl.Duration, "register-ttl", "lease TTL of the registration: how long a dead instance stays registered (default 5s)",
		func(f *config.File, v time.Duration) { f.Login.RegisterTTL = v })
	bindTLS(cl, func(f *config.File) (*string, *string) { return &f.Login.TLS.CertFile, &f.Login.TLS.KeyFile })
	dev := cl.Bool("dev", false, "generate an ephemeral signing key when none is configured")
	logger, err := cl.parse(args, stderr)
	if err != nil {
		return err
	}
	// load reads the file's login: section with the flags applied: at
	// start, and again on SIGHUP.
	var traceCfg tracing.Config // read at start; a change needs a restart
	load := func() (*login.Config, error) {
		f, err := cl.load(config.Default())
		if err != nil {
			return nil, err
		}
		if err := errors.Join(field.Prefix("login", f.Login.Validate()), field.Prefix("tracing", f.Tracing.Validate())); err != nil {
			return nil, err
		}
		traceCfg = f.Tracing
		return &f.Login, nil
	}
	c, err := load()
	if err != nil {
		return err
	}
	tp, stopTracing, err := startTracing(ctx, traceCfg, "spillway-login", logger)
	if err != nil {
		return err
	}
	defer stopTracing() // after Run has returned
	in, err := login.New(c, login.Options{Logger: logger, Dev: *dev, Registrar: registerInEtcd, TracerProvider: tp})
	if err != nil {
		return err
	}
	if *dev {
		logger.Warn("dev mode: ephemeral signing key; tokens die with this process", "kid", in.Tokens().KeyID())
	}
	// SIGHUP reloads the TLS certificate files and the file: keys, rate
	// limit and trusted proxies take effect; other changes need a restart
	// and are named in the log.
	var reload func()
	if cl.path() != "" || in.TLS() {
		reload = func() {
			_ = in.ReloadCertificates() // logged and counted
			if cl.path() != "" {
				reloadLogin(cl, load, in, logger)
			}
		}
	}
	defer onHangup(logger, "no --config file or TLS certificates to reload", reload)()
	svc, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen (--listen): %w", err)
	}
	var hl net.Listener
	if !c.Health.SharedPort {
		hl, err = net.Listen("tcp", c.HealthListen)
		if err != nil {
			svc.Close()
			return fmt.Errorf("health listen (--health-listen): %w", err)
		}
	}
	attrs := []any{"service", svc.Addr().String(), "backend", c.Backend.URL}
	if in.TLS() {
		attrs = append(attrs, "tls", true)
	}
	if hl != nil {
		attrs = append(attrs, "health", hl.Addr().String())
	} else {
		attrs = append(attrs, "health", "shared with service port (2018 mode)")
	}
	logger.Info("listening", attrs...)
	return in.Run(ctx, svc, hl)
}

// reloadLogin reloads the file into in, logging the outcome.
func reloadLogin(cl *fileFlags, load func() (*login.Config, error), in *login.Instance, logger *slog.Logger) {
	restart, err := in.Reload(load) // counted in spillway_config_last_reload_*
	if err != nil {
		logger.Error("SIGHUP: reload failed; keeping the running configuration", "config", cl.path(), "error", err)
		return
	}
	logger.Info("SIGHUP: configuration reloaded", "config", cl.path(), "kid", in.Tokens().KeyID())
	if len(restart) > 0 {
		logger.Warn("SIGHUP: these settings changed but need a restart; not applied", "settings", strings.Join(restart, ", "))
	}
}

// splitList splits a comma-separated flag value; "" is the empty list
// (never nil, which would mean "the default").
func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// runCheck validates a configuration file and prints what is wrong.
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	cfgPath := fs.String("config", "", "configuration `file` to validate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "spillway check: --config is required")
		return errUsage
	}
	f, err := loadFile(*cfgPath, config.Default(), nil)
	if err != nil {
		return err
	}
	_, derr := discoveryFor(f.LB.Discovery)
	if err := errors.Join(f.Validate(), derr); err != nil {
		return fmt.Errorf("%s:\n%w", *cfgPath, err)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return nil
}

// registerInEtcd is the login instances' Registrar: the etcd registry.
func registerInEtcd(ctx context.Context, target membership.Target, rec membership.Record, ttl time.Duration, log *slog.Logger) (login.Registration, error) {
	r, err := registry.RegisterAt(ctx, target, rec, ttl, log)
	if err != nil {
		return nil, err // not a nil *Registration in an interface
	}
	return r, nil
}
