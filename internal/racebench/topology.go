package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// The front doors.
const (
	doorSpillway = "spillway"
	doorHAProxy  = "haproxy"
)

// Bounds of the start of a topology.
const (
	// startTimeout bounds each wait for a process, or for a login through
	// the front door, to be ready.
	startTimeout = 20 * time.Second
	// pollEvery is the pause between two readiness checks.
	pollEvery = 50 * time.Millisecond
	// stopTimeout is how long the processes get to exit on SIGTERM
	// before they are killed.
	stopTimeout = 2 * time.Second
	// logins is the number of login instances.
	logins = 3
)

// proc is one child process, in a process group of its own, with its
// output going to a log file. A goroutine reaps it (and closes the log);
// Terminate, then Reap, ends it.
type proc struct {
	*procgroup.Child
	name    string
	logPath string
}

// startProc starts bin with args through sp, adding env to the
// environment, its output going to logPath.
func startProc(sp *procgroup.Spawner, name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.WaitDelay = time.Second
	c, err := sp.StartChild(cmd, func() { f.Close() })
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{Child: c, name: name, logPath: logPath}, nil
}

// exited reports whether the process has ended, and if so an error that
// says so with the end of its log.
func (p *proc) exited() error {
	if !p.Exited() {
		return nil
	}
	return fmt.Errorf("%s exited (%v): %s", p.name, p.Err(), tail(p.logPath, 600))
}

// tail returns up to n bytes of the end of the file at path, on one line.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.Join(strings.Fields(string(b)), " ")
}

// topology is one trial's processes: a backend-sim, the login instances
// and a front door.
type topology struct {
	procs      []*proc
	backendURL string
	frontURL   string
	// adminURL is spillway lb's (or controller's) admin API; "" for
	// HAProxy.
	adminURL string
	// healthURLs are the instances' /health reports.
	healthURLs []string
	// doorShedding, when set, says whether the front door sheds now: it
	// answers a route's requests 503 dependency_unavailable itself.
	doorShedding func(context.Context) bool
	// tmpDir, if set, is removed once the processes have stopped.
	tmpDir string
}

// stop ends every process, all at once: SIGTERM, then SIGKILL for those
// still running after stopTimeout.
func (t *topology) stop() {
	for _, p := range t.procs {
		p.Terminate()
	}
	deadline := time.Now().Add(stopTimeout)
	for _, p := range t.procs {
		p.Reap(deadline)
	}
	if t.tmpDir != "" {
		_ = os.RemoveAll(t.tmpDir)
	}
}

// startTopology starts the processes of spec's trial, each on fresh
// loopback ports, and returns once a login through the front door
// succeeds. On error every process it started is stopped. A start that
// fails because another process took a port first is tried once more.
func (b *bench) startTopology(ctx context.Context, spec trialSpec) (*topology, error) {
	t, err := b.tryTopology(ctx, spec)
	if err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "address already in use") {
		b.progressf("  a port was taken; starting again on fresh ports")
		t, err = b.tryTopology(ctx, spec)
	}
	return t, err
}

func (b *bench) tryTopology(ctx context.Context, spec trialSpec) (t *topology, err error) {
	t = &topology{}
	defer func() {
		if err != nil {
			t.stop()
			t = nil
		}
	}()
	addrs, err := procgroup.FreeAddrs("127.0.0.1", 1+2*logins+2)
	if err != nil {
		return nil, err
	}
	backend, front, admin := addrs[0], addrs[1+2*logins], addrs[2+2*logins]
	t.backendURL = "http://" + backend
	t.frontURL = "http://" + front
	sc := spec.Scenario
	logPath := func(name string) string { return filepath.Join(spec.Dir, name+".log") }

	args := []string{"backend-sim", "--listen", backend, "--latency", backendLatency.String()}
	if sc.SlowLatency > 0 {
		args = append(args, "--slow-latency", sc.SlowLatency.String())
	}
	if sc.Storm {
		args = append(args, "--capacity", strconv.Itoa(stormCapacity(b.rate)), "--queue-timeout", stormQueueTimeout.String())
	}
	be, err := startProc(b.sp, "backend-sim", logPath("backend-sim"), nil, b.spillway, args...)
	if err != nil {
		return t, err
	}
	t.procs = append(t.procs, be)
	if err := b.waitUntil(ctx, "backend-sim", be, b.getOK(t.backendURL+"/control")); err != nil {
		return t, err
	}

	instances := make([]instance, logins)
	for i := range instances {
		instances[i] = instance{Service: addrs[1+2*i], Health: addrs[2+2*i]}
		name := fmt.Sprintf("login-%d", i+1)
		p, err := startProc(b.sp, name, logPath(name), nil, b.spillway, "login", "--dev", "--rate-limit", "0",
			"--backend", t.backendURL, "--listen", instances[i].Service, "--health-listen", instances[i].Health)
		if err != nil {
			return t, err
		}
		t.procs = append(t.procs, p)
	}
	for i, in := range instances {
		t.healthURLs = append(t.healthURLs, "http://"+in.Health+"/health")
		if err := b.waitUntil(ctx, t.procs[1+i].name, t.procs[1+i], b.getOK("http://"+in.Health+"/readyz")); err != nil {
			return t, err
		}
	}

	var door *proc
	switch spec.Door {
	case doorSpillway:
		cfg := filepath.Join(spec.Dir, "lb.yaml")
		if err := os.WriteFile(cfg, []byte(lbConfig(front, admin, instances)), 0o644); err != nil {
			return t, err
		}
		door, err = startProc(b.sp, "lb", logPath("lb"), []string{"SPILLWAY_ADMIN_TOKEN=" + b.token}, b.spillway, "lb", "--config", cfg)
		t.adminURL = "http://" + admin
		t.doorShedding = lbShedding(b.probe, t.adminURL+"/status")
	case doorHAProxy:
		cfg := filepath.Join(spec.Dir, "haproxy.cfg")
		text := haproxyConfig(haproxyPlan{Listen: front, Backend: backend, Instances: instances})
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			return t, err
		}
		if err := checkHAProxy(ctx, b.haproxy, cfg); err != nil {
			return t, err
		}
		door, err = startProc(b.sp, "haproxy", logPath("haproxy"), nil, b.haproxy, "-db", "-f", cfg)
	case doorController:
		var ps []*proc // HAProxy, then the controller: the door
		ps, t.tmpDir, t.doorShedding, err = b.startControllerDoor(ctx, front, admin, instances, logPath)
		if err != nil {
			t.procs = append(t.procs, ps...)
			return t, err
		}
		t.procs = append(t.procs, ps[0])
		door = ps[1]
		t.adminURL = "http://" + admin
	default:
		return t, fmt.Errorf("front door %q: not %s, %s or %s", spec.Door, doorSpillway, doorHAProxy, doorController)
	}
	if err != nil {
		return t, err
	}
	t.procs = append(t.procs, door)
	if err := b.waitUntil(ctx, "a login through "+spec.Door, door, b.loginOK(t.frontURL)); err != nil {
		return t, err
	}
	return t, nil
}

// instance is one login instance's two addresses.
type instance struct {
	Service, Health string
}

// lbConfig is spillway lb's configuration: its addresses and the
// instances, every policy at its default. The admin token comes from the
// environment.
func lbConfig(listen, admin string, instances []instance) string {
	var b strings.Builder
	b.WriteString("# Written by racebench: the addresses and the instances; every policy at its default.\nlb:\n")
	fmt.Fprintf(&b, "  listen: %s\n  admin_listen: %s\n  instances:\n", listen, admin)
	for _, in := range instances {
		fmt.Fprintf(&b, "    - {service: %s, health: %s}\n", in.Service, in.Health)
	}
	return b.String()
}

// waitUntil checks every pollEvery until check succeeds, startTimeout
// passes, ctx is done or p exits.
func (b *bench) waitUntil(ctx context.Context, what string, p *proc, check func(context.Context) error) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for {
		if err := p.exited(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w (log: %s)", what, startTimeout, last, tail(p.logPath, 600))
		}
		if err := sleepUntil(ctx, time.Now().Add(pollEvery)); err != nil {
			return err
		}
	}
}

// getOK returns a check that GET url answers 200.
func (b *bench) getOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		return b.expect200(ctx, http.MethodGet, url, nil)
	}
}

// loginOK returns a check that a login through the front door at base
// succeeds.
func (b *bench) loginOK(base string) func(context.Context) error {
	return func(ctx context.Context) error {
		return b.expect200(ctx, http.MethodPost, base+"/v1/login", []byte(`{"ticket":"valid-u1"}`))
	}
}

func (b *bench) expect200(ctx context.Context, method, url string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := b.probe.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(res.Body, 200))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, bytes.TrimSpace(head))
	}
	return nil
}

// newProbeClient is the client of every check and control call: no proxy,
// no keep-alive (each trial has fresh ports), bounded.
func newProbeClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: 5 * time.Second,
		},
	}
}
