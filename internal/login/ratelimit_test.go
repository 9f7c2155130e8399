package login

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/clientip"
)

func TestDefaultTrustsLoopbackAndPrivateProxies(t *testing.T) {
	d := DefaultConfig()
	c := &d
	tr, err := clientip.Parse(c.TrustedProxies)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newClientLimiter(c.RateLimit, tr, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ remote, xff, want string }{
		{"127.0.0.1:5", "203.0.113.9", "203.0.113.9"}, // a load balancer on this host
		{"10.0.3.4:5", "203.0.113.9", "203.0.113.9"},  // on the private network
		{"203.0.113.7:5", "198.51.100.1", "203.0.113.7"},
	} {
		r := httptest.NewRequest("POST", "/v1/login", nil)
		r.RemoteAddr = tt.remote
		r.Header.Set("X-Forwarded-For", tt.xff)
		if got := l.clientAddr(r); got != netip.MustParseAddr(tt.want) {
			t.Errorf("from %s claiming %s: client %v, want %v", tt.remote, tt.xff, got, tt.want)
		}
	}
}

func TestClientLimiterBoundedAndRefills(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := newClientLimiter(RateLimitConfig{PerSecond: 2, Burst: 2, MaxClients: 3}, clientip.Trusted{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if !l.allow(a) {
			t.Fatalf("attempt %d of a burst of 2 refused", i+1)
		}
	}
	if l.allow(a) {
		t.Fatal("third attempt in the same instant allowed")
	}
	now = now.Add(500 * time.Millisecond)
	if !l.allow(a) {
		t.Fatal("bucket did not refill")
	}
	for i := range 100 {
		l.allow(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if n := l.buckets.Len(); n > 3 {
		t.Errorf("tracked %d clients, bound is 3", n)
	}
}

func TestClientLimiterDisabled(t *testing.T) {
	l, err := newClientLimiter(RateLimitConfig{PerSecond: 0}, clientip.Trusted{}, time.Now) // 0 disables
	if err != nil || l != nil {
		t.Fatalf("disabled limiter = %v, %v; want nil, nil", l, err)
	}
}
