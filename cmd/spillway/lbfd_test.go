//go:build linux

package main

import (
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

	"github.com/spillway-dev/spillway/health"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testbin"
)

// TestLBOutOfDescriptors runs `spillway lb` with an open-file limit of 128
// and floods it: with its default connection cap (derived from that
// limit) the excess gets a fast 503 overloaded; with the cap disabled its
// own dials to instances fail for want of descriptors. Either way no
// instance is ejected or charged, every answer is 200 or 503 overloaded,
// and the balancer serves normally again once the flood ends.
func TestLBOutOfDescriptors(t *testing.T) {
	t.Parallel()
	for _, capped := range []bool{true, false} {
		t.Run(map[bool]string{true: "default cap", false: "cap disabled"}[capped], func(t *testing.T) {
			t.Parallel()
			sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1500ms")
			simAddr := sim.Await(t, reSimListening, 10*time.Second)[1]
			var insts []string
			for range 2 {
				in := testbin.Start(t, "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
					"--backend", "http://"+simAddr, "--limit", "500", "--rate-limit", "0", "--backend-timeout", "5s")
				m := in.Await(t, reLoginListening, 10*time.Second)
				insts = append(insts, fmt.Sprintf("{service: %q, health: %q}", m[1], m[2]))
			}
			cfg := filepath.Join(t.TempDir(), "lb.yaml")
			server := "drain_delay: 0s"
			if !capped {
				server += ", max_connections: 0"
			}
			os.WriteFile(cfg, []byte(fmt.Sprintf("lb:\n  server: {%s}\n  slow_start: {window: 0s}\n  admission: {fallback_limit: 0}\n  instances: [%s]\n",
				server, strings.Join(insts, ", "))), 0o600)
			p := testbin.StartLimited(t, 128, "lb", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--admin-token", fwdToken, "--log-level", "debug")
			m := p.Await(t, reLBListening, 10*time.Second)
			proxy, admin := m[1], m[2]
			waitRoutable(t, admin, 2)

			// The flood: 300 logins at once, each on its own connection,
			// each held 1.5 s by the backend.
			const flood = 300
			codes := map[string]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			start := time.Now()
			for range flood {
				wg.Go(func() {
					tr := &http.Transport{DisableKeepAlives: true}
					defer tr.CloseIdleConnections()
					c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
					res, err := c.Post("http://"+proxy+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-a"}`))
					key := "error"
					if err != nil {
						key = "error: " + err.Error()
					}
					if err == nil {
						io.Copy(io.Discard, res.Body)
						res.Body.Close()
						key = fmt.Sprintf("%d %s", res.StatusCode, res.Header.Get(health.ReasonHeader))
					} else if strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "EOF") {
						key = "reset"
					}
					mu.Lock()
					codes[strings.TrimSpace(key)]++
					mu.Unlock()
				})
			}
			wg.Wait()
			t.Logf("flood of %d logins over %v: %v", flood, time.Since(start).Round(time.Millisecond), codes)
			for k, n := range codes {
				if k != "200" && k != "503 overloaded" {
					t.Errorf("%d answers %q: want only 200 and 503 overloaded", n, k)
				}
			}
			if codes["200"] == 0 {
				t.Errorf("no login succeeded during the flood")
			}
			if exhausted := strings.Contains(p.Output(), "too many open files"); exhausted == capped {
				t.Errorf("ran out of descriptors: %v; want that only with the cap disabled", exhausted)
			}

			var st lb.Status
			res, err := http.Get("http://" + admin + "/status")
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(res.Body).Decode(&st)
			res.Body.Close()
			for _, in := range st.Instances {
				if in.Ejections != 0 || in.ConsecutiveFailures != 0 || !in.Routable {
					t.Errorf("instance %s charged for the balancer's own exhaustion: ejections %d, failures %d, routable %v",
						in.ID, in.Ejections, in.ConsecutiveFailures, in.Routable)
				}
			}
			// Recovered by itself: ten logins at once all succeed.
			for i := range 10 {
				wg.Go(func() {
					res, err := http.Post("http://"+proxy+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-a"}`))
					if err != nil || res.StatusCode != 200 {
						t.Errorf("login %d after the flood: %v %v", i, res, err)
						return
					}
					res.Body.Close()
				})
			}
			wg.Wait()
		})
	}
}
