package clientip

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClient(t *testing.T) {
	tr := MustParse([]string{"10.0.0.0/8", "127.0.0.1"})
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct", "192.0.2.1:1234", nil, "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:1234", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted proxy", "127.0.0.1:5", []string{"203.0.113.9"}, "203.0.113.9"},
		{"trusted proxy without header", "127.0.0.1:5", nil, "127.0.0.1"},
		{"rightmost untrusted", "127.0.0.1:5", []string{"198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"spoofed left part ignored", "127.0.0.1:5", []string{"1.1.1.1", "203.0.113.9"}, "203.0.113.9"},
		{"several header lines", "127.0.0.1:5", []string{"1.1.1.1, 10.0.0.2", "10.0.0.3"}, "1.1.1.1"},
		{"all trusted: leftmost", "127.0.0.1:5", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"malformed hop", "127.0.0.1:5", []string{"garbage"}, "127.0.0.1"},
		{"malformed hop after a trusted one", "127.0.0.1:5", []string{"garbage, 10.0.0.9"}, "10.0.0.9"},
		{"empty entries skipped", "127.0.0.1:5", []string{"203.0.113.9,, "}, "203.0.113.9"},
		{"hop with port", "127.0.0.1:5", []string{"203.0.113.9:4711"}, "203.0.113.9"},
		{"v6 hop with port", "127.0.0.1:5", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"mapped v4 peer", "[::ffff:192.0.2.7]:1", nil, "192.0.2.7"},
		{"mapped v4 trusted peer", "[::ffff:127.0.0.1]:1", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"bare peer", "192.0.2.1", nil, "192.0.2.1"},
		{"unparsable peer", "@", []string{"203.0.113.9"}, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tr.Client(tt.remote, tt.xff); got.String() != tt.want {
				t.Errorf("Client = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrivateTrustsLoopbackAndPrivateRanges(t *testing.T) {
	p := MustParse(Private)
	for _, a := range []string{"127.0.0.1", "127.0.0.4", "::1", "10.1.2.3", "172.31.0.1", "192.168.1.1", "fd00::1", "::ffff:10.0.0.1"} {
		if !p.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Private does not contain %s", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "172.32.0.1", "2001:db8::1", "100.64.0.1"} {
		if p.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Private contains %s", a)
		}
	}
	// Behind two chained proxies on loopback, the client on loopback is
	// the leftmost hop.
	if got := p.Client("127.0.0.1:9", []string{"127.0.0.3, 127.0.0.1"}); got.String() != "127.0.0.3" {
		t.Errorf("chained on loopback: %v", got)
	}
}

func TestParse(t *testing.T) {
	if _, err := Parse([]string{"10.0.0.0/8", "::1", "::ffff:10.0.0.0/104"}); err != nil {
		t.Fatal(err)
	}
	tr := MustParse([]string{"::ffff:10.0.0.0/104"})
	if !tr.Contains(netip.MustParseAddr("10.9.9.9")) {
		t.Error("a mapped prefix does not match its IPv4 addresses")
	}
	_, err := Parse([]string{"127.0.0.1", "not-an-ip"})
	if err == nil || err.Error() != `[1]: "not-an-ip": not an IP address or CIDR prefix` {
		t.Errorf("Parse error = %v", err)
	}
	if !(Trusted{}).Empty() || (Trusted{}).Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("the zero Trusted trusts somebody")
	}
}

// FuzzClient: X-Forwarded-For is outside input. Client never panics, and
// what it returns is the peer or an address that appears in the header.
func FuzzClient(f *testing.F) {
	f.Add("127.0.0.1:5", "198.51.100.1, 203.0.113.9, 10.1.2.3")
	f.Add("10.0.0.1:5", "[2001:db8::1]:4711,,garbage")
	f.Add("[::ffff:127.0.0.1]:1", "::ffff:203.0.113.9")
	tr := MustParse([]string{"10.0.0.0/8", "127.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := tr.Client(remote, []string{xff})
		if !got.IsValid() || got == Peer(remote) {
			return
		}
		for _, h := range strings.Split(xff, ",") {
			if a, err := parseHop(strings.TrimSpace(h)); err == nil && a == got {
				return
			}
		}
		t.Fatalf("Client(%q, %q) = %v: neither the peer nor a hop", remote, xff, got)
	})
}
