package lb_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/httpapi"
)

// accessLine is one line of the access log, as docs/LB.md describes it.
type accessLine struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	Reason    string    `json:"reason"`
	Instance  string    `json:"instance"`
	Attempts  int       `json:"attempts"`
	Duration  float64   `json:"duration"`
	Bytes     int64     `json:"bytes"`
	Client    string    `json:"client"`
}

func readAccessLog(t *testing.T, path string) []accessLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []accessLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l accessLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// idRecorder is an upstream that answers "hello" and keeps the
// X-Request-Id of every request it got, by path.
type idRecorder struct {
	mu  sync.Mutex
	ids map[string][]string
}

func (u *idRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	if u.ids == nil {
		u.ids = map[string][]string{}
	}
	u.ids[r.URL.Path] = append(u.ids[r.URL.Path], r.Header[httpapi.RequestIDHeader]...)
	u.mu.Unlock()
	io.WriteString(w, "hello")
}

func (u *idRecorder) got(path string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ids[path]
}

// A real balancer with the access log on: a proxied 200 and a shed 503
// each get one line with the right fields, and its request id is the one
// the client sent or, when it sent none (or a bad one), the one the
// balancer made: on the answer, at the instance and in the line alike.
func TestAccessLogAndRequestID(t *testing.T) {
	up := &idRecorder{}
	inst := startUpstream(t, up)
	path := filepath.Join(t.TempDir(), "access.log")
	cfg := testConfig(inst.lbInstance())
	cfg.AccessLog.Path = path
	cfg.AccessLog.FlushInterval = 10 * time.Millisecond
	lbt := startLB(t, cfg, nil)
	lbt.waitRoutable(t, 1)

	get := func(p, id string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", lbt.url+p, nil)
		if id != "" {
			req.Header.Set(httpapi.RequestIDHeader, id)
		}
		resp, err := lbt.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n := len(resp.Header.Values(httpapi.RequestIDHeader)); n != 1 {
			t.Errorf("%s: %d X-Request-Id values, want 1", p, n)
		}
		return resp
	}
	r1 := get("/kept", "client-id-1")
	r2 := get("/made", "")
	r3 := get("/bad", "bad id with spaces")
	if code, body := lbt.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, true); code != 200 {
		t.Fatal(code, body)
	}
	r4 := get("/shed", "")
	lbt.stop()
	<-lbt.done // the last lines are written at stop

	if got := r1.Header.Get(httpapi.RequestIDHeader); got != "client-id-1" {
		t.Errorf("kept: answer's id %q, want the client's", got)
	}
	for _, r := range []*http.Response{r2, r3, r4} {
		if id := r.Header.Get(httpapi.RequestIDHeader); len(id) != 33 {
			t.Errorf("%s: answer's id %q, want one the balancer made", r.Request.URL.Path, id)
		}
	}
	for p, r := range map[string]*http.Response{"/kept": r1, "/made": r2, "/bad": r3} {
		if got := up.got(p); len(got) != 1 || got[0] != r.Header.Get(httpapi.RequestIDHeader) {
			t.Errorf("%s: the instance got ids %q, want [%q]", p, got, r.Header.Get(httpapi.RequestIDHeader))
		}
	}
	if r4.StatusCode != 503 || r4.Header.Get(health.ReasonHeader) != health.ReasonDependencyUnavailable {
		t.Fatalf("shed: %d %q", r4.StatusCode, r4.Header.Get(health.ReasonHeader))
	}

	lines := readAccessLog(t, path)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4: %+v", len(lines), lines)
	}
	for i, r := range []*http.Response{r1, r2, r3, r4} {
		l := lines[i]
		if l.RequestID != r.Header.Get(httpapi.RequestIDHeader) || l.Path != r.Request.URL.Path || l.Method != "GET" ||
			l.Status != r.StatusCode || l.Client == "" || l.Duration <= 0 || l.Duration > 5 || time.Since(l.Time) > time.Minute {
			t.Errorf("line %d: %+v, for the answer %d %v", i, l, r.StatusCode, r.Header)
		}
		proxied := i < 3
		switch {
		case proxied && (l.Instance != inst.svc || l.Attempts != 1 || l.Reason != "" || l.Bytes != 5):
			t.Errorf("line %d: %+v, want instance %s, 1 attempt, no reason, 5 bytes", i, l, inst.svc)
		case !proxied && (l.Instance != "" || l.Attempts != 0 || l.Reason != health.ReasonDependencyUnavailable || l.Bytes == 0):
			t.Errorf("shed line: %+v, want no instance, 0 attempts, reason %s, its body's bytes", l, health.ReasonDependencyUnavailable)
		}
	}
}

// ReopenAccessLog, logrotate's way: the file moved away goes on getting
// the lines written before, the new file at the path those after.
func TestAccessLogReopen(t *testing.T) {
	inst := startUpstream(t, &idRecorder{})
	path := filepath.Join(t.TempDir(), "access.log")
	cfg := testConfig(inst.lbInstance())
	cfg.AccessLog.Path = path
	lbt := startLB(t, cfg, nil)
	lbt.waitRoutable(t, 1)
	if r := lbt.get("/before"); r.status != 200 {
		t.Fatal(r)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := lbt.ReopenAccessLog(); err != nil {
		t.Fatal(err)
	}
	if r := lbt.get("/after"); r.status != 200 {
		t.Fatal(r)
	}
	lbt.stop()
	<-lbt.done
	old, cur := readAccessLog(t, path+".1"), readAccessLog(t, path)
	if len(old) != 1 || old[0].Path != "/before" || len(cur) != 1 || cur[0].Path != "/after" {
		t.Errorf("rotated file %+v, new file %+v", old, cur)
	}
}

// A WebSocket the balancer cuts (its idle timeout) gets its line when it
// ends: status 101, the instance, the whole exchange's duration.
func TestAccessLogWebSocketCut(t *testing.T) {
	t.Parallel()
	up, ended := wsUpstream(t)
	cfg, sc := streamConfig(up)
	path := filepath.Join(t.TempDir(), "access.log")
	cfg.AccessLog.Path = path
	cfg.AccessLog.FlushInterval = 10 * time.Millisecond
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	c := dialWS(t, b, "/echo")
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), sc.idle+10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
		t.Fatalf("echo: %q, %v", msg, err)
	}
	if _, _, err := c.Read(ctx); ctx.Err() != nil { // silent: the balancer cuts it
		t.Fatalf("silent WebSocket still open after %s: %v", sc.idle+10*time.Second, err)
	}
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Error("the instance's side of the WebSocket is still open")
	}
	b.waitNoStreams(t)
	b.stop()
	<-b.done

	lines := readAccessLog(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %+v", len(lines), lines)
	}
	l := lines[0]
	if l.Status != http.StatusSwitchingProtocols || l.Path != "/echo" || l.Instance != up.svc || l.Attempts != 1 ||
		l.Duration < (sc.idle-250*time.Millisecond).Seconds() || len(l.RequestID) != 33 {
		t.Errorf("line %+v: want 101 /echo from %s, 1 attempt, at least the idle timeout %s, a made id", l, up.svc, sc.idle)
	}
}
