package stack

// This file is `spillway up --data-plane haproxy`: HAProxy carries the
// logins instead of the balancer's own proxy, driven by the controller
// (package controller) from the balancer's plans, as `spillway
// controller` drives a team's HAProxy. The balancer still checks the
// fleet and serves its admin API, which the dashboard reads unchanged.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway-dev/spillway/internal/controller"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
)

// The data planes a Stack runs (Options.DataPlane).
const (
	// DataPlaneLB is the balancer's own proxy (the default).
	DataPlaneLB = "lb"
	// DataPlaneHAProxy is HAProxy, driven by the controller.
	DataPlaneHAProxy = "haproxy"
)

// ErrNoHAProxy: the HAProxy data plane was asked for and there is no
// haproxy binary.
var ErrNoHAProxy = errors.New("no haproxy binary on PATH: install haproxy (apt-get install haproxy)")

// haproxyStopTimeout is how long HAProxy gets after SIGTERM before
// SIGKILL; haproxyStartTimeout how long the controller waits for its
// socket before it starts anyway (and retries on its own).
const (
	haproxyStopTimeout  = 5 * time.Second
	haproxyStartTimeout = 10 * time.Second
)

// haproxyPlane is one HAProxy process on a configuration written into the
// stack's directory, and the controller that drives it.
type haproxyPlane struct {
	bin, cfgPath string
	out          io.Writer
	log          *slog.Logger
	rt           *haproxy.Runtime
	ctl          *controller.Controller
}

// newHAProxyPlane writes haproxy.cfg and the share map into dir for lbc
// (its Listen is HAProxy's frontend) with dynamic servers, checks the
// configuration with haproxy -c, and builds the controller fed by feed.
func newHAProxyPlane(bin, dir string, lbc *lb.Config, feed *lb.PlanFeed, reg prometheus.Registerer, log *slog.Logger, out io.Writer) (*haproxyPlane, error) {
	if bin == "" {
		p, err := exec.LookPath("haproxy")
		if err != nil {
			return nil, ErrNoHAProxy
		}
		bin = p
	}
	hc := haproxy.ConfigFor(lbc, filepath.Join(dir, "haproxy.sock"), filepath.Join(dir, "routes.map"))
	hc.Dynamic = true // the fleet's instances come and go on ports of their own
	p := &haproxyPlane{bin: bin, cfgPath: filepath.Join(dir, "haproxy.cfg"), out: out, log: log}
	if err := hc.WriteFiles(p.cfgPath); err != nil {
		return nil, err
	}
	if res, err := exec.Command(bin, "-c", "-f", p.cfgPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy -c -f %s: %w: %s", p.cfgPath, err, res)
	}
	rt, err := haproxy.NewRuntime(hc.Socket)
	if err != nil {
		return nil, err
	}
	p.rt = rt
	p.ctl, err = controller.New(controller.Options{Runtime: rt, Config: hc, Plans: feed, Logger: log.With("component", "controller"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Run starts HAProxy and the controller, and stops HAProxy by its PID
// (SIGTERM, SIGKILL after haproxyStopTimeout) once ctx is done or the
// controller fails. HAProxy exiting on its own is an error.
func (p *haproxyPlane) Run(ctx context.Context) error {
	cmd := exec.Command(p.bin, "-db", "-f", p.cfgPath)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	pid := cmd.Process.Pid
	p.log.Info("haproxy started", "pid", pid, "config", p.cfgPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends with the process, which this function ends

	// The controller starts once HAProxy answers on its socket, rather
	// than warning about its first attempts.
	for start := time.Now(); time.Since(start) < haproxyStartTimeout; {
		if _, err := p.rt.Info(ctx); err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case werr := <-exited:
			return fmt.Errorf("haproxy (pid %d) exited at start: %w", pid, werr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cctx, stopCtl := context.WithCancel(ctx)
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- p.ctl.Run(cctx) }() // ends with cctx
	var err error
	select {
	case werr := <-exited:
		stopCtl()
		<-ctlDone
		return fmt.Errorf("haproxy (pid %d) exited: %w", pid, werr)
	case err = <-ctlDone:
		if err != nil {
			err = fmt.Errorf("controller: %w", err)
		}
	case <-ctx.Done():
		stopCtl()
		<-ctlDone
	}
	stopCtl()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(haproxyStopTimeout):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
	p.log.Info("haproxy stopped", "pid", pid)
	return err
}
