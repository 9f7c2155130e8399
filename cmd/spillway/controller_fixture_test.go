//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

// hapStack is the system of the controller's end-to-end tests, all real
// processes on loopback: a backend-sim, `spillway login` instances and a
// Debian HAProxy on the configuration `spillway controller
// --print-haproxy-config` printed. The tests start the controllers
// themselves (startController), so that they can kill and restart them.
type hapStack struct {
	bs      *backendsim.Client
	simAddr string
	logins  map[string]*proc // by service address, the instances started
	insts   []string         // SERVICE=HEALTH of every server in HAProxy
	cfgFile string           // the spillway file (lb: section)
	front   string           // HAProxy's frontend
	socket  string           // HAProxy's Runtime API
	mapFile string
	hap     *haproxytest.Server
	rt      *haproxy.Runtime
	client  *http.Client
}

// hapAnswer is one login's answer through HAProxy.
type hapAnswer struct {
	status  int
	reason  string
	latency time.Duration
}

// startHAProxyStack starts a backend-sim, n login instances and HAProxy
// with one server per instance plus one per address of reserved (service
// and health addresses for instances the test starts later with
// startLogin), and the spillway file lbYAML (an lb: section).
func startHAProxyStack(t *testing.T, n int, reserved []string, lbYAML string) *hapStack {
	t.Helper()
	return startHAProxyStackWith(t, n, reserved, lbYAML, false)
}

// startHAProxyStackWith is startHAProxyStack; with dynamic, HAProxy's
// configuration is printed with --dynamic-servers and names no instance.
func startHAProxyStackWith(t *testing.T, n int, reserved []string, lbYAML string, dynamic bool) *hapStack {
	t.Helper()
	haproxytest.Binary(t)
	s := &hapStack{logins: map[string]*proc{}}
	sim := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1ms")
	s.simAddr = sim.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
	s.bs = &backendsim.Client{BaseURL: "http://" + s.simAddr}
	for range n {
		s.insts = append(s.insts, s.startLogin(t, "127.0.0.1:0", "127.0.0.1:0"))
	}
	s.insts = append(s.insts, reserved...)
	s.cfgFile = filepath.Join(t.TempDir(), "spillway.yaml")
	if err := os.WriteFile(s.cfgFile, []byte(lbYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	s.front = testkit.FreePort(t)
	s.hap = haproxytest.Start(t, func(dir string) string {
		s.socket, s.mapFile = filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "routes.map")
		if err := os.WriteFile(s.mapFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"--config", s.cfgFile, "--haproxy-socket", s.socket, "--haproxy-map", s.mapFile, "--listen", s.front}
		if dynamic {
			return printHAProxyConfig(t, append(args, "--dynamic-servers")...)
		}
		for _, in := range s.insts {
			args = append(args, "--instance", in)
		}
		return printHAProxyConfig(t, args...)
	})
	rt, err := haproxy.NewRuntime(s.hap.Socket)
	if err != nil {
		t.Fatal(err)
	}
	s.rt = rt
	s.client = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// startLogin starts a login instance on the given addresses and returns
// its SERVICE=HEALTH.
func (s *hapStack) startLogin(t *testing.T, listen, health string) string {
	t.Helper()
	p := startProc(t, "login "+listen, "login", "--dev", "--listen", listen, "--health-listen", health,
		"--backend", "http://"+s.simAddr, "--backend-timeout", "300ms", "--rate-limit", "0")
	m := p.await(t, `msg=listening service=(\S+) .*health=(\S+)`, 10*time.Second)
	s.logins[m[1]] = p
	return m[1] + "=" + m[2]
}

// startController starts `spillway controller` on the stack's HAProxy
// with args added, and waits until it has read HAProxy's state. It
// returns the process and its admin address.
func (s *hapStack) startController(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	all := []string{"controller", "--admin-listen", "127.0.0.1:0", "--config", s.cfgFile, "--haproxy-socket", s.socket, "--haproxy-map", s.mapFile}
	ctl := startProc(t, "controller", append(all, args...)...)
	admin := ctl.await(t, `msg=listening admin=(\S+)`, 10*time.Second)[1]
	ctl.await(t, `msg="haproxy state read"`, 10*time.Second)
	return ctl, admin
}

// instanceArgs is --instance for every server of the stack.
func (s *hapStack) instanceArgs() []string {
	var args []string
	for _, in := range s.insts {
		args = append(args, "--instance", in)
	}
	return args
}

// login posts one login through HAProxy; status 0 when it got no answer.
func (s *hapStack) login(i int) hapAnswer {
	start := time.Now()
	res, err := s.client.Post("http://"+s.front+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-user-%d"}`, i)))
	if err != nil {
		return hapAnswer{latency: time.Since(start)}
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return hapAnswer{res.StatusCode, res.Header.Get("X-Spillway-Reason"), time.Since(start)}
}

// share is the value of the map's first line ("/" with no routes),
// "1000" when the map is empty (every route admits all), or the error.
func (s *hapStack) share(ctx context.Context) string {
	entries, err := s.rt.ShowMap(ctx, s.mapFile)
	switch {
	case err != nil:
		return fmt.Sprint("error: ", err)
	case len(entries) == 0:
		return "1000"
	}
	return entries[0].Value
}

// servers is HAProxy's servers state by server name.
func (s *hapStack) servers(t *testing.T) map[string]haproxy.Server {
	t.Helper()
	list, err := s.rt.ServersState(t.Context(), haproxy.BackendName)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]haproxy.Server{}
	for _, sv := range list {
		out[sv.Name] = sv
	}
	return out
}

// status reads a controller's /status.
func (s *hapStack) status(admin string) (lb.Status, error) {
	var st lb.Status
	req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/status", nil)
	req.Header.Set("Authorization", "Bearer "+procToken)
	res, err := s.client.Do(req)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/status: %s", res.Status)
	}
	return st, json.NewDecoder(res.Body).Decode(&st)
}

// shedding reports whether a controller's /status has dependency dep
// shedding.
func (s *hapStack) shedding(admin, dep string) bool {
	st, err := s.status(admin)
	if err != nil {
		return false
	}
	for _, d := range st.Dependencies {
		if d.Name == dep {
			return d.State == lb.ShedShedding
		}
	}
	return false
}

// hangBackend sets the backend to hang and drives paced logins through
// HAProxy until the controller has set the share to 0 (the instances'
// guards learn of the outage from the logins that time out). It returns
// when the map is at 0.
func (s *hapStack) hangBackend(t *testing.T) time.Duration {
	t.Helper()
	ctx := t.Context()
	if err := s.bs.SetMode(ctx, "hang", 0); err != nil {
		t.Fatal(err)
	}
	hung := time.Now()
	loadCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { // ends with stop, below
		for i := 0; loadCtx.Err() == nil; i++ {
			wg.Go(func() { s.login(i) })      // bounded by the client's timeout
			time.Sleep(20 * time.Millisecond) // a paced client, not a tight loop
		}
	})
	defer func() { stop(); wg.Wait() }()
	testkit.WaitFor(t, 10*time.Second, "the share map at 0", func() bool { return s.share(ctx) == "0" })
	return time.Since(hung)
}

// metric sums a process's admin /metrics samples starting with prefix.
func (s *hapStack) metric(t *testing.T, admin, prefix string) float64 {
	t.Helper()
	return scrapeSum(t, s.client, "http://"+admin+"/metrics", prefix)
}
