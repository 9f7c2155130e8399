package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/field"
)

// runBackendSim serves a backendsim.Sim until ctx is done:
//
//	spillway backend-sim [--listen ADDR] [--mode MODE] [--latency D] [--slow-latency D]
//
// It logs "listening on ADDR" to stderr once it accepts connections, so
// scripts can wait for that line.
func runBackendSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backend-sim", stderr)
	listen := hostPortFlag("127.0.0.1:9000")
	fs.Var(&listen, "listen", "`host:port` to serve on (port 0 picks a free one)")
	mode := backendsim.ModeUp
	fs.TextVar(&mode, "mode", backendsim.ModeUp, "initial `mode`: up, hang, error, slow or down")
	latency := latencyFlag(20 * time.Millisecond)
	fs.Var(&latency, "latency", "`duration` mode up waits before answering")
	slow := latencyFlag(backendsim.DefaultSlowLatency)
	fs.Var(&slow, "slow-latency", "`duration` mode slow waits before answering")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	sim, err := backendsim.New(backendsim.Config{
		Mode:        mode,
		Latency:     time.Duration(latency),
		SlowLatency: time.Duration(slow),
	}, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", string(listen))
	if err != nil {
		sim.Close()
		return fmt.Errorf("listen: %w", err)
	}
	defer onHangup(logger, "backend-sim has no configuration file; change its mode with PUT /control", nil)()
	addr := ln.Addr().String()
	cfg := sim.Config()
	logger.Info("listening on "+addr, "addr", addr,
		"mode", cfg.Mode, "latency", cfg.Latency, "slow_latency", cfg.SlowLatency)
	return sim.Serve(ctx, ln)
}

// hostPortFlag is a flag value that must be a host:port.
type hostPortFlag string

func (f *hostPortFlag) String() string { return string(*f) }

func (f *hostPortFlag) Set(s string) error {
	if err := field.HostPort("address", s); err != nil {
		return err
	}
	*f = hostPortFlag(s)
	return nil
}

// latencyFlag is a Go duration from 0 to backendsim.MaxLatency.
type latencyFlag time.Duration

func (f *latencyFlag) String() string { return time.Duration(*f).String() }

func (f *latencyFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: not a Go duration such as \"20ms\"", s)
	}
	if err := backendsim.CheckLatency(d); err != nil {
		return err
	}
	*f = latencyFlag(d)
	return nil
}
