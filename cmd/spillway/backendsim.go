package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/field"
)

// runBackendSim serves a backendsim.Sim until ctx is done:
//
//	spillway backend-sim [--listen ADDR] [--mode MODE] [--latency D] [--slow-latency D]
//	                     [--capacity N] [--queue-size N] [--queue-timeout D]
//
// The capacity flags set its worker pool (docs/BACKEND-SIM.md). It logs "listening on ADDR" to stderr once it accepts connections, so
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
	capacity := poolSizeFlag{max: backendsim.MaxCapacity}
	fs.Var(&capacity, "capacity", "at most `n` validate calls worked on at once; the others wait in a FIFO queue. 0: no limit")
	queueSize := poolSizeFlag{max: backendsim.MaxQueueSize}
	fs.Var(&queueSize, "queue-size", "at most `n` calls wait for a worker; one more is answered 503 at once. 0: no bound")
	var queueTimeout latencyFlag
	fs.Var(&queueTimeout, "queue-timeout", "`duration` a call may wait for a worker before it is answered 503. 0: as long as its caller waits")
	logFlags := addLogFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}
	sim, err := backendsim.New(backendsim.Config{
		Mode:        mode,
		Latency:     time.Duration(latency),
		SlowLatency: time.Duration(slow),

		Capacity:     capacity.n,
		QueueSize:    queueSize.n,
		QueueTimeout: time.Duration(queueTimeout),
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
		"mode", cfg.Mode, "latency", cfg.Latency, "slow_latency", cfg.SlowLatency,
		"capacity", cfg.Capacity, "queue_size", cfg.QueueSize, "queue_timeout", cfg.QueueTimeout)
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

// poolSizeFlag is a whole number from 0 to max: a capacity or a queue size.
type poolSizeFlag struct {
	n, max int
}

func (f *poolSizeFlag) String() string { return strconv.Itoa(f.n) }

func (f *poolSizeFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q: not a whole number", s)
	}
	if err := backendsim.CheckCount(n, f.max); err != nil {
		return err
	}
	f.n = n
	return nil
}
