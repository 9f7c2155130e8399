package lb_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/spillway-dev/spillway/internal/lb"
)

// forwardedSeen is what an instance saw of a request's forwarding
// headers.
type forwardedSeen struct {
	XFF, Proto, Host, Forwarded string
}

// startRecorder is an instance that reports each request's forwarding
// headers on the returned channel.
func startRecorder(t *testing.T) (*upstream, chan forwardedSeen) {
	got := make(chan forwardedSeen, 16)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- forwardedSeen{strings.Join(r.Header.Values("X-Forwarded-For"), "|"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Forwarded-Host"), strings.Join(r.Header.Values("Forwarded"), "|")}
		io.WriteString(w, "ok")
	}))
	return up, got
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	claims := map[string]string{
		"X-Forwarded-For":   "203.0.113.9",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "login.example",
		"Forwarded":         "for=203.0.113.9;proto=https",
	}
	tests := []struct {
		name    string
		trusted []string
		claims  bool
		want    forwardedSeen
	}{
		{"untrusted peer: claims replaced", nil, true,
			forwardedSeen{XFF: "127.0.0.1", Proto: "http", Host: "lb.test"}},
		{"untrusted peer, no claims", nil, false,
			forwardedSeen{XFF: "127.0.0.1", Proto: "http", Host: "lb.test"}},
		{"peer outside the trusted ranges", []string{"10.0.0.0/8"}, true,
			forwardedSeen{XFF: "127.0.0.1", Proto: "http", Host: "lb.test"}},
		{"trusted peer: chain kept and appended", []string{"127.0.0.0/8"}, true,
			forwardedSeen{XFF: "203.0.113.9, 127.0.0.1", Proto: "https", Host: "login.example",
				Forwarded: "for=203.0.113.9;proto=https|for=127.0.0.1;host=lb.test;proto=http"}},
		{"trusted peer without claims", []string{"127.0.0.1"}, false,
			forwardedSeen{XFF: "127.0.0.1", Proto: "http", Host: "lb.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, got := startRecorder(t)
			cfg := testConfig(up.lbInstance())
			cfg.TrustedProxies = tt.trusted
			b := startLB(t, cfg, nil)
			b.waitRoutable(t, 1)
			req, _ := http.NewRequest("GET", b.url+"/", nil)
			req.Host = "lb.test"
			if tt.claims {
				for k, v := range claims {
					req.Header.Set(k, v)
				}
			}
			if r := do(b.client, req); r.status != 200 {
				t.Fatalf("%d %v", r.status, r.err)
			}
			if s := <-got; s != tt.want {
				t.Errorf("instance saw %+v, want %+v", s, tt.want)
			}
		})
	}
}

func TestForwardedElementQuoting(t *testing.T) {
	t.Parallel()
	up, got := startRecorder(t)
	cfg := testConfig(up.lbInstance())
	cfg.TrustedProxies = []string{"127.0.0.1"}
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	req, _ := http.NewRequest("GET", b.url+"/", nil) // Host has a port: quoted
	req.Header.Set("Forwarded", `for="[2001:db8::1]:4711"`)
	if r := do(b.client, req); r.status != 200 {
		t.Fatalf("%d %v", r.status, r.err)
	}
	s := <-got
	if want := `for="[2001:db8::1]:4711"|for=127.0.0.1;host="` + strings.TrimPrefix(b.url, "http://") + `";proto=http`; s.Forwarded != want {
		t.Errorf("Forwarded = %q, want %q", s.Forwarded, want)
	}
}

// proxiedRaw sends prefix (a PROXY header, or nothing) and a GET on a new
// connection to addr and returns the status, or an error if the balancer
// closed the connection instead of answering.
func proxiedRaw(t *testing.T, addr string, prefix []byte) (int, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(append(prefix, "GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n"...)); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

func v2Header(t *testing.T, src string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP(src), Port: 5555}, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 80})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	v1 := []byte("PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\n")
	tests := []struct {
		name    string
		mode    string
		trusted []string
		prefix  []byte
		wantXFF string // "" : the connection is closed without an answer
	}{
		{"required, v1", lb.ProxyProtocolRequired, nil, v1, "198.51.100.7"},
		{"required, v2", lb.ProxyProtocolRequired, nil, v2Header(t, "2001:db8::7"), "2001:db8::7"},
		{"required, no header", lb.ProxyProtocolRequired, nil, nil, ""},
		{"required, peer not trusted", lb.ProxyProtocolRequired, []string{"10.0.0.0/8"}, v1, ""},
		{"required, trusted peer", lb.ProxyProtocolRequired, []string{"127.0.0.1"}, v1, "198.51.100.7"},
		{"optional, header", lb.ProxyProtocolOptional, nil, v1, "198.51.100.7"},
		{"optional, no header", lb.ProxyProtocolOptional, nil, nil, "127.0.0.1"},
		{"optional, header from an untrusted peer", lb.ProxyProtocolOptional, []string{"10.0.0.0/8"}, v1, ""},
		{"optional, untrusted peer without header", lb.ProxyProtocolOptional, []string{"10.0.0.0/8"}, nil, "127.0.0.1"},
		{"off: a header is garbage", lb.ProxyProtocolOff, nil, v1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up, got := startRecorder(t)
			cfg := testConfig(up.lbInstance())
			cfg.Server.ProxyProtocol = tt.mode
			cfg.TrustedProxies = tt.trusted
			b := startLB(t, cfg, nil)
			b.waitRoutable(t, 1)
			code, err := proxiedRaw(t, strings.TrimPrefix(b.url, "http://"), tt.prefix)
			if tt.wantXFF == "" {
				if err == nil && code < 400 {
					t.Fatalf("answered %d, want the connection refused", code)
				}
				return
			}
			if err != nil || code != 200 {
				t.Fatalf("%d %v", code, err)
			}
			if s := <-got; s.XFF != tt.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", s.XFF, tt.wantXFF)
			}
		})
	}
}
