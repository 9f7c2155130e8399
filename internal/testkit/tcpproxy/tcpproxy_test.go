package tcpproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/tcpproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo serves an echo server until the test ends.
func echo(t *testing.T) string {
	return testkit.Serve(t, func(ctx context.Context, ln net.Listener) error {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		for {
			c, err := ln.Accept()
			if err != nil {
				return nil
			}
			go func() { // ends when the proxy closes its side
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	})
}

// roundTrip writes msg and reads it back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return read(c, len(msg), d)
}

func read(c net.Conn, n int, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

// TestCutRestore: bytes flow; cut, nothing passes either way on an open
// connection and a new one is held, yet none is closed; restored, what
// was sent meanwhile arrives.
func TestCutRestore(t *testing.T) {
	p := tcpproxy.Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "before", time.Second); err != nil || got != "before" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}

	p.Cut()
	if _, err := roundTrip(c, "during", 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("cut: read error %v, want a timeout", err)
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, "new", 100*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("cut, new connection: read error %v, want a timeout", err)
	}

	p.Restore()
	if got, err := read(c, len("during"), time.Second); err != nil || got != "during" {
		t.Fatalf("restored: %q, %v; want what was sent during the cut", got, err)
	}
	if got, err := read(c2, len("new"), time.Second); err != nil || got != "new" {
		t.Fatalf("restored, new connection: %q, %v", got, err)
	}
	if got, err := roundTrip(c, "after", time.Second); err != nil || got != "after" {
		t.Fatalf("after: %q, %v", got, err)
	}
	p.Close()
	if _, err := read(c, 1, time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("closed proxy: read error %v, want the connection closed", err)
	}
}
