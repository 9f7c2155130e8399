package lb

import (
	"fmt"
	"net"
	"net/http/httputil"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/spillway-dev/spillway/internal/clientip"
)

// Values of server.proxy_protocol.
const (
	ProxyProtocolOff      = "off"
	ProxyProtocolOptional = "optional"
	ProxyProtocolRequired = "required"
)

// setXForwarded writes the forwarding headers of an outgoing request.
// ReverseProxy has removed the client's X-Forwarded-*/Forwarded from
// pr.Out before Rewrite; pr.In still has them.
//
// From a trusted proxy (FileConfig.TrustedProxies) the chain is kept: the
// peer is appended to X-Forwarded-For, X-Forwarded-Proto and
// X-Forwarded-Host pass unchanged (filled in when absent), and a Forwarded
// header gets an element for this hop. From any other peer the client's
// claims are replaced: X-Forwarded-For is the peer, X-Forwarded-Host the
// request's Host, X-Forwarded-Proto the scheme the client used here, and
// Forwarded is dropped — so a client cannot forge an address the
// instances believe.
//
// The common path (an untrusted peer) allocates one slice, as
// ProxyRequest.SetXForwarded would allocate three; the Proto values are
// shared read-only slices: nothing downstream writes into header values.
func (s *settings) setXForwarded(pr *httputil.ProxyRequest) {
	in, h := pr.In, pr.Out.Header
	proto := hdrHTTP
	if in.TLS != nil {
		proto = hdrHTTPS
	}
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		ip = ""
	}
	if ip != "" && !s.trusted.Empty() && s.trusted.Contains(clientip.Peer(in.RemoteAddr)) {
		fwd := in.Header
		if prior := fwd["X-Forwarded-For"]; len(prior) > 0 {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			h["X-Forwarded-For"] = []string{ip}
		}
		if v := fwd["X-Forwarded-Proto"]; len(v) > 0 {
			h["X-Forwarded-Proto"] = v
		} else {
			h["X-Forwarded-Proto"] = proto
		}
		if v := fwd["X-Forwarded-Host"]; len(v) > 0 {
			h["X-Forwarded-Host"] = v
		} else {
			h["X-Forwarded-Host"] = []string{in.Host}
		}
		if v := fwd["Forwarded"]; len(v) > 0 {
			h["Forwarded"] = append(v[:len(v):len(v)], forwardedElement(ip, in.Host, proto[0]))
		}
		return
	}
	if ip != "" {
		v := []string{ip, in.Host}
		h["X-Forwarded-For"], h["X-Forwarded-Host"] = v[0:1:1], v[1:2:2]
	} else {
		h["X-Forwarded-Host"] = []string{in.Host}
	}
	h["X-Forwarded-Proto"] = proto
}

// forwardedElement is this hop's RFC 7239 element: for, host and proto,
// each quoted when it is not a plain token (an IPv6 address, a host with
// a port).
func forwardedElement(ip, host, proto string) string {
	var b strings.Builder
	b.WriteString("for=")
	if strings.Contains(ip, ":") {
		b.WriteString(`"[` + ip + `]"`)
	} else {
		b.WriteString(ip)
	}
	if host != "" {
		b.WriteString(";host=")
		writeForwardedValue(&b, host)
	}
	b.WriteString(";proto=" + proto)
	return b.String()
}

func writeForwardedValue(b *strings.Builder, v string) {
	token := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			token = false
			break
		}
	}
	if token {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

// proxyProtocolListener wraps ln so each connection's PROXY header (v1 or
// v2) is read, within timeout, before the HTTP server sees a byte; the
// connection's RemoteAddr is then the client the header names. mode is
// server.proxy_protocol; trusted returns the trusted_proxies in force
// (a reload may change them), who alone may send a header (anyone when
// the list is empty). It returns ln itself when mode is off.
func proxyProtocolListener(ln net.Listener, mode string, trusted func() clientip.Trusted, timeout time.Duration) net.Listener {
	if mode == ProxyProtocolOff || mode == "" {
		return ln
	}
	allowed, other := proxyproto.USE, proxyproto.REJECT
	if mode == ProxyProtocolRequired {
		allowed = proxyproto.REQUIRE
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: timeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			t := trusted()
			if t.Empty() {
				return allowed, nil
			}
			ap, err := netip.ParseAddrPort(o.Upstream.String())
			if err == nil && t.Contains(ap.Addr()) {
				return allowed, nil
			}
			if mode == ProxyProtocolRequired {
				// Every connection must carry a header, and this peer may
				// not send one: refuse it at once.
				return proxyproto.REJECT, fmt.Errorf("%w: %s is not in trusted_proxies", proxyproto.ErrInvalidUpstream, o.Upstream)
			}
			return other, nil
		},
	}
}
