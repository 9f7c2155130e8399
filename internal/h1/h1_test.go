package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// get sends a GET to url through t and returns status and body.
func get(t *testing.T, tr http.RoundTripper, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return res.StatusCode, string(b)
}

// countConns counts the connections a test server accepts.
func countConns(s *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestKeepAliveAndBodies(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "he")
			w.(http.Flusher).Flush()
			io.WriteString(w, "llo")
			w.Header().Set("X-Sum", "42")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s %d %s", r.Method, r.Host, r.ContentLength, b)
		}
	}))
	conns := countConns(s)
	s.Start()
	defer s.Close()
	tr := &Transport{}
	defer tr.CloseIdleConnections()

	for range 3 {
		if code, b := get(t, tr, s.URL+"/length"); code != 200 || b != "hello" {
			t.Errorf("/length = %d %q", code, b)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/chunked", nil)
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "hello" || res.Trailer.Get("X-Sum") != "42" {
		t.Errorf("/chunked = %q, trailer %v", b, res.Trailer)
	}
	if code, b := get(t, tr, s.URL+"/empty"); code != 204 || b != "" {
		t.Errorf("/empty = %d %q", code, b)
	}
	req, _ = http.NewRequest(http.MethodHead, s.URL+"/length", nil)
	res, err = tr.RoundTrip(req)
	if err != nil || res.ContentLength != 5 {
		t.Fatalf("HEAD = %v, %v", res, err)
	}
	res.Body.Close()
	// A body, by length and chunked; the Host of the request, not the URL's.
	for _, cl := range []int64{11, -1} {
		req, _ = http.NewRequest(http.MethodPost, s.URL+"/echo", io.NopCloser(strings.NewReader("hello world")))
		req.ContentLength = cl
		req.Host = "example.test"
		res, err = tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if want := fmt.Sprintf("POST example.test %d hello world", cl); string(b) != want {
			t.Errorf("echo = %q, want %q", b, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for sequential requests, want 1 kept alive", n)
	}
}

func TestConnectionClose(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	}))
	conns := countConns(s)
	s.Start()
	defer s.Close()
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	get(t, tr, s.URL+"/close")
	get(t, tr, s.URL+"/")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	req.Close = true
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(res.Body)
	res.Body.Close()
	get(t, tr, s.URL+"/")
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3: closed after the instance's close and the request's", n)
	}
}

// rawServer serves each connection with serve, on a loopback port.
func rawServer(t *testing.T, serve func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	return "http://" + ln.Addr().String()
}

func TestReadToClose(t *testing.T) {
	url := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		http.ReadRequest(r)
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil the end")
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	if code, b := get(t, tr, url); code != 200 || b != "until the end" {
		t.Errorf("= %d %q", code, b)
	}
}

func TestInformational(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	}))
	defer s.Close()
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	var got []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, fmt.Sprint(code, " ", h.Get("Link")))
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "final" || len(got) != 1 || got[0] != "103 </a.css>; rel=preload" {
		t.Errorf("= %d %q, 1xx %q", res.StatusCode, b, got)
	}
}

func TestUpgrade(t *testing.T) {
	url := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		http.ReadRequest(r)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhi ")
		line, _ := r.ReadString('\n')
		io.WriteString(c, line)
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := res.Body.(io.ReadWriteCloser)
	if res.StatusCode != 101 || !ok {
		t.Fatalf("= %d, body %T", res.StatusCode, res.Body)
	}
	defer rwc.Close()
	io.WriteString(rwc, "ping\n")
	b := make([]byte, 8)
	if _, err := io.ReadFull(rwc, b); err != nil || string(b) != "hi ping\n" {
		t.Errorf("read %q, %v", b, err)
	}
}

func TestExpectContinue(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusExpectationFailed)
			return
		}
		b, _ := io.ReadAll(r.Body) // net/http's server sends the 100 here
		fmt.Fprintf(w, "got %s", b)
	}))
	conns := countConns(s)
	s.Start()
	defer s.Close()
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	send := func(path string) (int, string, bool) {
		read := false
		body := &readFlag{r: strings.NewReader("payload"), read: &read}
		req, _ := http.NewRequest(http.MethodPut, s.URL+path, body)
		req.ContentLength = 7
		req.Header.Set("Expect", "100-continue")
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), read
	}
	if code, b, read := send("/"); code != 200 || b != "got payload" || !read {
		t.Errorf("after 100: %d %q, body read %v", code, b, read)
	}
	if code, _, read := send("/refuse"); code != 417 || read {
		t.Errorf("refused: %d, body read %v; want 417 with the body never read", code, read)
	}
	if code, b, _ := send("/"); code != 200 || b != "got payload" {
		t.Errorf("after a refusal: %d %q", code, b)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the refused one's closed: its body was not sent)", n)
	}
}

type readFlag struct {
	r    io.Reader
	read *bool
}

func (f *readFlag) Read(p []byte) (int, error) { *f.read = true; return f.r.Read(p) }
func (f *readFlag) Close() error               { return nil }

func TestExpectContinueSilentInstance(t *testing.T) {
	// An instance that never says 100 (HTTP/1.0 style) gets the body
	// after ExpectContinueTimeout.
	url := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	tr := &Transport{ExpectContinueTimeout: 50 * time.Millisecond}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader("late"))
	req.Header.Set("Expect", "100-continue")
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "late" {
		t.Errorf("= %q", b)
	}
}

func TestStaleIdleConnection(t *testing.T) {
	// The instance closes each connection after one response, without
	// saying so: the next request on it finds it closed.
	var accepted atomic.Int32
	url := rawServer(t, func(c net.Conn, r *bufio.Reader) {
		accepted.Add(1)
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	defer func(d time.Duration) { checkIdleAfter = d }(checkIdleAfter)
	// Reused unchecked: a GET finds the connection closed, and is sent
	// again on a new one.
	checkIdleAfter = time.Hour
	for range 3 {
		if code, _ := get(t, tr, url); code != 200 {
			t.Fatalf("GET = %d", code)
		}
		time.Sleep(20 * time.Millisecond) // the close arrives
	}
	// A POST is not sent again once written (the instance may have had
	// it), but the connection is checked first (the default).
	checkIdleAfter = 0
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("POST %d on a checked connection: %v", i, err)
		}
		io.ReadAll(res.Body)
		res.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if n := accepted.Load(); n < 8 {
		t.Errorf("%d connections for 8 requests on connections closed after each", n)
	}
}

func TestCancel(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(release)
	tr := &Transport{}
	defer tr.CloseIdleConnections()

	cause := errors.New("the caller's timeout")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/head", nil)
	start := time.Now()
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, cause) {
		t.Errorf("cancelled while waiting for the head: %v, want the cause", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	ctx, cancel2 := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/body", nil)
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	io.ReadFull(res.Body, b)
	time.AfterFunc(50*time.Millisecond, cancel2)
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while reading the body: %v, want context.Canceled", err)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", 8<<10))
	}))
	defer s.Close()
	tr := &Transport{MaxResponseHeaderBytes: 4 << 10}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, errHeaderTooLarge) {
		t.Errorf("= %v, want the head too large", err)
	}
}

func TestIdlePool(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") }))
	conns := countConns(s)
	s.Start()
	defer s.Close()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tr := &Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute, Now: clock}
	defer tr.CloseIdleConnections()
	// Four at once: four connections, two kept.
	var held []*http.Response
	for range 4 {
		req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, res)
	}
	for _, res := range held {
		io.ReadAll(res.Body)
		res.Body.Close()
	}
	if n := len(tr.hosts[s.Listener.Addr().String()].idle); n != 2 {
		t.Errorf("%d idle, want 2", n)
	}
	get(t, tr, s.URL)
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections, want 4 (one reused)", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	get(t, tr, s.URL)
	if n := conns.Load(); n != 5 {
		t.Errorf("%d connections, want 5: idle ones past the timeout are not reused", n)
	}
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	tr := &Transport{}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr, nil)
	_, err := tr.RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Errorf("= %v, want the dialer's *net.OpError", err)
	}
}

func TestTLS(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	s.EnableHTTP2 = true // ALPN offers h2; the client asks for http/1.1 only
	conns := countConns(s)
	s.StartTLS()
	defer s.Close()
	cfg := s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	tr := &Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	for range 2 {
		if code, b := get(t, tr, s.URL); code != 200 || b != "HTTP/1.1" {
			t.Errorf("= %d %q", code, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d TLS connections, want 1", n)
	}
	bad := &Transport{TLSClientConfig: &tls.Config{}}
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	if _, err := bad.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func TestHasToken(t *testing.T) {
	for _, tc := range []struct {
		v    []string
		want bool
	}{
		{[]string{"100-continue"}, true},
		{[]string{"100-Continue"}, true},
		{[]string{"foo, 100-continue "}, true},
		{[]string{"100-continued"}, false},
		{nil, false},
	} {
		if got := hasToken(tc.v, "100-continue"); got != tc.want {
			t.Errorf("hasToken(%q) = %v", tc.v, got)
		}
	}
}
