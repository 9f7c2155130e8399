// Package clientip decides who a request's client is when proxies stand in
// between: the TCP peer, or, when the peer is a trusted proxy, the address
// that proxy forwarded in X-Forwarded-For — the rule of nginx's real_ip
// module with real_ip_recursive, Envoy's xff_num_trusted_hops and Rails'
// trusted proxies.
//
// The rule: start at the peer; while the address in hand is a trusted
// proxy, step one hop left in X-Forwarded-For (the rightmost entry is the
// one the nearest proxy added). The first untrusted address is the client.
// Entries left of it were written by someone we do not trust and are never
// believed. If every hop is trusted, the leftmost is the client; a
// malformed entry stops the walk at the last address read.
//
// A Trusted list is immutable once built and safe for concurrent use.
package clientip

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/spillway-dev/spillway/internal/field"
)

// Trusted is a list of proxies, as address prefixes, whose forwarding
// headers are believed. The zero value trusts nobody.
type Trusted struct {
	prefixes []netip.Prefix
}

// Private is the default trust of a service that sits behind a load
// balancer on the same host or private network: loopback, the RFC 1918
// ranges, IPv6 unique local addresses, and link-local addresses — the
// ranges Rails trusts by default. A client on one of these networks can
// claim any address in X-Forwarded-For; an instance reachable from the
// internet without a proxy in front should trust none (an empty list).
var Private = []string{
	"127.0.0.0/8", "::1/128",
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"fc00::/7",
	"169.254.0.0/16", "fe80::/10",
}

// Parse builds a Trusted list from IP addresses and CIDR prefixes
// ("10.0.0.0/8", "192.0.2.7", "::1"). The error of a bad entry is a
// *field.Error whose path is its index ("[1]").
func Parse(list []string) (Trusted, error) {
	var t Trusted
	for i, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return Trusted{}, field.New(fmt.Sprintf("[%d]", i), s, "not an IP address or CIDR prefix")
		}
		t.prefixes = append(t.prefixes, p)
	}
	return t, nil
}

// MustParse is Parse for lists known to be valid, such as Private.
func MustParse(list []string) Trusted {
	t, err := Parse(list)
	if err != nil {
		panic("clientip: " + err.Error())
	}
	return t
}

// ParsePrefix parses a CIDR prefix or a single address (a /32 or /128).
// IPv4-mapped IPv6 addresses are unmapped.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Empty reports whether t trusts nobody.
func (t Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether a is a trusted proxy.
func (t Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client of a request that came from peer (its
// RemoteAddr) with the given X-Forwarded-For header values, by the rule in
// the package comment. An unparsable peer gives the zero Addr.
func (t Trusted) Client(remoteAddr string, xff []string) netip.Addr {
	addr := Peer(remoteAddr)
	if !addr.IsValid() || !t.Contains(addr) {
		return addr
	}
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for rest != "" {
			var hop string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, hop = rest[:j], rest[j+1:]
			} else {
				rest, hop = "", rest
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, err := parseHop(hop)
			if err != nil {
				return addr // stop at the last address we could read
			}
			addr = a
			if !t.Contains(a) {
				return a
			}
		}
	}
	return addr
}

// parseHop parses one X-Forwarded-For entry: an address, optionally with
// a port ("192.0.2.1:4711", "[2001:db8::1]:4711"), as some proxies write.
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// Peer parses a RemoteAddr ("host:port", or a bare host) into an address;
// the zero Addr if it is neither.
func Peer(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
