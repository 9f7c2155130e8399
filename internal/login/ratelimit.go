package login

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// clientLimiter is a token bucket per client address, kept in a bounded
// LRU so a flood of addresses cannot grow memory. Safe for concurrent use.
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	trusted []netip.Prefix
	now     func() time.Time

	mu      sync.Mutex // serialises get-or-create so two requests share one bucket
	buckets *lru.Cache[netip.Addr, *rate.Limiter]
}

func newClientLimiter(cfg RateLimitConfig, now func() time.Time) (*clientLimiter, error) {
	if cfg.PerSecond < 0 {
		return nil, nil // disabled
	}
	cache, err := lru.New[netip.Addr, *rate.Limiter](cfg.MaxClients)
	if err != nil {
		return nil, err
	}
	l := &clientLimiter{
		limit:   rate.Limit(cfg.PerSecond),
		burst:   cfg.Burst,
		now:     now,
		buckets: cache,
	}
	for _, s := range cfg.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		l.trusted = append(l.trusted, p)
	}
	return l, nil
}

// allow reports whether the client may make one more attempt now.
func (l *clientLimiter) allow(client netip.Addr) bool {
	l.mu.Lock()
	b, ok := l.buckets.Get(client)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.Add(client, b)
	}
	l.mu.Unlock()
	return b.AllowN(l.now(), 1)
}

func (l *clientLimiter) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address a request is attributed to: the peer,
// or, when the peer is a trusted proxy, the rightmost address in
// X-Forwarded-For that is not itself a trusted proxy.
func (l *clientLimiter) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !peer.IsValid() || !l.isTrusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr // a malformed hop: stop at the last one we could trust
			}
			a = a.Unmap()
			addr = a
			if !l.isTrusted(a) {
				return a
			}
		}
	}
	return addr
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
