//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

func TestControllerFlagErrors(t *testing.T) {
	feedback := filepath.Join(t.TempDir(), "feedback.yaml")
	if err := os.WriteFile(feedback, []byte("lb:\n  shedding:\n    recovery: feedback\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"controller", "--instance", "127.0.0.1:8001=127.0.0.1:9001"}, "--haproxy-socket is required"},
		{[]string{"controller", "--haproxy-socket", "/run/x.sock"}, "no instances"},
		{[]string{"controller", "--haproxy-socket", "/run/x.sock", "--instance", "127.0.0.1:8001"}, "want SERVICE_ADDR=HEALTH_ADDR"},
		{[]string{"controller", "--haproxy-socket", "/run/x.sock", "--config", feedback, "--instance", "127.0.0.1:8001=127.0.0.1:9001"},
			`lb.shedding.recovery: "feedback": must be "window" with the controller`},
		{[]string{"controller", "--haproxy-socket", "/run/x.sock", "--haproxy-map", "relative.map", "--instance", "127.0.0.1:8001=127.0.0.1:9001"}, "map_file"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), tt.args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), tt.want)
			}
		})
	}
}

// printHAProxyConfig runs `spillway controller --print-haproxy-config`
// with args and returns what it printed.
func printHAProxyConfig(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(testbin.Spillway(t), append([]string{"controller", "--print-haproxy-config"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spillway controller --print-haproxy-config %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// TestControllerPrintsHAProxyConfig: the printed configuration, with the
// share map its header lists, passes haproxy -c.
func TestControllerPrintsHAProxyConfig(t *testing.T) {
	bin := haproxytest.Binary(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "spillway.yaml")
	if err := os.WriteFile(cfgFile, []byte("lb:\n  routes:\n    - prefix: /v1/\n      dependencies: [backend]\n    - prefix: /static/\n      dependencies: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mapFile := filepath.Join(dir, "routes.map")
	out := printHAProxyConfig(t, "--config", cfgFile, "--listen", "127.0.0.1:18080", "--haproxy-socket", filepath.Join(dir, "admin.sock"),
		"--haproxy-map", mapFile, "--instance", "127.0.0.1:8001=127.0.0.1:9001", "--instance", "127.0.0.1:8002=127.0.0.1:9002")
	for _, s := range []string{"bind 127.0.0.1:18080", "server s-127.0.0.1-8001 127.0.0.1:8001", "port 9002", "map_beg(" + mapFile + ")", "touch " + mapFile} {
		if !strings.Contains(out, s) {
			t.Errorf("printed configuration lacks %q:\n%s", s, out)
		}
	}
	if err := os.WriteFile(mapFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfiguration:\n%s", err, res, out)
	}

	// With --dynamic-servers the backend starts empty: no instance needed.
	dyn := printHAProxyConfig(t, "--listen", "127.0.0.1:18081", "--haproxy-socket", filepath.Join(dir, "admin.sock"),
		"--haproxy-map", mapFile, "--dynamic-servers")
	if strings.Contains(dyn, "\n    server ") || !strings.Contains(dyn, "Dynamic") {
		t.Errorf("--dynamic-servers: want a backend without servers, saying so:\n%s", dyn)
	}
	if err := os.WriteFile(cfg, []byte(dyn), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c, dynamic: %v\n%s\nconfiguration:\n%s", err, res, dyn)
	}

	// Without instances there is nothing to print.
	cmd := exec.Command(testbin.Spillway(t), "controller", "--print-haproxy-config", "--haproxy-socket", "/run/x.sock")
	if res, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(res), "needs the instances") {
		t.Errorf("print without instances: %v %s", err, res)
	}
}

// TestControllerEndToEnd: a real HAProxy on the printed configuration,
// two `spillway login` instances, a backend-sim and `spillway
// controller`: logins pass; the backend hangs and HAProxy itself answers
// 503 dependency_unavailable, no server in maintenance; the backend is
// back and logins pass again; an instance killed leaves rotation.
func TestControllerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and four spillway processes for about 15 s")
	}
	haproxytest.Binary(t)
	sim := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1ms")
	simAddr := sim.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
	var logins []*proc
	var insts []string
	for i := range 2 {
		p := startProc(t, fmt.Sprintf("login %d", i), "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
			"--backend", "http://"+simAddr, "--backend-timeout", "300ms", "--rate-limit", "0")
		m := p.await(t, `msg=listening service=(\S+) .*health=(\S+)`, 10*time.Second)
		logins = append(logins, p)
		insts = append(insts, m[1]+"="+m[2])
	}
	cfgFile := filepath.Join(t.TempDir(), "spillway.yaml")
	if err := os.WriteFile(cfgFile, []byte("lb:\n  health_check:\n    interval: 250ms\n    timeout: 250ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	front := testkit.FreePort(t)
	var ctlSocket, mapFile string
	common := func() []string {
		args := []string{"--config", cfgFile, "--haproxy-socket", ctlSocket, "--haproxy-map", mapFile}
		for _, in := range insts {
			args = append(args, "--instance", in)
		}
		return args
	}
	hap := haproxytest.Start(t, func(dir string) string {
		ctlSocket, mapFile = filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "routes.map")
		if err := os.WriteFile(mapFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return printHAProxyConfig(t, append(common(), "--listen", front)...)
	})
	rt, err := haproxy.NewRuntime(hap.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctl := startProc(t, "controller", append([]string{"controller", "--admin-listen", "127.0.0.1:0"}, common()...)...)
	admin := ctl.await(t, `msg=listening admin=(\S+)`, 10*time.Second)[1]
	ctl.await(t, `msg="haproxy state read"`, 10*time.Second)

	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer client.CloseIdleConnections()
	type answer struct {
		status  int
		reason  string
		latency time.Duration
	}
	login := func(i int) answer {
		start := time.Now()
		res, err := client.Post("http://"+front+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-user-%d"}`, i)))
		if err != nil {
			return answer{latency: time.Since(start)}
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return answer{res.StatusCode, res.Header.Get("X-Spillway-Reason"), time.Since(start)}
	}
	testkit.WaitFor(t, 10*time.Second, "a login through HAProxy", func() bool { return login(0).status == http.StatusOK })
	for i := range 20 {
		if a := login(i); a.status != http.StatusOK {
			t.Fatalf("login %d through HAProxy: %+v", i, a)
		}
	}
	ctx := t.Context()
	// The map's first value ("/" with no routes); an empty map admits
	// all: "1000".
	shareOf := func() string {
		entries, err := rt.ShowMap(ctx, mapFile)
		switch {
		case err != nil:
			return fmt.Sprint(err)
		case len(entries) == 0:
			return "1000"
		}
		return entries[0].Value
	}
	notMaint := func() {
		t.Helper()
		servers, err := rt.ServersState(ctx, haproxy.BackendName)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if s.AdminState.Maint() || s.OpState == haproxy.OpStopped {
				t.Errorf("server %s: admin state %#x, op state %v: want in rotation during a dependency outage", s.Name, s.AdminState, s.OpState)
			}
		}
	}

	// The backend hangs, under a steady trickle of logins.
	bs := &backendsim.Client{BaseURL: "http://" + simAddr}
	if err := bs.SetMode(ctx, "hang", 0); err != nil {
		t.Fatal(err)
	}
	hung := time.Now()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				login(w*1000 + i)
				time.Sleep(20 * time.Millisecond) // a paced client, not a tight loop
			}
		})
	}
	defer func() { stopLoad(); wg.Wait() }() // stopped below; this on a failure
	testkit.WaitFor(t, 10*time.Second, "the share map at 0", func() bool { return shareOf() == "0" })
	t.Logf("backend hung: the controller set the share to 0 after %v", time.Since(hung).Round(time.Millisecond))
	stopLoad()
	wg.Wait()
	// HAProxy answers itself: no login reaches an instance.
	handled := func() float64 {
		n := 0.0
		for _, in := range insts {
			n += scrapeSum(t, client, "http://"+strings.Split(in, "=")[1]+"/metrics", "spillway_login_requests_total")
		}
		return n
	}
	before := handled()
	var slow time.Duration
	for i := range 20 {
		a := login(i)
		if a.status != http.StatusServiceUnavailable || a.reason != haproxy.Reason {
			t.Errorf("login while shed: %+v, want 503 %s", a, haproxy.Reason)
		}
		slow = max(slow, a.latency)
	}
	if after := handled(); after != before {
		t.Errorf("logins reached the instances while HAProxy sheds: %v -> %v", before, after)
	}
	t.Logf("slowest of 20 shed answers: %v", slow)
	notMaint()
	time.Sleep(time.Second) // several health intervals of the outage
	notMaint()

	// The backend is back.
	if err := bs.SetMode(ctx, "up", 0); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	testkit.WaitFor(t, 10*time.Second, "logins through HAProxy again and the share at 1000", func() bool {
		return login(2).status == http.StatusOK && shareOf() == "1000"
	})
	t.Logf("backend back: share 1000 after %v", time.Since(back).Round(time.Millisecond))
	// The ramp went through HAProxy's map: a value between 0 and 1000.
	if !regexp.MustCompile(`msg="haproxy change" kind=map key=/ from=\d+ to=[1-9]\d{0,2}\n`).MatchString(ctl.Output()) {
		t.Errorf("no ramp step in the controller's log:\n%s", ctl.Output())
	}
	for i := range 20 {
		if a := login(i); a.status != http.StatusOK {
			t.Errorf("login after recovery: %+v", a)
		}
	}
	notMaint()

	// The operators' decisions through the controller's admin API: a
	// drain, and shedding forced on then back to auto.
	adminDo := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+procToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s", method, path, res.Status)
		}
	}
	other := strings.Split(insts[1], "=")[0]
	stateOf := func(name string) (haproxy.AdminState, bool) {
		servers, err := rt.ServersState(ctx, haproxy.BackendName)
		if err != nil {
			return 0, false
		}
		for _, s := range servers {
			if s.Name == name {
				return s.AdminState, true
			}
		}
		return 0, false
	}
	adminDo(http.MethodPost, "/instances/"+other+"/drain", "")
	testkit.WaitFor(t, 5*time.Second, other+" draining in HAProxy", func() bool { a, ok := stateOf(haproxy.ServerName(other)); return ok && a.Drain() })
	adminDo(http.MethodPost, "/instances/"+other+"/undrain", "")
	testkit.WaitFor(t, 5*time.Second, other+" ready in HAProxy", func() bool { a, ok := stateOf(haproxy.ServerName(other)); return ok && !a.Drain() && !a.Maint() })
	adminDo(http.MethodPut, "/shedding/backend", `{"mode":"on"}`)
	testkit.WaitFor(t, 5*time.Second, "shedding forced on: share 0", func() bool { return shareOf() == "0" })
	if a := login(4); a.status != http.StatusServiceUnavailable || a.reason != haproxy.Reason {
		t.Errorf("login with shedding forced on: %+v", a)
	}
	adminDo(http.MethodPut, "/shedding/backend", `{"mode":"auto"}`)
	testkit.WaitFor(t, 5*time.Second, "shedding auto: share 1000", func() bool { return shareOf() == "1000" })

	// An instance killed: its server leaves rotation.
	_ = syscall.Kill(-logins[0].PID(), syscall.SIGKILL)
	killed := time.Now()
	name := haproxy.ServerName(strings.Split(insts[0], "=")[0])
	testkit.WaitFor(t, 10*time.Second, name+" out of ready", func() bool {
		servers, err := rt.ServersState(ctx, haproxy.BackendName)
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.Name == name {
				return s.AdminState.Maint()
			}
		}
		return false
	})
	t.Logf("instance killed: %s in maint after %v", name, time.Since(killed).Round(time.Millisecond))
	testkit.WaitFor(t, 5*time.Second, "logins through the other instance", func() bool { return login(3).status == http.StatusOK })
	if !strings.Contains(ctl.Output(), `msg="haproxy change" kind=state server=`+name+` from=ready to=maint`) {
		t.Errorf("the change is not logged:\n%s", ctl.Output())
	}
	if err := ctl.Stop(5 * time.Second); err != nil {
		t.Errorf("controller stop: %v", err)
	}
}

// TestControllerEtcd: `spillway controller --discovery etcd://` follows
// the registered instances and the operators' decisions shared there: a
// drain given to a `spillway lb`'s admin API reaches HAProxy.
func TestControllerEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd, HAProxy and four spillway processes")
	}
	haproxytest.Binary(t)
	e := etcdtest.Start(t)
	url := "etcd://" + e.HostPort() + "/ctl"
	sim := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1ms")
	simAddr := sim.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
	var insts []string
	for _, l := range startRegisteredLogins(t, 2, simAddr, url, 2*time.Second) {
		insts = append(insts, l.service+"="+l.health)
	}
	var ctlSocket, mapFile string
	hap := haproxytest.Start(t, func(dir string) string {
		ctlSocket, mapFile = filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "routes.map")
		if err := os.WriteFile(mapFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"--listen", testkit.FreePort(t), "--haproxy-socket", ctlSocket, "--haproxy-map", mapFile}
		for _, in := range insts {
			args = append(args, "--instance", in)
		}
		return printHAProxyConfig(t, args...)
	})
	rt, err := haproxy.NewRuntime(hap.Socket)
	if err != nil {
		t.Fatal(err)
	}
	ctl := startProc(t, "controller", "controller", "--admin-listen", "127.0.0.1:0", "--haproxy-socket", ctlSocket, "--haproxy-map", mapFile, "--discovery", url)
	ctl.await(t, `msg="haproxy state read"`, 10*time.Second)
	lbp := startProc(t, "lb", "lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--discovery", url)
	admin := lbp.await(t, `msg=listening proxy=\S+ admin=(\S+) discovery=`, 10*time.Second)[1]

	drained := strings.Split(insts[0], "=")[0]
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	// The lb knows the instance once discovery has given it: retry the
	// drain until it does.
	testkit.WaitFor(t, 10*time.Second, "a drain accepted by the lb", func() bool {
		req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/instances/"+drained+"/drain", nil)
		req.Header.Set("Authorization", "Bearer "+procToken)
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	name := haproxy.ServerName(drained)
	testkit.WaitFor(t, 10*time.Second, name+" draining in HAProxy", func() bool {
		servers, err := rt.ServersState(t.Context(), haproxy.BackendName)
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.Name == name {
				return s.AdminState.Drain()
			}
		}
		return false
	})
	if err := ctl.Stop(5 * time.Second); err != nil {
		t.Errorf("controller stop: %v", err)
	}
}
