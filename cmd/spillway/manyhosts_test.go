//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// The many-hosts system of TestManyHostsOneEtcd.
const (
	mhPrefix       = "hosts"
	mhTTL          = 2 * time.Second // the instances' register_ttl
	mhLimit        = 10              // each instance's admission limit
	mhPerHost      = 2
	mhRPS          = 200
	mhHealthPeriod = 500 * time.Millisecond // the balancers' health_check.interval
)

// mhConfig is the spillway file every process of the test reads: the
// instances (through `spillway fleet`) its login: section, the balancers
// its lb: section.
var mhConfig = fmt.Sprintf(`login:
  rate_limit:
    per_second: 0
  admission:
    limit: %d
  register_ttl: %s
  backend:
    timeout: 1s
lb:
  health_check:
    interval: %s
  slow_start:
    window: 0s
`, mhLimit, mhTTL, mhHealthPeriod)

// TestManyHostsOneEtcd is the acceptance test of a fleet beyond one
// machine: one etcd; three "hosts", each a `spillway fleet` of two login
// instances on its own loopback address (127.0.0.2, .3, .4), registering
// into etcd; two `spillway lb` discovering from it; 200 logins/s spread
// over both balancers. In turn: every instance routable on both
// balancers; etcd stopped for 10 s with no failed login, and both
// balancers resync once it is back; one host's fleet killed (SIGKILL to
// its process group): its instances leave both balancers within the
// lease TTL and a second, and no more logins fail than were in flight; an
// override given to one balancer is applied by the other within a second,
// and so is its return to auto; the backend hanging: both balancers shed
// within one health interval of each other, no host replaces anything,
// and both recover together; 1,000 concurrent slow logins split over both
// balancers never ask an instance for more than its limit.
func TestManyHostsOneEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a dozen processes for about a minute")
	}
	e := etcdtest.Start(t)
	url := "etcd://" + e.HostPort() + "/" + mhPrefix
	cfg := filepath.Join(t.TempDir(), "spillway.yaml")
	if err := os.WriteFile(cfg, []byte(mhConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	simAddr := startSim(t, "2ms")
	sim := &backendsim.Client{BaseURL: "http://" + simAddr, HTTP: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(sim.HTTP.CloseIdleConnections)

	// Three hosts.
	begun := time.Now()
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	fleets := make([]*mhFleet, len(hosts))
	for i, host := range hosts {
		p := startProc(t, "fleet "+host, "fleet", "--dev", "--quiet-instances", "--config", cfg, "--instances", strconv.Itoa(mhPerHost), "--host", host,
			"--backend", "http://"+simAddr, "--register", url, "--admin-listen", "127.0.0.1:0")
		fleets[i] = &mhFleet{proc: p, host: host, admin: p.await(t, `msg=listening .*admin=(\S+)`, 10*time.Second)[1]}
	}

	// Two balancers.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	t.Cleanup(client.CloseIdleConnections)
	start := time.Now()
	var lbs []*mhLB
	for i := range 2 {
		p := startProc(t, fmt.Sprintf("lb %c", 'A'+i), "lb", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--discovery", url)
		m := p.await(t, `msg=listening proxy=(\S+) admin=(\S+) discovery=`, 10*time.Second)
		lbs = append(lbs, &mhLB{proc: p, proxy: m[1], admin: m[2], client: client})
	}
	A, B := lbs[0], lbs[1]

	// All six instances routable on both balancers within 3 s.
	want := len(hosts) * mhPerHost
	for _, l := range lbs {
		testkit.WaitFor(t, 3*time.Second, l.name+": all instances routable", func() bool {
			st, ok := l.status(t)
			return ok && len(st.routable()) == want
		})
	}
	t.Logf("all %d instances routable on both balancers %v after they started, %v after the first host's fleet started", want, time.Since(start).Round(time.Millisecond), time.Since(begun).Round(time.Millisecond))

	load := startMHLoad(t, client, []string{A.proxy, B.proxy}, mhRPS)
	time.Sleep(2 * time.Second)
	if f := load.failed(time.Time{}, time.Now()); len(f) > 0 {
		t.Fatalf("%d logins failed before anything happened, first: %s", len(f), f[0])
	}

	// etcd stopped for 10 s under load: no failed login; both balancers
	// say so and keep every instance; etcd back: both resync.
	stopped := time.Now()
	e.Stop()
	for _, l := range lbs {
		testkit.WaitFor(t, 3*time.Second, l.name+": /status says etcd is unreachable", func() bool {
			st, ok := l.status(t)
			return ok && st.Discovery != nil && !st.Discovery.Connected
		})
	}
	time.Sleep(10*time.Second - time.Since(stopped))
	for _, l := range lbs {
		if st, _ := l.status(t); len(st.routable()) != want {
			t.Errorf("%s with etcd stopped: %d instances routable, want %d", l.name, len(st.routable()), want)
		}
	}
	e.Restart()
	restarted := time.Now()
	for _, l := range lbs {
		testkit.WaitFor(t, 5*time.Second, l.name+": resynced with etcd", func() bool {
			st, ok := l.status(t)
			return ok && st.Discovery != nil && st.Discovery.Connected && st.Discovery.LastSync.After(restarted)
		})
		if st, _ := l.status(t); len(st.routable()) != want {
			t.Errorf("%s after etcd came back: %d instances routable, want %d", l.name, len(st.routable()), want)
		}
	}
	time.Sleep(time.Second)
	if f := load.failed(stopped, time.Now()); len(f) > 0 {
		t.Errorf("etcd stopped for 10s: %d logins failed, want 0; first: %s", len(f), f[0])
	}
	t.Logf("etcd stopped 10s: 0 failed of %d logins; both balancers resynced %v after it restarted", load.count(stopped, time.Now()), time.Since(restarted).Round(time.Millisecond))

	// kill -9 of one host's fleet process group.
	dead := fleets[2]
	deadInstances := dead.instances(t, A)
	if len(deadInstances) != mhPerHost {
		t.Fatalf("%s: %d instances on %s, want %d", A.name, len(deadInstances), dead.host, mhPerHost)
	}
	pids := dead.pids(t)
	killed := time.Now()
	if err := syscall.Kill(-dead.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The instances die when the kernel sees their parent gone
	// (Pdeathsig), a moment after it: what was in flight until then was
	// in flight on a dying host.
	if left := testkit.StillRunning(2*time.Second, pids...); len(left) > 0 {
		t.Fatalf("instances %v still run after their fleet was killed", left)
	}
	instancesDead := time.Now()
	for _, l := range lbs {
		testkit.WaitFor(t, mhTTL+time.Second, l.name+": the killed host's instances gone", func() bool {
			st, ok := l.status(t)
			return ok && len(st.Instances) == want-mhPerHost
		})
		t.Logf("%s: the killed host's instances gone %v after SIGKILL (TTL %v)", l.name, time.Since(killed).Round(time.Millisecond), mhTTL)
	}
	want -= mhPerHost
	time.Sleep(500 * time.Millisecond)
	inFlight := load.overlapping(killed, instancesDead)
	if f := load.failed(killed.Add(-time.Second), time.Now()); len(f) > inFlight {
		t.Errorf("host killed: %d logins failed, more than the %d in flight while it died (%v); first: %s", len(f), inFlight, instancesDead.Sub(killed).Round(time.Millisecond), f[0])
	} else {
		t.Logf("host killed: %d logins failed; %d were in flight while it died (its instances gone %v after the fleet)", len(f), inFlight, instancesDead.Sub(killed).Round(time.Millisecond))
	}
	for _, l := range lbs {
		st, _ := l.status(t)
		t.Logf("%s after the kill: retries %v, requests %v, ejections %d", l.name, st.Counters.Retries, st.Counters.Requests, st.Counters.Ejections)
	}

	// An override given to A is applied by B within a second; so is auto.
	for _, mode := range []lb.Override{lb.OverrideOn, lb.OverrideAuto} {
		set := time.Now()
		A.setShedding(t, "backend", mode)
		testkit.WaitFor(t, time.Second, fmt.Sprintf("%s: override %s from %s", B.name, mode, A.name), func() bool {
			st, ok := B.status(t)
			d := st.dependency("backend")
			return ok && d.Override == mode && (mode != lb.OverrideOn || d.State == lb.ShedShedding)
		})
		t.Logf("override %s given to %s applied by %s %v later", mode, A.name, B.name, time.Since(set).Round(time.Millisecond))
	}
	for _, l := range lbs {
		testkit.WaitFor(t, 10*time.Second, l.name+": backend ok again", func() bool {
			st, ok := l.status(t)
			return ok && st.dependency("backend").State == lb.ShedOK
		})
	}

	// The backend hangs: both balancers shed within one health interval of
	// each other, no host replaces an instance; back: both recover
	// together.
	replacedBefore := fleets[0].replacements(t) + fleets[1].replacements(t)
	ctx := t.Context()
	// together sets the backend's mode (the backend "is" what it became,
	// for the log) and waits up to timeout for both balancers to reach
	// state, within one health interval of each other (did: how they got
	// there).
	together := func(mode string, latency time.Duration, is string, timeout time.Duration, state lb.ShedState, did string) {
		t.Helper()
		if err := sim.SetMode(ctx, mode, latency); err != nil {
			t.Fatal(err)
		}
		at := awaitBoth(t, lbs, timeout, did, func(st mhStatus) bool {
			return st.dependency("backend").State == state
		})
		if d := absDiff(at[0], at[1]); d > mhHealthPeriod {
			t.Errorf("the balancers %s %v apart, more than one health interval (%v)", did, d, mhHealthPeriod)
		} else {
			t.Logf("backend %s: the balancers %s %v apart", is, did, d)
		}
	}
	together("hang", 0, "hung", 10*time.Second, lb.ShedShedding, "began shedding")
	time.Sleep(3 * time.Second)
	together("up", 2*time.Millisecond, "back", 30*time.Second, lb.ShedOK, "recovered")
	if r := fleets[0].replacements(t) + fleets[1].replacements(t) - replacedBefore; r != 0 {
		t.Errorf("the hosts replaced %d instances while the backend hung, want 0", r)
	}
	load.stop()

	// 1,000 concurrent slow logins over both balancers: no instance is
	// asked for more than its limit (it would turn the excess away itself
	// and count it).
	if err := sim.SetMode(ctx, "slow", 0); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetSlowLatency(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	healths := A.healths(t)
	rejectedBefore := rejectedTotal(t, client, healths)
	if _, err := sim.ResetStats(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var codes [600]atomic.Int64
	for i := range 1000 {
		wg.Go(func() {
			l := lbs[i%2]
			res, err := client.Post("http://"+l.proxy+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-burst-%d"}`, i)))
			if err != nil {
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			codes[res.StatusCode].Add(1)
		})
	}
	wg.Wait()
	// Every login an instance admits is one call to the backend: the
	// backend's peak concurrency is the fleet's peak in flight.
	st, err := sim.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if capacity := want * mhLimit; st.Pool.PeakBusy > capacity {
		t.Errorf("the instances had %d logins in flight at once, more than the fleet's capacity %d", st.Pool.PeakBusy, capacity)
	}
	// Each balancer keeps to its share of each instance's limit, too: no
	// instance is asked for more than its own limit (it would turn the
	// excess away itself, with a 503 of its own, while another had room).
	rejected := rejectedTotal(t, client, healths) - rejectedBefore
	if rejected != 0 {
		t.Errorf("the instances turned away %v logins themselves: one was asked for more than its limit", rejected)
	}
	t.Logf("burst of 1000 over both balancers (fleet capacity %d): peak %d in flight at the instances; %d answered 200, %d answered 503 (%v of them by an instance's own admission)",
		want*mhLimit, st.Pool.PeakBusy, codes[200].Load(), codes[503].Load(), rejected)
}

// mhFleet is one host's `spillway fleet`.
type mhFleet struct {
	*proc
	host, admin string
}

// instances are the service addresses on the fleet's host that l knows.
func (f *mhFleet) instances(t *testing.T, l *mhLB) []string {
	st, _ := l.status(t)
	var out []string
	for _, in := range st.Instances {
		if strings.HasPrefix(in.ID, f.host+":") {
			out = append(out, in.ID)
		}
	}
	return out
}

// pids are the fleet's instance processes.
func (f *mhFleet) pids(t *testing.T) []int {
	t.Helper()
	res, err := http.Get("http://" + f.admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st struct {
		Processes []struct {
			PID int `json:"pid"`
		} `json:"processes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range st.Processes {
		out = append(out, p.PID)
	}
	return out
}

// replacements is the number of health-based replacements the fleet
// made, from its metrics.
func (f *mhFleet) replacements(t *testing.T) int {
	t.Helper()
	v, ok := scrape(t, "http://"+f.admin+"/metrics", "spillway_fleet_replacements_total")
	if !ok {
		t.Fatalf("%s: no spillway_fleet_replacements_total in /metrics", f.name)
	}
	return int(v)
}

// mhLB is one `spillway lb`.
type mhLB struct {
	*proc
	proxy, admin string
	client       *http.Client
}

type mhStatus struct{ lb.Status }

func (s mhStatus) routable() []string {
	var out []string
	for _, in := range s.Instances {
		if in.Routable {
			out = append(out, in.ID)
		}
	}
	slices.Sort(out)
	return out
}

func (s mhStatus) dependency(name string) lb.DependencyStatus {
	for _, d := range s.Dependencies {
		if d.Name == name {
			return d
		}
	}
	return lb.DependencyStatus{}
}

// status is the balancer's /status; false if it did not answer.
func (l *mhLB) status(t *testing.T) (mhStatus, bool) {
	t.Helper()
	res, err := l.client.Get("http://" + l.admin + "/status")
	if err != nil {
		return mhStatus{}, false
	}
	defer res.Body.Close()
	var st mhStatus
	if err := json.NewDecoder(res.Body).Decode(&st.Status); err != nil {
		t.Fatalf("%s /status: %v", l.name, err)
	}
	return st, true
}

// healths are the health addresses of the instances l knows.
func (l *mhLB) healths(t *testing.T) []string {
	st, _ := l.status(t)
	var out []string
	for _, in := range st.Instances {
		out = append(out, in.Health)
	}
	return out
}

func (l *mhLB) setShedding(t *testing.T, dep string, mode lb.Override) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://"+l.admin+"/shedding/"+dep, strings.NewReader(fmt.Sprintf(`{"mode":%q}`, mode)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+procToken)
	res, err := l.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s PUT /shedding/%s %s: %d %s", l.name, dep, mode, res.StatusCode, body)
	}
}

// awaitBoth polls every balancer's /status every 20 ms until cond holds
// on each, and returns when it first held on each.
func awaitBoth(t *testing.T, lbs []*mhLB, d time.Duration, what string, cond func(mhStatus) bool) []time.Time {
	t.Helper()
	at := make([]time.Time, len(lbs))
	deadline := time.Now().Add(d)
	for {
		done := true
		for i, l := range lbs {
			if !at[i].IsZero() {
				continue
			}
			if st, ok := l.status(t); ok && cond(st) {
				at[i] = time.Now()
			} else {
				done = false
			}
		}
		if done {
			return at
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every balancer %s within %v: %v", what, d, at)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func absDiff(a, b time.Time) time.Duration {
	d := a.Sub(b)
	if d < 0 {
		return -d
	}
	return d
}

// rejectedTotal sums spillway_admission_rejected_total over the
// instances' health ports.
func rejectedTotal(t *testing.T, client *http.Client, healths []string) float64 {
	t.Helper()
	var sum float64
	for _, h := range healths {
		v, _ := scrape(t, "http://"+h+"/metrics", "spillway_admission_rejected_total")
		sum += v
	}
	return sum
}

// scrape returns the sum of the samples of metric at url.
func scrape(t *testing.T, url, metric string) (float64, bool) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if n, _, _ := strings.Cut(name, "{"); n != metric {
			continue
		}
		fields := strings.Fields(rest)
		if strings.Contains(name, "{") && strings.Contains(line, "} ") {
			_, after, _ := strings.Cut(line, "} ")
			fields = strings.Fields(after)
		}
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// mhLoad sends logins at a steady rate, alternating between proxies, and
// records every answer.
type mhLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	answers []mhAnswer
}

type mhAnswer struct {
	at     time.Time // when the request was sent
	done   time.Time // when its answer (or error) came
	status int       // 0: no answer
	err    string
	proxy  string
}

func (a mhAnswer) String() string {
	return fmt.Sprintf("%s via %s: %d %s", a.at.Format("15:04:05.000"), a.proxy, a.status, a.err)
}

func startMHLoad(t *testing.T, client *http.Client, proxies []string, rps int) *mhLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &mhLoad{cancel: cancel}
	t.Cleanup(l.stop)
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			proxy := proxies[n%len(proxies)]
			l.wg.Go(func() {
				a := mhAnswer{at: time.Now(), proxy: proxy}
				res, err := client.Post("http://"+proxy+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-load-%d"}`, n)))
				if err != nil {
					a.err = err.Error()
				} else {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					a.status = res.StatusCode
				}
				a.done = time.Now()
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			})
		}
	})
	return l
}

func (l *mhLoad) stop() { l.cancel(); l.wg.Wait() }

// where are the answers for which keep holds.
func (l *mhLoad) where(keep func(mhAnswer) bool) []mhAnswer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []mhAnswer
	for _, a := range l.answers {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// failed are the logins sent in [from, to) that did not get a 200.
func (l *mhLoad) failed(from, to time.Time) []mhAnswer {
	return l.where(func(a mhAnswer) bool { return sentIn(a, from, to) && a.status != http.StatusOK })
}

// overlapping is the number of logins in flight at some moment of
// [from, to]: sent by to, answered after from.
func (l *mhLoad) overlapping(from, to time.Time) int {
	return len(l.where(func(a mhAnswer) bool { return !a.at.After(to) && a.done.After(from) }))
}

// count is the number of logins sent in [from, to) and answered.
func (l *mhLoad) count(from, to time.Time) int {
	return len(l.where(func(a mhAnswer) bool { return sentIn(a, from, to) }))
}

func sentIn(a mhAnswer, from, to time.Time) bool { return !a.at.Before(from) && a.at.Before(to) }
