//go:build unix

package stack

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

// TestUpHAProxy: `spillway up --data-plane haproxy` as a user runs it:
// logins go through HAProxy (the balancer's proxy does not listen), the
// dashboard's status endpoint answers with the fleet, shedding forced on
// through the admin API is answered by HAProxy itself, and HAProxy is
// stopped by its PID when up exits.
func TestUpHAProxy(t *testing.T) {
	t.Parallel()
	haproxytest.Binary(t) // skips without haproxy (scripts/test installs it)
	var hapPID int
	t.Cleanup(func() { // after up's own cleanup, which stops it
		if hapPID != 0 && syscall.Kill(hapPID, 0) == nil {
			t.Errorf("haproxy (pid %d) still runs after spillway up exited", hapPID)
			_ = syscall.Kill(hapPID, syscall.SIGKILL)
		}
	})
	up := startUp(t, testToken, "--data-plane", "haproxy")
	testkit.WaitFor(t, 10*time.Second, "haproxy's pid in up's log", func() bool {
		m := regexp.MustCompile(`msg="haproxy started" pid=(\d+)`).FindStringSubmatch(up.stderr.String())
		if m == nil {
			return false
		}
		hapPID, _ = strconv.Atoi(m[1])
		return true
	})
	if exe, err := readExe(hapPID); err != nil || !strings.Contains(exe, "haproxy") {
		t.Fatalf("pid %d: %q %v, want haproxy", hapPID, exe, err)
	}

	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	login := func() (int, string) {
		res, err := client.Post("http://"+up.lbAddr+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-alice"}`))
		if err != nil {
			return 0, ""
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, res.Header.Get("X-Spillway-Reason")
	}
	took := testkit.WaitFor(t, 30*time.Second, "a login through HAProxy", func() bool { code, _ := login(); return code == http.StatusOK })
	t.Logf("first login through HAProxy %v after up printed its addresses", took.Round(10*time.Millisecond))

	d, err := url.Parse(up.dashboard)
	if err != nil {
		t.Fatal(err)
	}
	admin := "http://" + d.Host
	get := func(path string) (int, string) {
		res, err := client.Get(admin + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	testkit.WaitFor(t, 20*time.Second, "the dashboard's status endpoint with three routable instances", func() bool {
		code, body := get("/status")
		return code == http.StatusOK && regexp.MustCompile(`"routable":\s*3\b`).MatchString(body)
	})
	if code, _ := get("/"); code != http.StatusOK {
		t.Errorf("dashboard page: %d", code)
	}

	put := func(mode string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, admin+"/shedding/backend", strings.NewReader(`{"mode":"`+mode+`"}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("shedding %s: %s", mode, res.Status)
		}
	}
	put("on")
	testkit.WaitFor(t, 5*time.Second, "HAProxy answering 503 "+haproxy.Reason, func() bool {
		code, reason := login()
		return code == http.StatusServiceUnavailable && reason == haproxy.Reason
	})
	put("auto")
	testkit.WaitFor(t, 5*time.Second, "logins again", func() bool { code, _ := login(); return code == http.StatusOK })
}

// readExe is the executable of process pid.
func readExe(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
}
