package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spillway-dev/spillway/internal/buildinfo"
	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/fleetwide"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/registry"
)

// runFleet supervises this host's login instances, without a load
// balancer, until ctx is done:
//
//	spillway fleet [--config FILE] [--instances N] [--backend URL] [--host IP]
//	               [--register etcd://HOST:PORT[,HOST:PORT...]/PREFIX] [--admin-listen ADDR] [--dev]
//
// It reads the file's fleet:, login: and fleet_admin: sections; flags win.
// Each instance is `spillway login --config FILE` with the flags given
// here passed on (--backend, --register), so with --register every
// instance registers itself under PREFIX/instances/ and deregisters as
// it drains. With login.register set the replacement guardrails are
// fleet-wide (package fleetwide): one budget and one freeze for every
// host's fleet under PREFIX; without it they are this host's own.
// SIGTERM or SIGINT (or ctx) stops it: every instance drains.
func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cl := newFileFlags("fleet", "configuration `file` (its fleet:, login: and fleet_admin: sections); passed on to every instance", stderr)
	bindInstances(cl, "number of login instances (fleet.size, default 3)")
	bindBackend(cl, "backend API base `URL`, passed to every instance (login.backend.url, default http://127.0.0.1:9000)")
	bindRegister(cl, "etcd `URL` etcd://HOST:PORT[,HOST:PORT...]/PREFIX: every instance registers there, and the guardrails are fleet-wide (login.register, default none)")
	bind(cl, cl.String, "host", "IP `address` the instances listen on (fleet.host, default 127.0.0.1)",
		func(f *config.File, v string) { f.Fleet.Host = v })
	bind(cl, cl.String, "admin-listen", "admin API `address`: GET /status and /metrics (fleet_admin.listen, default none)",
		func(f *config.File, v string) { f.FleetAdmin.Listen = v })
	dev := cl.Bool("dev", false, "generate one ephemeral signing key for this host's instances when none is configured (tokens do not verify on other hosts)")
	quiet := cl.Bool("quiet-instances", false, "hide the login instances' own logs")
	logger, err := cl.parse(args, stderr)
	if err != nil {
		return err
	}
	f, err := cl.load(config.Default())
	if err != nil {
		return err
	}
	if err := errors.Join(
		field.Prefix("login", f.Login.Validate()),
		field.Prefix("fleet", f.Fleet.Validate()),
		field.Prefix("fleet_admin", f.FleetAdmin.Validate()),
	); err != nil {
		return err
	}

	// Every instance gets the same file and the flags given here, which
	// `spillway login` applies over it as this command did.
	var loginArgs []string
	if cl.path() != "" {
		abs, err := filepath.Abs(cl.path())
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		loginArgs = append(loginArgs, "--config", abs)
	}
	cl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "backend", "register":
			loginArgs = append(loginArgs, "--"+f.Name, f.Value.String())
		}
	})
	// A key the instances cannot load would make every one of them exit
	// at start: say so once, here. With --dev and no key configured, one
	// ephemeral key for all of them, through their environment, never a
	// command line.
	var env []string
	if _, err := login.LoadTokens(f.Login.Token, false, os.Getenv, time.Now); err != nil {
		if !*dev || !errors.Is(err, login.ErrNoKey) {
			return fmt.Errorf("login.token: %w", err)
		}
		key, err := login.GenerateKey()
		if err != nil {
			return err
		}
		pemKey, err := login.EncodePrivateKey(key)
		if err != nil {
			return err
		}
		env = append(env, f.Login.Token.KeyEnv+"="+string(pemKey))
		logger.Warn("dev mode: one ephemeral signing key for this host's instances; tokens die with this process and do not verify on other hosts")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.NewCollector())
	opts := fleet.Options{Logger: logger, Registerer: reg, Env: env}
	if !*quiet {
		opts.Output = stderr
	}
	fc := f.Fleet
	fc.Args = append(loginArgs, fc.Args...)

	// With etcd: fleet-wide guardrails. etcd is needed at start, as it is
	// for the instances' registration; once running, losing it stops
	// nothing.
	var rails *fleetwide.Guardrails
	if f.Login.Register != "" {
		target, err := registry.ParseURL(f.Login.Register)
		if err != nil {
			return field.New("login.register", f.Login.Register, ruleOf(err))
		}
		cli, err := registry.Dial(target)
		if err != nil {
			return err
		}
		defer cli.Close() // after the guardrails' Run has returned
		rails, err = fleetwide.New(cli, target.Prefix, &fc, fleetwide.Options{
			Host:       fc.Host,
			Etcd:       registry.Options{TTL: f.Login.RegisterTTL, Logger: logger},
			Registerer: reg,
		})
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = rails.Refresh(rctx)
		cancel()
		if err != nil {
			return err
		}
		opts.Guardrails = rails
		opts.Hosts = rails.Hosts // fleet-scope schedule windows split over the live hosts
		st := rails.Status()
		logger.Info("fleet-wide guardrails", "etcd", target.String(), "host_id", rails.HostID(),
			"hosts", len(st.Hosts), "fleet_size", st.Size, "budget_max", st.BudgetMax)
	}
	fl, err := fleet.New(fc, opts)
	if err != nil {
		return err
	}

	// SIGHUP reloads nothing here: the instances reload their file on
	// their own SIGHUP; the fleet: section needs a restart.
	defer onHangup(logger, "spillway fleet reloads nothing (its instances reload their login: section on their own SIGHUP; fleet: changes need a restart)", nil)()
	var aln net.Listener
	if f.FleetAdmin.Listen != "" {
		if aln, err = net.Listen("tcp", f.FleetAdmin.Listen); err != nil {
			return fmt.Errorf("admin listen (--admin-listen): %w", err)
		}
		logger.Info("listening", "admin", aln.Addr().String())
		if !httpapi.IsLoopback(aln.Addr()) {
			logger.Warn("admin API on a non-loopback address: /status and /metrics are readable without a token", "admin", aln.Addr().String())
		}
	}

	// The guardrails and the admin API outlive the fleet's Run: its
	// instances drain with the guardrails still in place, and /status
	// answers until the last one has exited.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var wg sync.WaitGroup
	defer wg.Wait()
	if rails != nil {
		wg.Go(func() { _ = rails.Run(bg) })
	}
	if aln != nil {
		srv := httpapi.NewServer(httpapi.GuardLoopback(httpapi.IsLoopback(aln.Addr()), fleetAdmin(fl, rails, reg, logger)), logger)
		wg.Go(func() { _ = srv.Serve(aln) })
		wg.Go(func() {
			<-bg.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				_ = srv.Close()
			}
		})
	}
	err = fl.Run(ctx)
	stopBG()
	return err
}

// fleetStatus is the admin API's GET /status.
type fleetStatus struct {
	// Processes are the instance processes, in slot order.
	Processes []fleet.ProcessStatus `json:"processes"`
	// Frozen: correlated failures hold every health-based replacement.
	Frozen bool `json:"frozen"`
	// BudgetRemaining is the replacements allowed now; -1 without limit.
	BudgetRemaining int `json:"budget_remaining"`
	// FleetWide is the view of every host's fleet, with etcd.
	FleetWide *fleetwide.Status `json:"fleet_wide,omitempty"`
	// Events are the recent events, oldest first.
	Events []fleet.Event `json:"events"`
}

// fleetAdmin serves GET /status and GET /metrics.
func fleetAdmin(fl *fleet.Fleet, rails *fleetwide.Guardrails, reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	api := httpapi.Adapter{Log: logger, Message: "admin request failed"}
	mux := http.NewServeMux()
	mux.Handle("GET /status", api.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		st := fleetStatus{Processes: fl.Status(), Frozen: fl.Frozen(), Events: fl.Events(0)}
		st.BudgetRemaining, _ = fl.BudgetRemaining()
		if rails != nil {
			v := rails.Status()
			st.FleetWide = &v
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
		return nil
	}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	return mux
}
