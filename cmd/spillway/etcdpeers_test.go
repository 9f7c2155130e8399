//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestEtcdPeers runs two `spillway lb --discovery etcd://` in front of
// the same two registered login instances (limit 10 each, so the fleet
// reports 20) over a backend answering in 200ms. Each balancer registers
// under PREFIX/lbs/ and bounds its edge at half the fleet's capacity; a
// burst of 400 concurrent logins split over both never asks an instance
// for more than its limit (the instances have no queue: an instance asked
// for more answers 503 itself and counts it in
// spillway_admission_rejected_total). A balancer stopped with SIGTERM
// deregisters, and the other takes the whole capacity.
func TestEtcdPeers(t *testing.T) {
	const (
		ttl      = 2 * time.Second
		limit    = 10 // per instance
		capacity = 2 * limit
		lbTTL    = 5 * time.Second // registry.DefaultTTL: lb has no TTL setting
	)

	rig := startEtcdRig(t, "peers", "200ms", ttl, "--limit", strconv.Itoa(limit), "--backend-timeout", "2s")
	url, simAddr, healths := rig.url, rig.simAddr, rig.healths()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	t.Cleanup(client.CloseIdleConnections)
	// No slow start: the bound is the whole reported capacity at once.
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(cfg, []byte("lb:\n  slow_start:\n    window: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lbs []discoveryLB
	for i := range 2 {
		lbs = append(lbs, startDiscoveryLB(t, fmt.Sprintf("lb %d", i), url, "--config", cfg))
	}
	capacityOf := func(admin string) (lb.CapacityStatus, bool) {
		st, err := lbStatus(client, admin)
		if errors.Is(err, errNoAnswer) {
			return lb.CapacityStatus{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return st.Capacity, true
	}
	for i, l := range lbs {
		var last lb.CapacityStatus
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("lb %d: last capacity %+v", i, last)
			}
		})
		testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("lb %d: half the fleet's capacity", i), func() bool {
			last, _ = capacityOf(l.admin)
			return last.Bounded && last.Share == 0.5 && last.Peers == 2 && last.Limit == capacity/2
		})
	}
	t.Logf("each balancer: share 0.5 of 2, limit %d of the fleet's %d", capacity/2, capacity)

	rejected := func() (sum float64) { // by the instances themselves
		for _, h := range healths {
			sum += scrapeSum(t, client, "http://"+h+"/metrics", `spillway_admission_rejected_total{name="login"`)
		}
		return sum
	}
	before := rejected()

	// 400 concurrent logins, 200 through each balancer.
	const burst = 400
	codes := make([]map[int]int, len(lbs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range burst {
		l := i % len(lbs)
		wg.Go(func() {
			code, _ := loginThrough(client, lbs[l].proxy, fmt.Sprintf("user-%d", i)) // 0: no answer
			mu.Lock()
			defer mu.Unlock()
			if codes[l] == nil {
				codes[l] = map[int]int{}
			}
			codes[l][code]++
		})
	}
	wg.Wait()
	t.Logf("burst of %d in %v: lb 0 answered %v, lb 1 %v (0: no answer)", burst, time.Since(start).Round(time.Millisecond), codes[0], codes[1])
	if got := rejected() - before; got != 0 {
		t.Errorf("the instances rejected %v logins over their limit of %d; want none", got, limit)
	}
	for i, c := range codes {
		if c[http.StatusOK] == 0 {
			t.Errorf("lb %d: no login succeeded: %v", i, c)
		}
		if n := burst/len(lbs) - c[http.StatusOK] - c[http.StatusServiceUnavailable]; n != 0 {
			t.Errorf("lb %d: %d answers neither 200 nor 503: %v", i, n, c)
		}
	}
	if peak := simPeakBusy(t, client, simAddr); peak > capacity {
		t.Errorf("backend peak concurrency %d, want at most the fleet's %d", peak, capacity)
	} else {
		t.Logf("backend peak concurrency %d (fleet capacity %d)", peak, capacity)
	}

	// lb 1 stops: it deregisters as its drain begins; lb 0 takes it all.
	stopped := time.Now()
	if err := lbs[1].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, lbTTL+time.Second, "lb 0: the whole capacity", func() bool {
		c, _ := capacityOf(lbs[0].admin)
		return c.Share == 1 && c.Peers == 1 && c.Limit == capacity
	})
	t.Logf("lb 0 has share 1 %v after lb 1's SIGTERM", time.Since(stopped).Round(time.Millisecond))
	lbs[1].await(t, `msg=deregistered`, time.Second)
}

// scrapeSum sums the samples of url's Prometheus text whose line starts
// with prefix.
func scrapeSum(t *testing.T, client *http.Client, url, prefix string) float64 {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: %q: %v", url, line, err)
		}
		sum += v
	}
	return sum
}

// simPeakBusy is backend-sim's highest number of validate calls at once.
func simPeakBusy(t *testing.T, client *http.Client, addr string) int {
	t.Helper()
	res, err := client.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatalf("backend-sim /stats: %v", err)
	}
	defer res.Body.Close()
	var st struct {
		Pool struct {
			PeakBusy int `json:"peak_busy"`
		} `json:"pool"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatalf("backend-sim /stats: %v", err)
	}
	return st.Pool.PeakBusy
}
