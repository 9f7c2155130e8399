package login

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
)

// benchInstance is a login Instance in front of a backendsim.Sim served by
// an httptest.Server on loopback, with the per-client rate limit off. The
// Instance is not Run: its handler is driven directly, so no guard probe or
// health server runs. Cleanup closes the Sim, the server and the
// Instance's idle backend connections, so goleak finds nothing.
func benchInstance(b *testing.B) *Instance {
	b.Helper()
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp}, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())

	d := DefaultConfig()
	cfg := &d
	cfg.Backend.URL = srv.URL
	cfg.RateLimit.PerSecond = 0 // disabled
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	in, err := New(cfg, Options{Dev: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.backend.http.CloseIdleConnections()
		sim.Close()
		srv.Close()
	})
	return in
}

// BenchmarkLogin is one successful POST /v1/login through the service
// handler: admission, strict JSON decode, the guard, a real HTTP round trip
// to the backend stub on loopback (its server side runs in this process and
// is counted too), Ed25519 signing and the JSON answer. The inbound HTTP
// server (parsing the client's request, writing the socket) is not in it:
// the handler writes to an httptest.ResponseRecorder. scripts/bench-login.sh
// measures the whole process with wrk.
//
// RunParallel keeps GOMAXPROCS logins in flight, below the admission limit
// of 64 on any machine with fewer CPUs, so every request must succeed. On a 2-CPU machine the CPUs
// are then about 75% busy (the rest is loopback wake-up latency); raising
// the parallelism to 32 in flight did not move ns/op beyond the noise.
func BenchmarkLogin(b *testing.B) {
	in := benchInstance(b)
	h := in.ServiceHandler()
	const body = `{"ticket":"valid-bench"}`

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/login", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("login = %d %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

// BenchmarkTokenIssue is the signing step alone: claims, a random token id,
// JSON and base64 encoding, one Ed25519 signature.
func BenchmarkTokenIssue(b *testing.B) {
	key, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	tokens := NewTokens(key, nil, "spillway", time.Hour, time.Now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := tokens.Issue("acct-bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
