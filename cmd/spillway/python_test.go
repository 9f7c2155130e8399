package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// pyInstance is one Python login instance of an example: its service
// address, its health address (the sidecar's or its own) and the
// processes behind it.
type pyInstance struct {
	service, health string
	procs           []*testbin.Proc
}

var (
	reGuard       = regexp.MustCompile(`msg=listening proxy=(\S+) health=(\S+)`)
	rePyListening = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)(?: health (127\.0\.0\.1:\d+))?`)
)

// lbHealthInterval is the balancer's check interval in these tests: the
// sidecar's reports are long-polled, the report example's polled at it.
const lbHealthInterval = 500 * time.Millisecond

// TestPythonExamples runs examples/python-login (three login.py, each
// with its spillway guard) and examples/python-login-report (three
// login.py serving their own health port) end to end behind spillway lb,
// with a real backend-sim: logins pass; the backend hangs, the instances'
// breakers open and their reports say so, and within one health interval
// the balancer sheds at the edge with no instance marked down and none
// replaced; the backend comes back and logins pass again.
func TestPythonExamples(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH: install it to run the Python examples end to end")
	}
	for _, example := range []string{"python-login", "python-login-report"} {
		t.Run(example, func(t *testing.T) {
			sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0", "--latency", "0s")
			backend := "http://" + sim.Await(t, reSimListening, 10*time.Second)[1]
			script := filepath.Join("..", "..", "examples", example, "login.py")
			var instances []pyInstance
			for range 3 {
				var in pyInstance
				if example == "python-login" {
					in = startGuarded(t, python, script, backend)
				} else {
					py := testbin.StartCmd(t, exec.Command(python, script, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
						"--backend", backend, "--timeout", "0.3", "--drain", "0"))
					m := py.Await(t, rePyListening, 10*time.Second)
					in = pyInstance{service: m[1], health: m[2], procs: []*testbin.Proc{py}}
				}
				instances = append(instances, in)
			}
			// A sidecar's report is long-polled: the balancer learns of
			// the breaker within a round trip. The report example has no
			// version and is polled every interval (±10% jitter).
			bound := lbHealthInterval
			if example == "python-login-report" {
				bound = lbHealthInterval*11/10 + 200*time.Millisecond
			}
			runExampleOutage(t, backend, instances, bound)
		})
	}
}

// startGuarded starts a spillway guard (its guard: section from a file,
// the upstream from a flag) and a login.py that calls the backend
// through it.
func startGuarded(t *testing.T, python, script, backend string) pyInstance {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "guard.yaml")
	if err := os.WriteFile(cfg, []byte("guard:\n  timeout: 300ms\n  consecutive_failures: 3\n  probe_interval: 100ms\n  drain_delay: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := testbin.Start(t, "guard", "--config", cfg, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--upstream", backend)
	m := g.Await(t, reGuard, 10*time.Second)
	py := testbin.StartCmd(t, exec.Command(python, script, "--listen", "127.0.0.1:0", "--backend", "http://"+m[1], "--drain", "0"))
	svc := py.Await(t, rePyListening, 10*time.Second)[1]
	return pyInstance{service: svc, health: m[2], procs: []*testbin.Proc{g, py}}
}

// runExampleOutage puts spillway lb in front of instances and runs the
// outage: steady logins, hang -> shed at the edge within one health
// interval of the reports (bound), nobody down or replaced, back ->
// logins pass.
func runExampleOutage(t *testing.T, backend string, instances []pyInstance, bound time.Duration) {
	t.Helper()
	const token = "python-example-admin-token" // /status on loopback needs none
	var conf strings.Builder
	fmt.Fprintf(&conf, "lb:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  server: {drain_delay: 0s}\n")
	fmt.Fprintf(&conf, "  health_check: {interval: %s}\n  routes:\n    - {prefix: /v1/login, dependencies: [backend]}\n  instances:\n", lbHealthInterval)
	for _, in := range instances {
		fmt.Fprintf(&conf, "    - {service: %s, health: %s}\n", in.service, in.health)
	}
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	balancer := testbin.StartEnv(t, []string{"SPILLWAY_ADMIN_TOKEN=" + token}, "lb", "--config", path)
	m := balancer.Await(t, reLBListening, 10*time.Second)
	proxy, admin := "http://"+m[1], "http://"+m[2]

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	login := func(ticket string) (int, string, string) {
		resp, err := client.Post(proxy+"/v1/login", "application/json", strings.NewReader(`{"ticket":"`+ticket+`"}`))
		if err != nil {
			return 0, "", err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(health.ReasonHeader), string(b)
	}
	status := func() lb.Status {
		st, _ := lbStatus(client, strings.TrimPrefix(admin, "http://"))
		return st
	}
	down := func() int { // the instances whose report says the backend is down
		n := 0
		for _, in := range instances {
			resp, err := client.Get("http://" + in.health + "/health")
			if err != nil {
				continue
			}
			var r health.Report
			_ = json.NewDecoder(io.LimitReader(resp.Body, health.MaxReportBytes)).Decode(&r)
			resp.Body.Close()
			if r.Dependencies["backend"].State == health.DepDown {
				n++
			}
		}
		return n
	}

	testkit.WaitFor(t, 10*time.Second, "every instance routable", func() bool { return status().Routing.Routable == len(instances) })
	for i := range 12 {
		if code, _, body := login(fmt.Sprintf("valid-user%d", i)); code != 200 || !strings.Contains(body, "token") {
			t.Fatalf("steady login %d: %d %s", i, code, body)
		}
	}
	if code, _, body := login("bogus"); code != 401 {
		t.Errorf("invalid ticket: %d %s", code, body)
	}

	// The backend hangs. Clients keep logging in; the first calls wait
	// for the deadline, then the breakers open and the balancer sheds.
	setMode(t, client, backend, "hang")
	var shedAt atomic.Int64 // unix ns of the first shed answer from the balancer itself
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, reason, body := login("valid-during-outage")
				// The balancer's own shed names the dependency; an
				// instance's fast 503 passed on does not.
				if code == 503 && reason == health.ReasonDependencyUnavailable && strings.Contains(body, `"dependency":"backend"`) {
					shedAt.CompareAndSwap(0, time.Now().UnixNano())
				}
				if code != 503 && code != 0 {
					t.Errorf("login during the outage: %d %s", code, body)
				}
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	var downAt time.Time
	testkit.WaitFor(t, 10*time.Second, "a quorum of reports saying the backend is down", func() bool {
		if down() >= 2 {
			downAt = time.Now()
			return true
		}
		return false
	})
	testkit.WaitFor(t, 10*time.Second, "the balancer to shed at the edge", func() bool { return shedAt.Load() != 0 })
	lag := time.Unix(0, shedAt.Load()).Sub(downAt)
	t.Logf("shed at the edge %v after the reports said down (negative: before the test saw the reports)", lag.Round(time.Millisecond))
	if lag > bound {
		t.Errorf("the balancer shed %v after the reports said down; want within %v", lag, bound)
	}
	st := status()
	for _, in := range st.Instances {
		if string(in.State) != "healthy" {
			t.Errorf("during the outage instance %s is %q; want healthy (a dependency outage is not an instance failure)", in.ID, in.State)
		}
	}
	if st.Routing.Routable != len(instances) {
		t.Errorf("during the outage %d of %d instances routable", st.Routing.Routable, len(instances))
	}
	stopLoad()
	for _, in := range instances {
		for _, p := range in.procs {
			if p.Exited() {
				t.Errorf("pid %d exited during the outage: %v", p.PID(), p.Err())
			}
		}
	}

	// The backend is back: the probes close the breakers, the reports
	// say up, the balancer lets logins through again.
	setMode(t, client, backend, "up")
	testkit.WaitFor(t, 10*time.Second, "logins to pass again", func() bool {
		code, _, _ := login("valid-after")
		return code == 200
	})
	testkit.WaitFor(t, 10*time.Second, "steady logins again", func() bool {
		for range 6 {
			if code, _, _ := login("valid-after"); code != 200 {
				return false
			}
		}
		return true
	})
}

// setMode switches backend-sim's mode.
func setMode(t *testing.T, client *http.Client, backend, mode string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, backend+"/control", bytes.NewReader([]byte(`{"mode":"`+mode+`"}`)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("backend-sim mode %s: %s", mode, resp.Status)
	}
}
