//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/testbin"
)

const fwdToken = "forwarded-test-admin-token"

var (
	reSimListening   = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	reLoginListening = regexp.MustCompile(`msg=listening service=(\S+) .*health=(\S+)`)
	reLBListening    = regexp.MustCompile(`msg=listening proxy=(\S+) admin=(\S+)`)
)

// TestClientsBehindTheLBHaveTheirOwnRateLimit is the README's three
// terminals — backend-sim, one login with its defaults, spillway lb in
// front — with four clients on distinct loopback addresses: three at 4
// logins/s (under login's default 5/s per client) get no 429, a fourth at
// 30/s does, and does not take the others down with it. The same through
// two chained balancers (a cloud LB in front of spillway lb, played by a
// second spillway lb that trusts the first).
func TestClientsBehindTheLBHaveTheirOwnRateLimit(t *testing.T) {
	for _, chained := range []bool{false, true} {
		t.Run(map[bool]string{false: "one lb", true: "two chained lbs"}[chained], func(t *testing.T) {
			t.Parallel()
			sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0")
			simAddr := sim.Await(t, reSimListening, 10*time.Second)[1]
			in := testbin.Start(t, "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
				"--backend", "http://"+simAddr)
			m := in.Await(t, reLoginListening, 10*time.Second)
			inner := testbin.Start(t, "lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--admin-token", fwdToken, "--trusted-proxies", "127.0.0.1", "--instance", m[1]+"="+m[2])
			lbm := inner.Await(t, reLBListening, 10*time.Second)
			front := lbm[1]
			waitRoutable(t, lbm[2], 1)
			if chained {
				// The edge balancer trusts nobody; it checks the inner
				// balancer's admin port.
				cfg := filepath.Join(t.TempDir(), "edge.yaml")
				os.WriteFile(cfg, []byte(fmt.Sprintf("lb:\n  health_check: {ready_path: /status, report_path: \"\"}\n  instances:\n    - {service: %q, health: %q}\n", lbm[1], lbm[2])), 0o600)
				edge := testbin.Start(t, "lb", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
					"--admin-token", fwdToken)
				em := edge.Await(t, reLBListening, 10*time.Second)
				front = em[1]
				waitRoutable(t, em[2], 1)
			}

			const d = 20 * time.Second
			clients := []struct {
				src  string
				rate float64
			}{{"127.0.0.2", 4}, {"127.0.0.3", 4}, {"127.0.0.4", 4}, {"127.0.0.5", 30}}
			codes := make([]map[int]int64, len(clients))
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					codes[i] = sendFrom(t, c.src, "http://"+front+"/v1/login", c.rate, d)
				}()
			}
			wg.Wait()
			for i, c := range clients[:3] {
				if codes[i][http.StatusOK] < int64(c.rate*d.Seconds())-2 || len(codes[i]) != 1 {
					t.Errorf("client %s at %v/s: %v, want every login 200", c.src, c.rate, codes[i])
				}
			}
			if codes[3][http.StatusTooManyRequests] < 100 {
				t.Errorf("client %s at 30/s: %v, want over 100 of 600 refused with 429", clients[3].src, codes[3])
			}
			t.Logf("answers by client: %v", codes)
		})
	}
}

// sendFrom sends an open-loop stream of valid logins from the source
// address src and counts the answers by status (0: a transport error).
func sendFrom(t *testing.T, src, url string, rate float64, d time.Duration) map[int]int64 {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	counter := &statusCounter{next: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 64}, codes: map[int]int64{}}
	defer counter.next.(*http.Transport).CloseIdleConnections()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:      url,
		Body:     func(int) []byte { return []byte(`{"ticket":"valid-` + src + `"}`) },
		Rate:     rate,
		Duration: d,
		Timeout:  5 * time.Second,
		Client:   &http.Client{Transport: counter},
	}, nil)
	if err != nil {
		t.Error(err)
	}
	if res.Lost() != 0 {
		t.Errorf("%s: %d logins lost", src, res.Lost())
	}
	return counter.snapshot()
}

type statusCounter struct {
	next  http.RoundTripper
	mu    sync.Mutex
	codes map[int]int64
}

func (s *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := s.next.RoundTrip(r)
	code := 0
	if err == nil {
		code = res.StatusCode
	}
	s.mu.Lock()
	s.codes[code]++
	s.mu.Unlock()
	return res, err
}

func (s *statusCounter) snapshot() map[int]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int64, len(s.codes))
	for k, v := range s.codes {
		out[k] = v
	}
	return out
}

// waitRoutable waits until the balancer whose admin address is admin
// routes to n instances.
func waitRoutable(t *testing.T, admin string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var st lb.Status
		res, err := http.Get("http://" + admin + "/status")
		if err == nil {
			err = json.NewDecoder(res.Body).Decode(&st)
			res.Body.Close()
			if err == nil && st.Routing.Routable == n {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling
	}
	t.Fatalf("balancer %s: not %d routable instances within 10s", admin, n)
}
