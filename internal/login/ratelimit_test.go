package login

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	l, err := newClientLimiter(RateLimitConfig{PerSecond: 1, Burst: 1, MaxClients: 10,
		TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1"}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct", "192.0.2.1:1234", nil, "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:1234", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted proxy", "127.0.0.1:5", []string{"203.0.113.9"}, "203.0.113.9"},
		{"rightmost untrusted", "127.0.0.1:5", []string{"198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"spoofed left part ignored", "127.0.0.1:5", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"all trusted", "127.0.0.1:5", []string{"10.0.0.1"}, "10.0.0.1"},
		{"malformed hop", "127.0.0.1:5", []string{"garbage"}, "127.0.0.1"},
		{"mapped v4", "[::ffff:192.0.2.7]:1", nil, "192.0.2.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/login", nil)
			r.RemoteAddr = tt.remote
			for _, h := range tt.xff {
				r.Header.Add("X-Forwarded-For", h)
			}
			if got := l.clientAddr(r); got != netip.MustParseAddr(tt.want) {
				t.Errorf("clientAddr = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClientLimiterBoundedAndRefills(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := newClientLimiter(RateLimitConfig{PerSecond: 2, Burst: 2, MaxClients: 3}, clock)
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
	l, err := newClientLimiter(RateLimitConfig{PerSecond: -1}, time.Now)
	if err != nil || l != nil {
		t.Fatalf("disabled limiter = %v, %v; want nil, nil", l, err)
	}
}
