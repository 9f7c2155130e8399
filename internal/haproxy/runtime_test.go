//go:build unix

// The tests run a real HAProxy through testkit/haproxytest, which is for
// Unix systems.

package haproxy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a real HAProxy: frontend fe on Front, which answers 503 itself
// for a Host that shed.map maps to "shed"; backend be with servers s1
// (weight 100) and s2 (maxconn 10) on two loopback HTTP servers; the
// admin socket also on TCP (TCPSocket).
type rig struct {
	*haproxytest.Server
	RT        *Runtime
	Front     string
	Map       string // shed.map's path, as the configuration names it
	TCPSocket string // host:port
	Backends  [2]string
}

func startRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{Front: testkit.FreePort(t), TCPSocket: testkit.FreePort(t)}
	for i := range r.Backends {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "s%d\n", i+1)
		}))
		t.Cleanup(srv.Close)
		r.Backends[i] = srv.Listener.Addr().String()
	}
	r.Server = haproxytest.Start(t, func(dir string) string {
		r.Map = filepath.Join(dir, "shed.map")
		if err := os.WriteFile(r.Map, []byte("a.example ok\nb.example shed\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`global
    stats socket ipv4@%s level admin

frontend fe
    bind %s
    http-request return status 503 content-type text/plain string shed if { req.hdr(host),host_only,map(%s,none) -m str shed }
    default_backend be

backend be
    server s1 %s weight 100
    server s2 %s maxconn 10
`, r.TCPSocket, r.Front, r.Map, r.Backends[0], r.Backends[1])
	})
	rt, err := NewRuntime("unix://" + r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r.RT = rt
	return r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// server returns the row of be/name in show servers state.
func (r *rig) server(t *testing.T, name string) Server {
	t.Helper()
	servers, err := r.RT.ServersState(ctx(t), "be")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no server be/%s in %+v", name, servers)
	return Server{}
}

func TestServersState(t *testing.T) {
	r := startRig(t)
	servers, err := r.RT.ServersState(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Backend, Name, Addr string
		Port, Weight, IW    int
		Op                  OpState
		Admin               AdminState
	}
	var got []row
	for _, s := range servers {
		got = append(got, row{s.Backend, s.Name, s.Addr, s.Port, s.Weight, s.InitialWeight, s.OpState, s.AdminState})
	}
	var want []row
	for i, b := range r.Backends {
		host, port, _ := net.SplitHostPort(b)
		p, _ := strconv.Atoi(port)
		w := []int{100, 1}[i]
		want = append(want, row{"be", fmt.Sprintf("s%d", i+1), host, p, w, w, OpRunning, 0})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("show servers state (-want +got):\n%s", diff)
	}

	_, err = r.RT.ServersState(ctx(t), "nope")
	assertCommandError(t, err, ErrNotFound, "Can't find backend.")
}

func TestSetServerState(t *testing.T) {
	r := startRig(t)
	for _, tc := range []struct {
		state        State
		drain, maint bool
		op           OpState
	}{
		{StateDrain, true, false, OpRunning},
		{StateMaint, false, true, OpStopped},
		{StateReady, false, false, OpRunning},
	} {
		if err := r.RT.SetServerState(ctx(t), "be", "s1", tc.state); err != nil {
			t.Fatal(err)
		}
		s := r.server(t, "s1")
		if s.AdminState.Drain() != tc.drain || s.AdminState.Maint() != tc.maint || s.OpState != tc.op {
			t.Errorf("after %s: admin state %#x (drain %v, maint %v), op %v; want drain %v, maint %v, op %v",
				tc.state, s.AdminState, s.AdminState.Drain(), s.AdminState.Maint(), s.OpState, tc.drain, tc.maint, tc.op)
		}
	}
	err := r.RT.SetServerState(ctx(t), "be", "nope", StateDrain)
	assertCommandError(t, err, ErrNotFound, "No such server.")
	if err := r.RT.SetServerState(ctx(t), "be", "s1", "up"); !errors.Is(err, ErrBadArgument) {
		t.Errorf("state up: %v, want ErrBadArgument", err)
	}
}

func TestSetWeight(t *testing.T) {
	r := startRig(t)
	for _, w := range []int{50, 0, 256} {
		if err := r.RT.SetWeight(ctx(t), "be", "s1", w); err != nil {
			t.Fatal(err)
		}
		if s := r.server(t, "s1"); s.Weight != w || s.InitialWeight != 100 {
			t.Errorf("after set weight %d: weight %d, initial %d", w, s.Weight, s.InitialWeight)
		}
	}
	for _, w := range []int{-1, 257} {
		if err := r.RT.SetWeight(ctx(t), "be", "s1", w); !errors.Is(err, ErrBadArgument) {
			t.Errorf("weight %d: %v, want ErrBadArgument", w, err)
		}
	}
	assertCommandError(t, r.RT.SetWeight(ctx(t), "be", "nope", 1), ErrNotFound, "No such server.")
	assertCommandError(t, r.RT.SetWeight(ctx(t), "nope", "s1", 1), ErrNotFound, "No such backend.")
}

func TestSetMaxconn(t *testing.T) {
	r := startRig(t)
	slim := func() map[string]string {
		t.Helper()
		// show stat: CSV, "# pxname,svname,...,slim,...", a row per proxy
		// and server.
		answer, err := r.RT.Exec(ctx(t), "show stat")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(answer, "# "))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		col := -1
		for i, name := range rows[0] {
			if name == "slim" {
				col = i
			}
		}
		got := map[string]string{}
		for _, row := range rows[1:] {
			if row[0] == "be" && strings.HasPrefix(row[1], "s") {
				got[row[1]] = row[col]
			}
		}
		return got
	}
	if got, want := slim(), map[string]string{"s1": "", "s2": "10"}; !cmp.Equal(got, want) {
		t.Errorf("slim before: %v, want %v", got, want)
	}
	if err := r.RT.SetMaxconn(ctx(t), "be", "s1", 7); err != nil {
		t.Fatal(err)
	}
	if err := r.RT.SetMaxconn(ctx(t), "be", "s2", 0); err != nil {
		t.Fatal(err)
	}
	if got, want := slim(), map[string]string{"s1": "7", "s2": ""}; !cmp.Equal(got, want) {
		t.Errorf("slim after: %v, want %v", got, want)
	}
	assertCommandError(t, r.RT.SetMaxconn(ctx(t), "be", "nope", 3), ErrNotFound, "No such server.")
	if err := r.RT.SetMaxconn(ctx(t), "be", "s1", -1); !errors.Is(err, ErrBadArgument) {
		t.Errorf("maxconn -1: %v, want ErrBadArgument", err)
	}
}

// TestAddDelServer: a server added at run time starts in maintenance at
// its weight; HAProxy deletes it only in maintenance, and an unknown one
// is ErrNotFound.
func TestAddDelServer(t *testing.T) {
	r := startRig(t)
	spec := ServerSpec{Instance: lb.Instance{Service: r.Backends[0], Health: r.Backends[0]}, Weight: 5,
		Health: HealthCheck{Interval: time.Second, Rise: 1, Fall: 1}}
	if err := r.RT.AddServer(ctx(t), "be", "s3", spec); err != nil {
		t.Fatal(err)
	}
	if s := r.server(t, "s3"); !s.AdminState.Maint() || s.Weight != 5 || s.Addr != "127.0.0.1" {
		t.Errorf("added server: admin %#x weight %d addr %s, want maint at weight 5 on 127.0.0.1", s.AdminState, s.Weight, s.Addr)
	}
	if err := r.RT.AddServer(ctx(t), "be", "s3", spec); !errors.Is(err, ErrRejected) {
		t.Errorf("adding s3 again: %v, want ErrRejected", err)
	}
	if err := r.RT.SetServerState(ctx(t), "be", "s3", StateReady); err != nil {
		t.Fatal(err)
	}
	if err := r.RT.DelServer(ctx(t), "be", "s3"); !errors.Is(err, ErrRejected) {
		t.Errorf("deleting a ready server: %v, want ErrRejected", err)
	}
	if err := r.RT.SetServerState(ctx(t), "be", "s3", StateMaint); err != nil {
		t.Fatal(err)
	}
	if err := r.RT.DelServer(ctx(t), "be", "s3"); err != nil {
		t.Fatalf("delete in maintenance: %v", err)
	}
	if err := r.RT.DelServer(ctx(t), "be", "s3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: %v, want ErrNotFound", err)
	}
	for _, bad := range []ServerSpec{
		{Instance: spec.Instance, Weight: MaxWeight + 1, Health: spec.Health},
		{Instance: lb.Instance{Service: "x", Health: r.Backends[0]}, Weight: 1, Health: spec.Health},
		{Instance: spec.Instance, Weight: 1},
	} {
		if err := r.RT.AddServer(ctx(t), "be", "s4", bad); !errors.Is(err, ErrBadArgument) {
			t.Errorf("AddServer %+v: %v, want ErrBadArgument", bad, err)
		}
	}
}

func TestMap(t *testing.T) {
	r := startRig(t)
	status := func(host string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx(t), "GET", "http://"+r.Front+"/", nil)
		req.Host = host
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	show := func() []MapEntry {
		t.Helper()
		entries, err := r.RT.ShowMap(ctx(t), r.Map)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range entries {
			if !strings.HasPrefix(e.ID, "0x") {
				t.Errorf("entry %d id %q", i, e.ID)
			}
			entries[i].ID = ""
		}
		return entries
	}
	if diff := cmp.Diff([]MapEntry{{Key: "a.example", Value: "ok"}, {Key: "b.example", Value: "shed"}}, show()); diff != "" {
		t.Errorf("show map before (-want +got):\n%s", diff)
	}
	if a, b, c := status("a.example"), status("b.example"), status("c.example"); a != 200 || b != 503 || c != 200 {
		t.Errorf("before: a %d, b %d, c %d; want 200, 503, 200", a, b, c)
	}

	for _, kv := range [][2]string{{"a.example", "shed"}, {"b.example", "ok"}, {"c.example", "shed"}} {
		if err := r.RT.SetMap(ctx(t), r.Map, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := []MapEntry{{Key: "a.example", Value: "shed"}, {Key: "b.example", Value: "ok"}, {Key: "c.example", Value: "shed"}}
	if diff := cmp.Diff(want, show()); diff != "" {
		t.Errorf("show map after set (-want +got):\n%s", diff)
	}
	if a, b, c := status("a.example"), status("b.example"), status("c.example"); a != 503 || b != 200 || c != 503 {
		t.Errorf("after set: a %d, b %d, c %d; want 503, 200, 503", a, b, c)
	}

	if err := r.RT.DelMap(ctx(t), r.Map, "c.example"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:2], show()); diff != "" {
		t.Errorf("show map after del (-want +got):\n%s", diff)
	}
	assertCommandError(t, r.RT.DelMap(ctx(t), r.Map, "c.example"), ErrNotFound, "Key not found.")

	// ReplaceMap: the whole content in one commit, in the given order.
	repl := []MapEntry{{Key: "c.example", Value: "shed"}, {Key: "a.example", Value: "ok"}}
	if err := r.RT.ReplaceMap(ctx(t), r.Map, repl); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(repl, show()); diff != "" {
		t.Errorf("show map after replace (-want +got):\n%s", diff)
	}
	if a, b, c := status("a.example"), status("b.example"), status("c.example"); a != 200 || b != 200 || c != 503 {
		t.Errorf("after replace: a %d, b %d, c %d; want 200, 200, 503", a, b, c)
	}
	if err := r.RT.ReplaceMap(ctx(t), r.Map, nil); err != nil {
		t.Fatal(err)
	}
	if got := show(); len(got) != 0 {
		t.Errorf("show map after replace with nothing: %v, want empty", got)
	}
	if err := r.RT.ReplaceMap(ctx(t), r.Map, []MapEntry{{Key: "k", Value: "v;show info"}}); !errors.Is(err, ErrBadArgument) {
		t.Errorf("ReplaceMap with a bad value: %v, want ErrBadArgument", err)
	}
	_, err := r.RT.ShowMap(ctx(t), "/nope.map")
	assertCommandError(t, err, ErrNotFound, "Unknown map identifier. Please use #<id> or <file>.")
	assertCommandError(t, r.RT.ReplaceMap(ctx(t), "/nope.map", repl), ErrNotFound, "Unknown map identifier. Please use #<id> or <file>.")
	assertCommandError(t, r.RT.SetMap(ctx(t), "/nope.map", "k", "v"), ErrNotFound, "Unknown map identifier. Please use #<id> or <file>.")
	for _, kv := range [][2]string{{"k", "two words"}, {"k", "v;show info"}, {"", "v"}, {"k\n", "v"}, {"k", `a\b`}} {
		if err := r.RT.SetMap(ctx(t), r.Map, kv[0], kv[1]); !errors.Is(err, ErrBadArgument) {
			t.Errorf("SetMap %q %q: %v, want ErrBadArgument", kv[0], kv[1], err)
		}
	}
}

func TestInfo(t *testing.T) {
	r := startRig(t)
	before, err := r.RT.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if before.Pid != r.PID() || before.Name != "HAProxy" || !strings.HasPrefix(before.Version, "2.") || before.StartTimeSec == 0 {
		t.Errorf("info: pid %d (process %d), name %q, version %q, start %d", before.Pid, r.PID(), before.Name, before.Version, before.StartTimeSec)
	}
	again, err := r.RT.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.RestartedSince(before) {
		t.Errorf("RestartedSince without a restart: %+v after %+v", again, before)
	}

	if err := r.RT.SetWeight(ctx(t), "be", "s1", 3); err != nil {
		t.Fatal(err)
	}
	r.Restart()
	after, err := r.RT.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !after.RestartedSince(before) || after.Pid != r.PID() {
		t.Errorf("after a restart: pid %d (process %d), RestartedSince %v", after.Pid, r.PID(), after.RestartedSince(before))
	}
	if w := r.server(t, "s1").Weight; w != 100 {
		t.Errorf("weight after a restart = %d, want the configuration's 100", w)
	}
}

// TestConcurrent: many goroutines on four Runtimes (as if four clients
// shared the socket), more connections at once than the stats socket's
// default maxconn (10): its full backlog refuses connects (EAGAIN), which
// dial tries again.
func TestConcurrent(t *testing.T) {
	r := startRig(t)
	var rts []*Runtime
	for range 4 {
		rt, err := NewRuntime(r.Socket)
		if err != nil {
			t.Fatal(err)
		}
		rts = append(rts, rt)
	}
	g, c := errgroup.WithContext(ctx(t))
	for i := range 32 {
		g.Go(func() error {
			for j := range 5 {
				if err := rts[i%4].SetWeight(c, "be", fmt.Sprintf("s%d", i%2+1), 1+i*5+j); err != nil {
					return err
				}
				if _, err := rts[i%4].ServersState(c, "be"); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestTCPSocket(t *testing.T) {
	r := startRig(t)
	rt, err := NewRuntime("tcp://" + r.TCPSocket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Pid != r.PID() {
		t.Errorf("pid over tcp %d, process %d", info.Pid, r.PID())
	}
	// A plain path is a unix socket.
	rt, err = NewRuntime(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Info(ctx(t)); err != nil {
		t.Error(err)
	}
}

func TestErrors(t *testing.T) {
	r := startRig(t)
	_, err := r.RT.Exec(ctx(t), "frobnicate")
	assertCommandError(t, err, ErrUnknownCommand, "Unknown command, but maybe one of the following ones is a better match:")

	user, err := NewRuntime("unix://" + r.UserSocket)
	if err != nil {
		t.Fatal(err)
	}
	assertCommandError(t, user.SetWeight(ctx(t), "be", "s1", 1), ErrPermissionDenied, "Permission denied")
	if _, err := user.ServersState(ctx(t), "be"); err != nil {
		t.Errorf("show servers state at level user: %v", err)
	}

	// HAProxy's own range check, past ours: set weight takes 0-256 but
	// not a relative weight above it.
	_, err = r.RT.Exec(ctx(t), "set weight be/s1 300")
	if err != nil {
		t.Errorf("raw set weight 300: %v, want the answer as text", err)
	}
	err = r.RT.execQuiet(ctx(t), "set weight be/s1 300")
	assertCommandError(t, err, ErrRejected, "Absolute weight can only be between 0 and 256 inclusive.")

	// No HAProxy on the socket: a transport error, not a CommandError.
	gone, err := NewRuntime(filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gone.Info(ctx(t))
	var ce *CommandError
	if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), `"show info"`) {
		t.Errorf("no socket: %v", err)
	}
}

// TestDeadline: a socket that accepts and never answers holds a command
// no longer than its context.
func TestDeadline(t *testing.T) {
	ln := testkit.Listen(t)
	testkit.Go(t, "silent listener", 5*time.Second, func(ctx context.Context) error {
		go func() { <-ctx.Done(); ln.Close() }() // ends when the test's stop cancels ctx
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return nil
			}
			conns = append(conns, c)
		}
	})
	rt, err := NewRuntime("tcp://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = rt.Info(c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Info on a silent socket: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Info on a silent socket took %v", d)
	}

	rt.Timeout = 50 * time.Millisecond // no deadline on the context
	if _, err := rt.Info(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Info with Timeout on a silent socket: %v, want context.DeadlineExceeded", err)
	}

	rt.Timeout = 0 // DefaultTimeout, longer than the cancel below
	c, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel) // a cancel, not a deadline, mid-read
	if _, err := rt.Info(c); !errors.Is(err, context.Canceled) {
		t.Errorf("Info cancelled mid-read: %v, want context.Canceled", err)
	}
}

func TestNewRuntime(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
	}{
		{"unix:///run/haproxy/admin.sock", "unix:///run/haproxy/admin.sock"},
		{"/run/haproxy/admin.sock", "unix:///run/haproxy/admin.sock"},
		{"admin.sock", "unix://admin.sock"},
		{"tcp://127.0.0.1:9999", "tcp://127.0.0.1:9999"},
		{"tcp://[::1]:9999", "tcp://[::1]:9999"},
		{"", ""},
		{"unix://", ""},
		{"tcp://127.0.0.1", ""},
		{"tcp://127.0.0.1:", ""},
		{"http://x:1", ""},
	} {
		rt, err := NewRuntime(tc.addr)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("NewRuntime(%q) = %s, want an error", tc.addr, rt.Addr())
		case tc.want != "" && err != nil:
			t.Errorf("NewRuntime(%q): %v", tc.addr, err)
		case tc.want != "" && rt.Addr() != tc.want:
			t.Errorf("NewRuntime(%q).Addr() = %q, want %q", tc.addr, rt.Addr(), tc.want)
		}
	}
}

func assertCommandError(t *testing.T, err, sentinel error, answer string) {
	t.Helper()
	var ce *CommandError
	if !errors.As(err, &ce) || !errors.Is(err, sentinel) {
		t.Errorf("error %v, want a CommandError wrapping %v", err, sentinel)
		return
	}
	first, _, _ := strings.Cut(ce.Answer, "\n")
	if first != answer {
		t.Errorf("answer %q, want %q", first, answer)
	}
	if msg := err.Error(); !strings.Contains(msg, strconv.Quote(ce.Command)) || !strings.Contains(msg, strconv.Quote(answer)) {
		t.Errorf("error %q does not name the command %q and quote the answer %q", msg, ce.Command, answer)
	}
}

func TestParseServersState(t *testing.T) {
	got := parseTestdata(t, "servers-state-2.6.txt", ParseServersState)
	if len(got) != 2 || got[0].Name != "s1" || got[0].Port != 18081 || got[0].AdminState != AdminForcedDrain ||
		got[0].Weight != 50 || got[0].InitialWeight != 100 || got[1].OpState != OpStopped || !got[1].AdminState.Maint() ||
		got[0].Fields["srv_check_port"] != "0" || got[0].FQDN != "" || got[0].BackendID != 3 || got[1].ID != 2 {
		t.Errorf("parsed %+v", got)
	}
	// By name, not position: a reordered header with fields unknown to us.
	got, err := ParseServersState("1\n# srv_name extra be_name srv_uweight srv_admin_state srv_op_state srv_addr\nweb1 x app 7 1 0 10.0.0.1\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Server{Backend: "app", Name: "web1", Addr: "10.0.0.1", Weight: 7, AdminState: AdminForcedMaint, OpState: OpStopped}); len(got) != 1 ||
		!cmp.Equal(want, got[0], cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Fields" }, cmp.Ignore())) {
		t.Errorf("reordered: %+v", got)
	}
	wantParseErrors(t, "ParseServersState", ParseServersState,
		"",
		"2\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n",
		"1\n",
		"1\napp web1 1.2.3.4 2 0 1\n",
		"1\n# be_name srv_name srv_addr srv_op_state srv_admin_state\n",
		"1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight\napp web1 1.2.3.4 2 0\n",
		"1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight\napp web1 1.2.3.4 2 0 x\n",
		"1\n# be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight\napp web1 1.2.3.4 -2 0 1\n",
		"No such server.",
	)
}

func TestParseMap(t *testing.T) {
	got := parseTestdata(t, "map-2.6.txt", ParseMap)
	want := []MapEntry{{"0x56244afec2d0", "a.example", "3"}, {"0x56244afec320", "b.example", "0.5"}, {"0x7f06a804c690", "k2", "v w"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got, err := ParseMap(""); err != nil || len(got) != 0 {
		t.Errorf("empty map: %v, %v", got, err)
	}
	wantParseErrors(t, "ParseMap", ParseMap, "a.example 3", "0x a 1", "0xzz a 1", "0x12 a", "0x12  a")
}

func TestParseInfo(t *testing.T) {
	got := parseTestdata(t, "info-2.6.txt", ParseInfo)
	if got.Pid != 19802 || got.UptimeSec != 37 || got.Version != "2.6.12-1+deb12u4" || got.Name != "HAProxy" ||
		got.StartTimeSec != 1795960563 || got.Fields["Unstoppable Jobs"] != "0" || got.Fields["Uptime"] != "0d 0h00m37s" {
		t.Errorf("parsed %+v", got)
	}
	wantParseErrors(t, "ParseInfo", ParseInfo, "", "Pid: 1", "Uptime_sec: 1", "Pid: x\nUptime_sec: 1", "Pid: 1\nUptime_sec: 1\nno colon", "Pid: 99999999999\nUptime_sec: 1")
	prev := Info{Pid: 10, UptimeSec: 100}
	for _, tc := range []struct {
		now  Info
		want bool
	}{
		{Info{Pid: 10, UptimeSec: 100}, false},
		{Info{Pid: 10, UptimeSec: 160}, false},
		{Info{Pid: 11, UptimeSec: 200}, true},
		{Info{Pid: 10, UptimeSec: 3}, true}, // pid reused
	} {
		if got := tc.now.RestartedSince(prev); got != tc.want {
			t.Errorf("%+v.RestartedSince(%+v) = %v", tc.now, prev, got)
		}
	}
}

func FuzzParseServersState(f *testing.F) {
	testkit.Seed(f, "testdata/servers-state-*.txt")
	f.Add([]byte("1\n# srv_name be_name srv_uweight srv_admin_state srv_op_state srv_addr\nweb1 app 7 1 0 10.0.0.1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		servers, err := ParseServersState(string(b))
		if err != nil {
			return
		}
		if len(servers) > strings.Count(string(b), "\n")+1 {
			t.Errorf("%d servers from %d lines", len(servers), strings.Count(string(b), "\n")+1)
		}
		for _, s := range servers {
			if s.Name == "" || s.Backend == "" || s.Weight < 0 {
				t.Errorf("server %+v", s)
			}
		}
	})
}

func FuzzParseMap(f *testing.F) {
	testkit.Seed(f, "testdata/map-*.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseMap(string(b))
		if err != nil {
			return
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.ID, "0x") || e.Key == "" || strings.Contains(e.Key, " ") {
				t.Errorf("entry %+v", e)
			}
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	testkit.Seed(f, "testdata/info-*.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseInfo(string(b))
		if err != nil {
			return
		}
		if info.Pid < 0 || info.UptimeSec < 0 || info.RestartedSince(info) {
			t.Errorf("info %+v", info)
		}
	})
}

// parseTestdata parses the file testdata/name, an answer HAProxy gave,
// with parse; it fails t if either fails.
func parseTestdata[T any](t *testing.T, name string, parse func(string) (T, error)) T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	v, err := parse(string(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// wantParseErrors checks that parse, named name, refuses each of bad.
func wantParseErrors[T any](t *testing.T, name string, parse func(string) (T, error), bad ...string) {
	t.Helper()
	for _, in := range bad {
		if v, err := parse(in); err == nil {
			t.Errorf("%s(%q) = %+v, want an error", name, in, v)
		}
	}
}
