package sidecar

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/spillway-dev/spillway/internal/backendsim"
)

// BenchmarkAddedLatency measures what the sidecar adds to a backend call:
// each iteration sends the same POST /v1/validate to a backend-sim on
// loopback (latency 0) twice, once directly and once through a running
// sidecar (its own listener, the guard, the reverse proxy, its pooled
// connection to the upstream), alternating so that both see the same
// machine. One request at a time, keep-alive on every hop; the client,
// the sidecar and the upstream share this process and its CPUs. It
// reports the p50 and p99 of each path and their differences, in
// microseconds (added-p50-us is the figure the sidecar is held to: under
// 200 µs). ns/op is one direct plus one proxied call.
//
//	go test -run '^$' -bench AddedLatency -benchtime 2s -count 3 ./internal/sidecar
func BenchmarkAddedLatency(b *testing.B) {
	_, upstream := simUpstream(b, backendsim.Config{})
	cfg := DefaultConfig()
	cfg.Listen, cfg.HealthListen, cfg.URL, cfg.DrainDelay = "127.0.0.1:0", "127.0.0.1:0", upstream, 0
	sc := start(b, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(client.CloseIdleConnections)
	const body = `{"ticket":"valid-bench"}`
	post := func(base string) time.Duration {
		t0 := time.Now()
		resp, err := client.Post(base+"/v1/validate", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: status %d", base, resp.StatusCode)
		}
		return d
	}
	for range 200 { // warm the connections and the pools
		post(upstream)
		post(sc.proxy)
	}
	direct := hdrhistogram.New(1, int64(time.Second/time.Nanosecond), 3)
	proxied := hdrhistogram.New(1, int64(time.Second/time.Nanosecond), 3)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = direct.RecordValue(int64(post(upstream)))
		_ = proxied.RecordValue(int64(post(sc.proxy)))
	}
	b.StopTimer()
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 50}, {"p99", 99}} {
		d, p := direct.ValueAtQuantile(q.q), proxied.ValueAtQuantile(q.q)
		b.ReportMetric(us(d), "direct-"+q.name+"-us")
		b.ReportMetric(us(p), "sidecar-"+q.name+"-us")
		b.ReportMetric(us(p-d), "added-"+q.name+"-us")
	}
}
