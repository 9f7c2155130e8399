package login

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/spillway-dev/spillway/internal/clientip"
)

// clientLimiter is a token bucket per client address, kept in a bounded
// LRU so a flood of addresses cannot grow memory. Safe for concurrent use.
type clientLimiter struct {
	limit   rate.Limit
	burst   int
	trusted clientip.Trusted
	now     func() time.Time

	mu      sync.Mutex // serialises get-or-create so two requests share one bucket
	buckets *lru.Cache[netip.Addr, *rate.Limiter]
}

func newClientLimiter(cfg RateLimitConfig, trusted clientip.Trusted, now func() time.Time) (*clientLimiter, error) {
	if cfg.PerSecond == 0 {
		return nil, nil // disabled
	}
	cache, err := lru.New[netip.Addr, *rate.Limiter](cfg.MaxClients)
	if err != nil {
		return nil, err
	}
	l := &clientLimiter{
		limit:   rate.Limit(cfg.PerSecond),
		burst:   cfg.Burst,
		trusted: trusted,
		now:     now,
		buckets: cache,
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

// clientAddr returns the address a request is attributed to (package
// clientip).
func (l *clientLimiter) clientAddr(r *http.Request) netip.Addr {
	return l.trusted.Client(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}
