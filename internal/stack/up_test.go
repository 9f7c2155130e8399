package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/chromium"
)

// The tests below run `spillway up` as a user does: the built binary, as
// a process of its own.

// upProcess is a running `spillway up`.
type upProcess struct {
	cmd    *exec.Cmd
	bin    string // the binary, a copy of the test's own for this process
	stderr *testkit.SyncBuffer
	waited chan error

	dashboard string // the dashboard's URL, token included
	lbAddr    string
}

// startUp runs the binary's `up` on free loopback ports with token as
// $SPILLWAY_ADMIN_TOKEN and args added, waits for it to print its
// addresses, and stops it with SIGINT when the test ends, checking that
// it exits cleanly and that no process it started outlives it.
func startUp(t *testing.T, token string, args ...string) *upProcess {
	t.Helper()
	// A copy of the binary that only this process runs, so that what it
	// starts can be found by its executable's path, whatever the other
	// tests run.
	bin := filepath.Join(t.TempDir(), "spillway-up")
	copyFile(t, spillwayBinary(t), bin)
	p := &upProcess{bin: bin, stderr: &testkit.SyncBuffer{}, waited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--backend-listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Env = append(os.Environ(), "SPILLWAY_ADMIN_TOKEN="+token)
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { p.waited <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })

	var out []string
	timeout := time.After(15 * time.Second)
	for p.dashboard == "" || p.lbAddr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("spillway up ended before printing its addresses:\n%s\nstderr:\n%s", strings.Join(out, "\n"), p.stderr)
			}
			out = append(out, line)
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "dashboard":
				p.dashboard = f[1]
			case len(f) == 2 && f[0] == "logins":
				p.lbAddr = strings.TrimSuffix(strings.TrimPrefix(f[1], "http://"), "/v1/login")
			}
		case <-timeout:
			t.Fatalf("spillway up printed no addresses within 15s:\n%s\nstderr:\n%s", strings.Join(out, "\n"), p.stderr)
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()
	return p
}

// stop interrupts up as Ctrl-C does and checks that it and every process
// it started are gone.
func (p *upProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("interrupt spillway up: %v", err)
	}
	select {
	case err := <-p.waited:
		if err != nil {
			t.Errorf("spillway up: %v\nstderr:\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.waited
		t.Errorf("spillway up did not exit within 30s of SIGINT\nstderr:\n%s", p.stderr)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := running(p.bin)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of %s still run after spillway up exited: %v", p.bin, left)
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(20 * time.Millisecond) // waiting for the kernel to reap
	}
	if t.Failed() {
		t.Logf("spillway up stderr:\n%s", p.stderr)
	}
}

// running returns the processes whose executable is bin, zombies aside.
func running(bin string) []int {
	exes, _ := filepath.Glob("/proc/[0-9]*/exe")
	var out []int
	for _, exe := range exes {
		if target, err := os.Readlink(exe); err != nil || target != bin {
			continue
		}
		dir := filepath.Dir(exe)
		if stat, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
				continue
			}
		}
		var pid int
		if _, err := fmt.Sscan(filepath.Base(dir), &pid); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUpPortTaken: `spillway up` on a port that is taken fails at once,
// naming the address and the flag that changes it.
func TestUpPortTaken(t *testing.T) {
	t.Parallel()
	bin := spillwayBinary(t)
	for _, flag := range []string{"--listen", "--admin-listen"} {
		t.Run(strings.TrimPrefix(flag, "--"), func(t *testing.T) {
			t.Parallel()
			taken := testkit.Listen(t)
			defer taken.Close()
			addr := taken.Addr().String()
			args := map[string]string{"--listen": "127.0.0.1:0", "--admin-listen": "127.0.0.1:0", "--backend-listen": "127.0.0.1:0"}
			args[flag] = addr

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "up", "--listen", args["--listen"], "--admin-listen", args["--admin-listen"], "--backend-listen", args["--backend-listen"])
			cmd.Env = append(os.Environ(), "SPILLWAY_ADMIN_TOKEN="+testToken)
			var stdout, stderr testkit.SyncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)

			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("spillway up: %v, want exit status 1", err)
			}
			if took > 2*time.Second {
				t.Errorf("spillway up took %s to fail, want under 2s", took.Round(time.Millisecond))
			}
			msg := strings.TrimSpace(stderr.String())
			t.Logf("%s taken: failed in %s: %s", flag, took.Round(time.Millisecond), msg)
			if !strings.Contains(msg, addr) || !strings.Contains(msg, "already in use") {
				t.Errorf("stderr = %q, want it to name %s as already in use", msg, addr)
			}
			if !regexp.MustCompile(`choose another with ` + flag + `\b`).MatchString(msg) {
				t.Errorf("stderr = %q, want it to name the flag %s", msg, flag)
			}
			if stdout.String() != "" {
				t.Errorf("stdout = %q, want nothing (nothing started)", stdout.String())
			}
		})
	}
}

// newBrowser starts a headless Chromium tab for the dashboard that
// `spillway up` serves.
func newBrowser(t *testing.T) *chromium.Tab {
	t.Helper()
	return chromium.New(t, chromium.Options{
		Wait:        30 * time.Second,
		Dump:        `[...document.querySelectorAll('#dependencies .dep, #instances tbody tr')].map(e => e.id + ' ' + JSON.stringify(e.dataset)).join('\n') + '\n' + document.getElementById('toast').textContent`,
		Settle:      `document.getElementById('toast').hidden = true`, // the last action's toast
		FailureShot: "up-failure",
	})
}

// depIs is an expression: the backend dependency's element has these data
// attributes ("" matches any shedding state).
func depIs(state string, shedding ...string) string {
	return fmt.Sprintf(`(() => { const d = document.getElementById('dep-backend'); return !!d && d.dataset.state === %q && %s.includes(d.dataset.shedding); })()`, state, jsStrings(shedding))
}

func jsStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// readyInstances is an expression: exactly n instance rows, all ready
// (routable at full weight).
func readyInstances(n int) string {
	return fmt.Sprintf(`(() => { const rows = [...document.querySelectorAll('#instances tbody tr')]; return rows.length === %d && rows.every((r) => r.dataset.display === 'ready'); })()`, n)
}

// kpiAbove is an expression: the KPI's value (mean of the last 5 s) is
// above v.
func kpiAbove(key string, v float64) string {
	return fmt.Sprintf(`Number((document.querySelector('[data-kpi=%q]') || {dataset: {}}).dataset.value) > %v`, key, v)
}

// TestUpBrowser is the end-to-end test: `spillway up` as a process, its
// dashboard in headless Chromium. Three ready instances; start the load
// button's logins; break the backend → the dependency goes down and the
// edge sheds; restore it → it recovers. A screenshot of each state goes to
// $SPILLWAY_SCREENSHOT_DIR (or the test's temporary directory).
func TestUpBrowser(t *testing.T) {
	t.Parallel()
	chromium.Need(t)
	up := startUp(t, testToken)
	// Its cleanup runs before up's: the page is closed before up stops.
	b := newBrowser(t)

	b.Do("open the dashboard", chromedp.Navigate(up.dashboard))
	took := b.WaitFor("three ready instances", readyInstances(3))
	t.Logf("three instances ready on the dashboard %s after it opened", took.Round(100*time.Millisecond))
	b.WaitFor("the token taken from the address", `document.getElementById('auth').dataset.state === 'set' && location.hash === ''`)

	// The guard's recovery probe runs only while a breaker is open, and a
	// breaker opens only on failed calls: without traffic, breaking the
	// backend shows nothing. Start the load button's logins.
	b.Do("start the load", chromedp.SetValue(chromedp.ID("load-rps"), "50"), chromedp.SetValue(chromedp.ID("load-seconds"), "120"), chromedp.Click(chromedp.ID("btn-load-start")))
	b.WaitFor("the load running", `document.getElementById('load-status').dataset.running === 'true'`)
	b.WaitFor("the backend up, no shedding", depIs("up", "ok"))
	b.WaitFor("5 s of logins succeeding on the chart", kpiAbove("ok", 35))
	b.Screenshot("up-1-healthy")

	b.Do("break the backend", chromedp.Click(chromedp.ID("btn-break")))
	b.WaitFor("the backend mode badge", `document.getElementById('backend-mode').dataset.mode === 'hang'`)
	took = b.WaitFor("the backend down and shedding on", depIs("down", "shedding"))
	t.Logf("backend down and shed at the edge %s after 'break backend'", took.Round(100*time.Millisecond))
	b.WaitFor("the chart to show shedding", kpiAbove("shed", 20))
	b.WaitFor("the shedding event", `[...document.querySelectorAll('#events li')].some((li) => li.dataset.kind === 'shedding_on')`)
	b.Screenshot("up-2-broken-shedding")

	b.Do("restore the backend", chromedp.Click(chromedp.ID("btn-restore")))
	b.WaitFor("the backend mode badge", `document.getElementById('backend-mode').dataset.mode === 'up'`)
	took = b.WaitFor("the backend up and the edge reopening", depIs("up", "recovering", "ok"))
	t.Logf("backend up again on the dashboard %s after 'restore'", took.Round(100*time.Millisecond))
	b.Screenshot("up-3-recovering")
	took += b.WaitFor("full recovery", depIs("up", "ok"))
	b.WaitFor("the chart to show logins succeeding again", kpiAbove("ok", 20))
	t.Logf("fully recovered %s after 'restore'", took.Round(100*time.Millisecond))
	b.WaitFor("three ready instances", readyInstances(3))
	b.Screenshot("up-4-recovered")

	// Nothing was replaced: a dependency outage is not an instance failure.
	if chromium.Eval[bool](b, `[...document.querySelectorAll('#events li')].some((li) => li.dataset.kind === 'replaced')`) {
		t.Error("an instance was replaced during the backend outage")
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(errs, "\n"))
	}
	if strings.Contains(up.stderr.String(), testToken) {
		t.Error("the admin token reached spillway up's log")
	}
}
