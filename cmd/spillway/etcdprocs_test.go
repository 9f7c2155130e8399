//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// The processes of the tests around a real etcd (TestEtcdDiscovery,
// TestEtcdPeers, TestEtcdShared): login instances that register there and
// balancers that discover them there.

// etcdRig is the set-up the etcd tests share: a real etcd, a backend-sim
// and two login instances registered there.
type etcdRig struct {
	etcd    *etcdtest.Server
	url     string // etcd://HOST:PORT/PREFIX
	simAddr string
	logins  []registeredLogin
}

// startEtcdRig starts etcd, a backend-sim answering after latency, and
// two `spillway login` registered under prefix with a lease of ttl and
// the flags loginFlags added (startRegisteredLogins).
func startEtcdRig(t *testing.T, prefix, latency string, ttl time.Duration, loginFlags ...string) *etcdRig {
	t.Helper()
	r := &etcdRig{etcd: etcdtest.Start(t)}
	r.url = "etcd://" + r.etcd.HostPort() + "/" + prefix
	r.simAddr = startSim(t, latency)
	r.logins = startRegisteredLogins(t, 2, r.simAddr, r.url, ttl, loginFlags...)
	return r
}

// services returns the service addresses the logins registered, in
// their order; healths their health addresses.
func (r *etcdRig) services() []string {
	var out []string
	for _, l := range r.logins {
		out = append(out, l.service)
	}
	return out
}

func (r *etcdRig) healths() []string {
	var out []string
	for _, l := range r.logins {
		out = append(out, l.health)
	}
	return out
}

// registeredLogin is a `spillway login --register` that has registered,
// with the addresses it registered.
type registeredLogin struct {
	*proc
	service, health string
}

// startRegisteredLogins starts n `spillway login --dev` on free loopback
// ports, in front of the backend-sim at simAddr, without a rate limit,
// registering at url with a lease of ttl, with the flags extra added. It
// returns once each has registered.
func startRegisteredLogins(t *testing.T, n int, simAddr, url string, ttl time.Duration, extra ...string) []registeredLogin {
	t.Helper()
	var logins []registeredLogin
	for i := range n {
		args := append([]string{"login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
			"--backend", "http://" + simAddr, "--rate-limit", "0", "--register", url, "--register-ttl", ttl.String()}, extra...)
		p := startProc(t, fmt.Sprintf("login %d", i), args...)
		m := p.await(t, `msg=registered key=\S+ service=(\S+) health=(\S+)`, 10*time.Second)
		logins = append(logins, registeredLogin{proc: p, service: m[1], health: m[2]})
	}
	return logins
}

// discoveryLB is a `spillway lb --discovery etcd://` that listens and has
// registered itself, under the id it registered with.
type discoveryLB struct {
	*proc
	id, proxy, admin string
}

// startDiscoveryLB starts `spillway lb --discovery url` on free loopback
// ports, with the flags extra added, and returns once it listens and has
// registered under PREFIX/lbs/.
func startDiscoveryLB(t *testing.T, name, url string, extra ...string) discoveryLB {
	t.Helper()
	args := append([]string{"lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--discovery", url}, extra...)
	p := startProc(t, name, args...)
	m := p.await(t, `msg=listening proxy=(\S+) admin=(\S+) discovery=`, 10*time.Second)
	id := p.await(t, `msg=registered key=\S+/lbs/(\S+)`, 5*time.Second)[1]
	return discoveryLB{proc: p, id: id, proxy: m[1], admin: m[2]}
}

// lbStatus reads the /status of the balancer whose admin API is at admin.
// An error that is not the balancer's answer (a connection that failed)
// is errNoAnswer.
func lbStatus(client *http.Client, admin string) (lb.Status, error) {
	res, err := client.Get("http://" + admin + "/status")
	if err != nil {
		return lb.Status{}, fmt.Errorf("/status: %w: %w", errNoAnswer, err)
	}
	defer res.Body.Close()
	var st lb.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return lb.Status{}, fmt.Errorf("/status: %w", err)
	}
	return st, nil
}

// errNoAnswer: the balancer did not answer at all.
var errNoAnswer = errors.New("no answer")

// loginThrough posts a login for user to the balancer's proxy and returns
// the answer's status.
func loginThrough(client *http.Client, proxy, user string) (int, error) {
	res, err := client.Post("http://"+proxy+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-%s"}`, user)))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}
