package lb_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkProxy measures a proxied GET end to end on loopback with every
// feature on (health checks, shedding check, edge admission, P2C, retry
// budget, timeouts). The client and the upstreams run in the same process,
// so allocs/op and ns/op include theirs: compare runs, not absolutes.
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 64)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	cfg := testConfig(startUpstream(b, h).lbInstance(), startUpstream(b, h).lbInstance())
	cfg.Admission.FallbackLimit = 1024
	lbt := startLB(b, cfg, nil)
	lbt.waitRoutable(b, 2)
	run(b, lbt, 200)
}

// BenchmarkShed measures an answer shed at the edge, end to end.
func BenchmarkShed(b *testing.B) {
	lbt := startLB(b, testConfig(startUpstream(b, http.NotFoundHandler()).lbInstance()), nil)
	lbt.waitRoutable(b, 1)
	if code, body := lbt.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, true); code != 200 {
		b.Fatal(code, body)
	}
	run(b, lbt, 503)
}

func run(b *testing.B, lbt *balancer, want int) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := lbt.client.Get(lbt.url + "/x")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Errorf("status %d, want %d", resp.StatusCode, want)
				return
			}
		}
	})
}
