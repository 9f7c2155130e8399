package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// dnsServer is a small authoritative DNS server on a loopback UDP port
// that answers SRV, A and AAAA questions from tables the test changes, or
// SERVFAIL to everything while failing is set. Unknown names are
// NXDOMAIN.
type dnsServer struct {
	addr    string
	queries atomic.Int64

	mu   sync.Mutex
	srv  map[string][]net.SRV // lower-case name with the final dot
	ips  map[string][]netip.Addr
	fail bool
	// The resolvers' connections, closed with the server (and none made
	// after): a lookup still running when the test ends fails at once
	// instead of waiting out the resolver's timeout in goroutines that
	// goleak then finds.
	conns   map[net.Conn]struct{}
	stopped bool
}

// startDNS starts a dnsServer that runs until the test ends.
func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{addr: pc.LocalAddr().String(), srv: map[string][]net.SRV{}, ips: map[string][]netip.Addr{}, conns: map[net.Conn]struct{}{}}
	testkit.Go(t, "DNS server", 5*time.Second, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { pc.Close(); s.closeConns() })
		defer stop()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return nil
				}
				return err
			}
			if resp, ok := s.answer(buf[:n]); ok {
				_, _ = pc.WriteTo(resp, from) // a lost answer is a resolver retry
			}
		}
	})
	return s
}

// resolver returns a Go resolver whose every query goes to s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "udp", s.addr)
			if err != nil {
				return nil, err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.stopped {
				c.Close()
				return nil, net.ErrClosed
			}
			s.conns[c] = struct{}{}
			return c, nil
		},
	}
}

// closeConns closes the resolvers' connections and refuses new ones.
func (s *dnsServer) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

// setSRV sets name's SRV records; "target:port" each.
func (s *dnsServer) setSRV(name string, recs ...string) {
	var srvs []net.SRV
	for _, r := range recs {
		host, port, _ := net.SplitHostPort(r)
		p, _ := netip.ParseAddrPort("0.0.0.0:" + port)
		srvs = append(srvs, net.SRV{Target: host, Port: p.Port(), Weight: 10})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(srvs) == 0 {
		delete(s.srv, canonName(name))
		return
	}
	s.srv[canonName(name)] = srvs
}

// setIP sets name's addresses (A and AAAA records).
func (s *dnsServer) setIP(name string, addrs ...string) {
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ips[canonName(name)] = as
}

func (s *dnsServer) setFail(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func canonName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) + "." }

// answer builds the response to one query; false drops it.
func (s *dnsServer) answer(query []byte) ([]byte, bool) {
	s.queries.Add(1)
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := canonName(q.Name.String())

	s.mu.Lock()
	fail := s.fail
	srvs := s.srv[name]
	ips, known := s.ips[name]
	s.mu.Unlock()

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	switch {
	case fail:
		rh.RCode = dnsmessage.RCodeServerFailure
	case len(srvs) == 0 && !known:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if rh.RCode == dnsmessage.RCodeSuccess {
		rrh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch q.Type {
		case dnsmessage.TypeSRV:
			for _, r := range srvs {
				target, err := dnsmessage.NewName(canonName(r.Target))
				if err != nil {
					return nil, false
				}
				_ = b.SRVResource(rrh, dnsmessage.SRVResource{Priority: r.Priority, Weight: r.Weight, Port: r.Port, Target: target})
			}
		case dnsmessage.TypeA:
			for _, a := range ips {
				if a.Is4() {
					_ = b.AResource(rrh, dnsmessage.AResource{A: a.As4()})
				}
			}
		case dnsmessage.TypeAAAA:
			for _, a := range ips {
				if a.Is6() {
					_ = b.AAAAResource(rrh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
		}
	}
	resp, err := b.Finish()
	return resp, err == nil
}
