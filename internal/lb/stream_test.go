package lb_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// streamAcceptance runs the stream tests at the literal scale
// with the default timeouts: a WebSocket held 60 s with a message every
// 5 s, and a silent one closed past the 60 s idle timeout. Without it the
// same properties are proven with every timeout scaled down (total 2 s,
// server read and write 2 s, idle 1.5 s: held 6 s, a message every 0.5 s).
//
//	go test ./internal/lb -run 'TestWebSocket|TestEventStream' -v -args -lb.stream-acceptance
var streamAcceptance = flag.Bool("lb.stream-acceptance", false, "run the stream tests with the default timeouts (minutes)")

// streamScale is a stream test's timing.
type streamScale struct {
	idle, hold, every time.Duration
}

// streamTimes returns the stream tests' scale: the under
// -lb.stream-acceptance, else scaled down.
func streamTimes() streamScale {
	if *streamAcceptance {
		return streamScale{idle: lb.DefaultStreamIdle, hold: 60 * time.Second, every: 5 * time.Second}
	}
	return streamScale{idle: 1500 * time.Millisecond, hold: 6 * time.Second, every: 500 * time.Millisecond}
}

// streamConfig returns a balancer config for stream tests, and its scale:
// the defaults under -lb.stream-acceptance, else every timeout that could
// cut a stream scaled down so that the stream outlives each of them.
func streamConfig(up *upstream) (*lb.Config, streamScale) {
	cfg, sc := testConfig(up.lbInstance()), streamTimes()
	if *streamAcceptance {
		return cfg, sc
	}
	cfg.Timeouts.ResponseHeader = time.Second
	cfg.Timeouts.Total = 2 * time.Second
	cfg.Timeouts.StreamIdle = sc.idle
	cfg.Server.ReadTimeout = 2 * time.Second
	cfg.Server.WriteTimeout = 2 * time.Second
	return cfg, sc
}

// wsUpstream is an instance that accepts WebSockets on any path: "/echo"
// echoes each message, "/flood" sends 64 KiB messages until it cannot.
// Its handlers' ends are reported on ended.
func wsUpstream(t *testing.T) (*upstream, <-chan error) {
	t.Helper()
	ended := make(chan error, 4)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			ended <- err
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		if r.URL.Path == "/flood" {
			msg := make([]byte, 64<<10)
			for {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					ended <- err
					return
				}
			}
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				ended <- err
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				ended <- err
				return
			}
		}
	}))
	return up, ended
}

func dialWS(t *testing.T, b *balancer, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.url, "http")+path, &websocket.DialOptions{HTTPClient: b.client})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("dial %s: status %d", path, res.StatusCode)
	}
	c.SetReadLimit(1 << 20)
	return c
}

// wsCase is a WebSocket from the test through a balancer (streamConfig) to
// wsUpstream.
type wsCase struct {
	b     *balancer
	cfg   *lb.Config
	sc    streamScale
	c     *websocket.Conn // the client's side, closed when the test ends
	ended <-chan error    // the instance's handlers' ends
}

// startWS starts a wsUpstream and a balancer in front of it, and dials a
// WebSocket to path through the balancer.
func startWS(t *testing.T, path string) wsCase {
	t.Helper()
	up, ended := wsUpstream(t)
	cfg, sc := streamConfig(up)
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	c := dialWS(t, b, path)
	t.Cleanup(func() { c.CloseNow() })
	return wsCase{b: b, cfg: cfg, sc: sc, c: c, ended: ended}
}

// waitNoStreams waits for the balancer's streams gauge to come back to 0.
func (b *balancer) waitNoStreams(t *testing.T) {
	t.Helper()
	testkit.WaitFor(t, 2*time.Second, "streams gauge back to 0", func() bool { return scrape(t, b.admin+"/metrics", "spillway_lb_streams") == 0 })
}

// TestWebSocketOutlivesTotalTimeout: a WebSocket that stays busy (a
// message and its echo every `every`) stays up for `hold`, past the total
// timeout and the server's read and write timeouts, however long.
func TestWebSocketOutlivesTotalTimeout(t *testing.T) {
	t.Parallel()
	ws := startWS(t, "/echo")
	b, c, sc := ws.b, ws.c, ws.sc
	start := time.Now()
	tick := time.NewTicker(sc.every)
	defer tick.Stop()
	n := 0
	for time.Since(start) < sc.hold {
		<-tick.C
		n++
		msg := fmt.Sprintf("message %d at %s", n, time.Since(start).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), sc.every)
		err := c.Write(ctx, websocket.MessageText, []byte(msg))
		var got []byte
		if err == nil {
			_, got, err = c.Read(ctx)
		}
		cancel()
		if err != nil || string(got) != msg {
			t.Fatalf("%s after %s: echo %q, %v", msg, time.Since(start).Round(time.Millisecond), got, err)
		}
	}
	t.Logf("WebSocket held %s with a message every %s (%d echoed); total timeout %s, idle timeout %s",
		time.Since(start).Round(time.Millisecond), sc.every, n, ws.cfg.Timeouts.Total, sc.idle)
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("close: %v", err)
	}
	b.waitNoStreams(t)
	if c := b.Status().Counters.Requests; c["ok"] != 1 {
		t.Errorf("requests %v, want the upgrade counted once as ok", c)
	}
}

// TestWebSocketIdleTimeout: a WebSocket on which nothing passes either way
// is closed once the idle timeout is over, and the instance's side too.
func TestWebSocketIdleTimeout(t *testing.T) {
	t.Parallel()
	ws := startWS(t, "/echo")
	b, c, sc := ws.b, ws.c, ws.sc
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), sc.idle+10*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx) // nothing comes: the balancer closes it
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("silent WebSocket still open after %s (idle timeout %s)", took.Round(time.Millisecond), sc.idle)
	}
	t.Logf("silent WebSocket closed after %s (idle timeout %s): %v", took.Round(time.Millisecond), sc.idle, err)
	// The balancer's idle clock starts when it gets the 101, a little
	// before the client does; the margins are for a loaded machine (the
	// lower one still tells the idle timeout from the 1 s header timeout).
	if took < sc.idle-250*time.Millisecond || took > sc.idle+3*time.Second {
		t.Errorf("closed after %s, want about the idle timeout %s", took, sc.idle)
	}
	select {
	case <-ws.ended:
	case <-time.After(3 * time.Second):
		t.Error("the instance's side of the WebSocket is still open")
	}
	if n := scrape(t, b.admin+"/metrics", "spillway_lb_stream_idle_timeouts_total"); n != 1 {
		t.Errorf("spillway_lb_stream_idle_timeouts_total = %v, want 1", n)
	}
	b.waitNoStreams(t)
}

// TestWebSocketClientStopsReading: an instance that keeps sending to a
// client that stopped reading cannot hold the connection: once the
// balancer's write to the client has blocked for the idle timeout, both
// sides are closed.
func TestWebSocketClientStopsReading(t *testing.T) {
	t.Parallel()
	ws := startWS(t, "/flood") // and never read
	sc := ws.sc
	start := time.Now()
	select {
	case err := <-ws.ended:
		t.Logf("flooding instance cut off after %s (idle timeout %s): %v", time.Since(start).Round(time.Millisecond), sc.idle, err)
	case <-time.After(sc.idle + 10*time.Second):
		t.Fatalf("a client that stopped reading still holds the stream after %s", time.Since(start).Round(time.Millisecond))
	}
}

// sseUpstream is an instance that serves event streams: "/events" sends
// n events, one every `every`, and ends; "/silent" sends one and then
// nothing; "/flood" sends 64 KiB events until it cannot. Handlers report
// their end on ended.
func sseUpstream(t *testing.T, n int, every time.Duration) (*upstream, <-chan error) {
	t.Helper()
	ended := make(chan error, 4)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		rc := http.NewResponseController(w)
		send := func(data string) error {
			if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
				return err
			}
			return rc.Flush()
		}
		switch r.URL.Path {
		case "/events":
			for i := range n {
				if i > 0 {
					select {
					case <-time.After(every):
					case <-r.Context().Done():
						ended <- r.Context().Err()
						return
					}
				}
				if err := send(fmt.Sprint(i)); err != nil {
					ended <- err
					return
				}
			}
			ended <- nil
		case "/silent":
			if err := send("hello"); err != nil {
				ended <- err
				return
			}
			<-r.Context().Done()
			ended <- r.Context().Err()
		case "/flood":
			big := strings.Repeat("x", 64<<10)
			for {
				if err := send(big); err != nil {
					ended <- err
					return
				}
			}
		}
	}))
	return up, ended
}

// TestEventStream: Server-Sent Events outlive the total timeout and the
// server's read and write timeouts while events keep coming; a silent
// stream is closed past the idle timeout; a client that stops reading is
// cut off.
func TestEventStream(t *testing.T) {
	t.Parallel()
	sc := streamTimes()
	n := int(sc.hold/sc.every) + 1
	up, ended := sseUpstream(t, n, sc.every)
	cfg, _ := streamConfig(up)
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	get := func(path string) *http.Response {
		t.Helper()
		res, err := b.client.Get(b.url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("GET %s: %d %v", path, res.StatusCode, res.Header)
		}
		return res
	}

	t.Run("busy", func(t *testing.T) {
		start := time.Now()
		res := get("/events")
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		events := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events++
			}
		}
		took := time.Since(start)
		if err := sc.Err(); err != nil || events != n {
			t.Fatalf("after %s: %d events of %d, %v", took.Round(time.Millisecond), events, n, err)
		}
		if err := <-ended; err != nil {
			t.Errorf("instance: %v", err)
		}
		t.Logf("event stream: %d events over %s, complete; total timeout %s", events, took.Round(time.Millisecond), cfg.Timeouts.Total)
	})

	t.Run("silent", func(t *testing.T) {
		res := get("/silent")
		defer res.Body.Close()
		r := bufio.NewReader(res.Body)
		if line, err := r.ReadString('\n'); line != "data: hello\n" || err != nil {
			t.Fatalf("first event: %q %v", line, err)
		}
		start := time.Now()
		_, err := io.Copy(io.Discard, r) // nothing more comes: the balancer cuts it
		took := time.Since(start)
		t.Logf("silent event stream closed after %s (idle timeout %s): %v", took.Round(time.Millisecond), cfg.Timeouts.StreamIdle, err)
		if err == nil {
			t.Error("a stream cut by the idle timeout ended like a complete one")
		}
		if took < cfg.Timeouts.StreamIdle-250*time.Millisecond || took > cfg.Timeouts.StreamIdle+3*time.Second {
			t.Errorf("closed after %s, want about the idle timeout %s", took, cfg.Timeouts.StreamIdle)
		}
		select {
		case <-ended:
		case <-time.After(3 * time.Second):
			t.Error("the instance's side of the stream is still open")
		}
		if n := scrape(t, b.admin+"/metrics", "spillway_lb_stream_idle_timeouts_total"); n != 1 {
			t.Errorf("spillway_lb_stream_idle_timeouts_total = %v, want 1", n)
		}
	})

	t.Run("client_stops_reading", func(t *testing.T) {
		res := get("/flood") // and never read
		defer res.Body.Close()
		start := time.Now()
		select {
		case err := <-ended:
			t.Logf("flooding instance cut off after %s (idle timeout %s): %v", time.Since(start).Round(time.Millisecond), cfg.Timeouts.StreamIdle, err)
		case <-time.After(cfg.Timeouts.StreamIdle + 10*time.Second):
			t.Fatalf("a client that stopped reading still holds the stream after %s", time.Since(start).Round(time.Millisecond))
		}
	})
}
