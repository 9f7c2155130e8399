package main

import (
	"crypto/tls"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestTLSCertRotationUnderLoad runs backend-sim, a login instance and
// `spillway lb --tls-cert --tls-key`, drives about 200 logins/s over
// HTTPS, half on keep-alive connections and half each on a new one, and
// rotates the certificate twice meanwhile: once by renaming new files
// over the old (the file watch reloads), once followed by SIGHUP. No
// request fails, and new handshakes present each new certificate.
func TestTLSCertRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	certFile, keyFile, serial := ca.WritePair(t, dir, "lb", "127.0.0.1")

	sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0", "--latency", "0s")
	simAddr := sim.Await(t, reSimListening, 10*time.Second)[1]
	in := testbin.Start(t, "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
		"--backend", "http://"+simAddr, "--rate-limit", "0")
	m := in.Await(t, reLoginListening, 10*time.Second)
	p := testbin.Start(t, "lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-token", fwdToken,
		"--tls-cert", certFile, "--tls-key", keyFile, "--instance", m[1]+"="+m[2])
	lbm := p.Await(t, reLBListening, 10*time.Second)
	waitRoutable(t, lbm[2], 1)
	url := "https://" + lbm[1] + "/v1/login"

	presented := func() *big.Int {
		c, err := tls.Dial("tcp", lbm[1], &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Errorf("handshake: %v", err)
			return big.NewInt(0)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := presented(); got.Cmp(serial) != 0 {
		t.Fatalf("serial %v presented, want %v", got, serial)
	}

	keepAlive := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, MaxIdleConnsPerHost: 64}
	fresh := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, DisableKeepAlives: true}
	defer keepAlive.CloseIdleConnections()
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, tr := range []*http.Transport{keepAlive, fresh} {
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond) // 100/s per transport
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				sent.Add(1)
				wg.Go(func() {
					resp, err := client.Post(url, "application/json", strings.NewReader(`{"ticket":"valid-alice"}`))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = &statusError{resp.StatusCode}
						}
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				})
			}
		})
	}

	time.Sleep(time.Second) // load before the first rotation
	_, _, s2 := ca.WritePair(t, dir, "lb", "127.0.0.1")
	testkit.WaitFor(t, 5*time.Second, "the renamed certificate presented", func() bool { return presented().Cmp(s2) == 0 })
	time.Sleep(500 * time.Millisecond) // load between the rotations
	_, _, s3 := ca.WritePair(t, dir, "lb", "127.0.0.1")
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the certificate after SIGHUP presented", func() bool { return presented().Cmp(s3) == 0 })
	time.Sleep(time.Second) // load after the rotations
	close(stop)
	wg.Wait()

	// 200/s for about 3 s; a loaded machine (the race detector, two
	// cores shared) drops ticks, so the bound is loose.
	if n := sent.Load(); n < 250 {
		t.Errorf("only %d logins sent", n)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d logins failed across the rotations; first: %v", n, sent.Load(), firstErr.Load())
	}
	if n := strings.Count(p.Output(), "TLS certificates reloaded"); n < 2 {
		t.Errorf("%d reloads logged, want at least 2:\n%s", n, p.Output())
	}
	t.Logf("%d logins over HTTPS across two rotations, %d failed", sent.Load(), failed.Load())
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }
