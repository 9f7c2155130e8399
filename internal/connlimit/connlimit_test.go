package connlimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCapRefusesFastAndFrees(t *testing.T) {
	ln := testkit.Listen(t)
	reg := prometheus.NewRegistry()
	l, err := New(ln, 2, Options{Registerer: reg, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	get := func(c net.Conn) (int, string, error) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0, "", err
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("X-Spillway-Reason") + " " + string(b), nil
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	held := []net.Conn{dial(), dial()}
	for _, c := range held {
		if code, _, err := get(c); code != 200 || err != nil {
			t.Fatalf("under the cap: %d %v", code, err)
		}
	}
	over := dial()
	start := time.Now()
	code, body, err := get(over)
	over.Close()
	if code != 503 || !strings.Contains(body, "overloaded") || err != nil {
		t.Fatalf("over the cap: %d %q %v", code, body, err)
	}
	t.Logf("refused in %v", time.Since(start))
	if got := testutil.ToFloat64(l.refused); got != 1 {
		t.Errorf("refused counter %v", got)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the server notices the close
	}
	again := dial()
	defer again.Close()
	if code, _, err := get(again); code != 200 || err != nil {
		t.Fatalf("after one closed: %d %v", code, err)
	}
	held[1].Close()
}

func TestCapFor(t *testing.T) {
	for nofile, want := range map[uint64]int{0: 1, 64: 1, 128: 32, 256: 96, 1024: 480, 1 << 20: (1<<20 - 64) / 2, 1 << 40: 1 << 20} {
		if got := capFor(nofile); got != want {
			t.Errorf("capFor(%d) = %d, want %d", nofile, got, want)
		}
	}
}
