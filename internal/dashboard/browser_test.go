package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium, which CI installs.
const chromiumPath = "/usr/bin/chromium"

// browserWait bounds every wait for the page.
const browserWait = 20 * time.Second

// browser is a headless Chromium tab on a dashboard, with the page's
// errors collected.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu     sync.Mutex
	errors []string
}

// newBrowser starts Chromium with a fresh profile. Cleanup closes it
// before the test's servers (t.Cleanup runs last-registered first).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("no %s: %v", chromiumPath, err)
	}
	dir := os.Getenv("SPILLWAY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // waits for the browser process to exit
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)

	b := &browser{t: t, ctx: ctx, dir: dir}
	// The first Run starts the browser: no timeout on it (it would bound
	// the browser's life), but a watchdog in case it never comes up.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(browserWait):
		cancelTab()
		t.Fatalf("chromium did not start within %v", browserWait)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error()
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Report Content-Security-Policy violations as console errors: an
	// inline style or script the policy blocks would break the page
	// silently.
	_, err = chromedp.Call(b.step(), page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));`,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// step returns a context for one bounded action.
func (b *browser) step() context.Context {
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	b.t.Cleanup(cancel)
	return ctx
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.step(), actions...); err != nil {
		b.fail(what, err)
	}
}

// waitFor polls the page until the JavaScript expression is true.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	_, err := chromedp.Run(b.step(), chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(browserWait), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		b.fail("waiting for "+what, err)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.step(), chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate "+expr, err)
	}
	return v
}

// fail saves what the page looked like and ends the test.
func (b *browser) fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		path := filepath.Join(b.dir, "failure.png")
		if os.WriteFile(path, png, 0o644) == nil {
			b.t.Logf("page at failure: %s", path)
		}
	}
	dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#dependencies .dep, #instances tbody tr')].map(e => e.id + ' ' + JSON.stringify(e.dataset)).join('\n') + '\n' + document.getElementById('toast').textContent`))
	b.t.Fatalf("%s: %v\npage:\n%s\npage errors: %v", what, err, dump, b.pageErrors())
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	// Hide the last action's toast (it would float mid-page in a full-page
	// shot) and let the page finish drawing.
	b.do("settle", chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').hidden = true; new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))`))
	png, err := chromedp.Run(b.step(), chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot "+name, err)
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}

// depIs is an expression: the dependency's element has these data
// attributes.
func depIs(state, shedding string) string {
	return fmt.Sprintf(`(() => { const d = document.getElementById('dep-backend'); return !!d && d.dataset.state === %q && d.dataset.shedding === %q; })()`, state, shedding)
}

// kpiAbove is an expression: the KPI's value (mean of the last 5 s) is
// above v.
func kpiAbove(key string, v float64) string {
	return fmt.Sprintf(`Number((document.querySelector('[data-kpi=%q]') || {dataset: {}}).dataset.value) > %v`, key, v)
}

// TestBrowserBreakAndRestore drives the dashboard in headless Chromium
// against a fake system: three healthy instances; break the backend → the
// dependency goes down and the edge sheds; restore → it recovers. A
// screenshot of each state goes to SPILLWAY_SCREENSHOT_DIR (or the test's
// temporary directory).
func TestBrowserBreakAndRestore(t *testing.T) {
	f := newFakeSystem(nil)
	var logs syncBuffer
	ts := httptest.NewServer(New(f.Sources(), f.Controls(), Options{Token: testToken, Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	t.Cleanup(ts.Close)
	b := newBrowser(t)

	b.do("open the dashboard", chromedp.Navigate(ts.URL+"/#token="+testToken))
	b.waitFor("three healthy instances", `document.querySelectorAll('#instances tbody tr[data-state="healthy"]').length === 3`)
	b.waitFor("the backend up, no shedding", depIs("up", "ok"))
	b.waitFor("the chart's history", kpiAbove("ok", 50))
	if h := eval[string](b, `location.hash`); h != "" {
		t.Errorf("location.hash = %q after load, want the token removed from the address", h)
	}
	if got := eval[string](b, `sessionStorage.getItem('spillway.dashboard.token')`); got != testToken {
		t.Errorf("sessionStorage token = %q, want the fragment's", got)
	}
	if s := eval[string](b, `document.getElementById('auth').dataset.state`); s != "set" {
		t.Errorf("auth state = %q, want set", s)
	}
	b.screenshot("1-healthy")

	b.do("break the backend", chromedp.Click(chromedp.ID("btn-break")))
	b.waitFor("the backend down and shedding on", depIs("down", "shedding"))
	b.waitFor("the chart to show shedding", kpiAbove("shed", 90))
	b.waitFor("the shedding event", `[...document.querySelectorAll('#events li')].some((li) => li.dataset.kind === 'shedding_on' && li.textContent.includes('answering 503'))`)
	b.waitFor("the backend mode badge", `document.getElementById('backend-mode').dataset.mode === 'hang'`)
	b.screenshot("2-backend-broken")

	b.do("restore the backend", chromedp.Click(chromedp.ID("btn-restore")))
	b.waitFor("the recovery ramp", depIs("up", "recovering"))
	b.screenshot("3-recovering")
	b.waitFor("full recovery", depIs("up", "ok"))
	b.waitFor("the chart to show ok again", kpiAbove("ok", 100)+` && !(`+kpiAbove("shed", 5)+`)`)
	b.waitFor("three healthy instances", `document.querySelectorAll('#instances tbody tr[data-state="healthy"]').length === 3`)
	b.screenshot("4-recovered")

	if want := []string{"backend(hang)", "backend(up)"}; !slices.Equal(f.Calls(), want) {
		t.Errorf("controls called %v, want %v", f.Calls(), want)
	}
	if errs := b.pageErrors(); len(errs) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(errs, "\n"))
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the token reached the log")
	}
}

// TestBrowserTokenAndDrain: without a token the controls refuse to act
// and ask for it; with the token typed in, drain and undrain work.
func TestBrowserTokenAndDrain(t *testing.T) {
	f := newFakeSystem(nil)
	ts := httptest.NewServer(New(f.Sources(), f.Controls(), Options{Token: testToken}))
	t.Cleanup(ts.Close)
	b := newBrowser(t)

	b.do("open the dashboard without a token", chromedp.Navigate(ts.URL+"/"))
	b.waitFor("the instances", `document.querySelectorAll('#instances tbody tr').length === 3`)
	b.waitFor("the token box", `document.getElementById('auth').dataset.state === 'none'`)
	b.do("restart without a token", chromedp.Click(chromedp.ID("btn-restart")))
	b.waitFor("the request for a token", `document.getElementById('toast').textContent.includes('admin token')`)

	b.do("type a wrong token", chromedp.SendKeys(chromedp.ID("token-input"), "wrong"), chromedp.Click(chromedp.ID("btn-token")))
	b.waitFor("the token accepted by the page", `document.getElementById('auth').dataset.state === 'set'`)
	b.do("restart with a wrong token", chromedp.Click(chromedp.ID("btn-restart")))
	b.waitFor("the refusal", `document.getElementById('toast').textContent.includes('refused') && document.getElementById('auth').dataset.state === 'none'`)
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("controls called without the token: %v", calls)
	}

	b.do("type the token", chromedp.SendKeys(chromedp.ID("token-input"), testToken), chromedp.Click(chromedp.ID("btn-token")))
	b.waitFor("the token set", `document.getElementById('auth').dataset.state === 'set'`)
	const row = `document.getElementById('inst-127_0_0_1_41002')`
	b.do("drain an instance", chromedp.Click(chromedp.ID("btn-drain-127_0_0_1_41002")))
	b.waitFor("the instance drained", row+`.dataset.state === 'drained' && document.getElementById('btn-drain-127_0_0_1_41002').textContent === 'Undrain'`)
	b.do("undrain it", chromedp.Click(chromedp.ID("btn-drain-127_0_0_1_41002")))
	b.waitFor("the instance back", row+`.dataset.state === 'healthy'`)
	b.do("force shedding on", chromedp.Click(chromedp.ID("btn-shed-backend-on")))
	b.waitFor("shedding forced", `document.getElementById('dep-backend').dataset.shedding === 'shedding' && document.getElementById('dep-backend').dataset.override === 'on'`)
	b.do("start a load", chromedp.SetValue(chromedp.ID("load-rps"), "75"), chromedp.Click(chromedp.ID("btn-load-start")))
	b.waitFor("the load running", `document.getElementById('load-status').dataset.running === 'true'`)

	want := []string{"drain(127.0.0.1:41002,true)", "drain(127.0.0.1:41002,false)", "shedding(backend,on)", "load(75,120)"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("controls called %v, want %v", got, want)
	}
	if errs := b.pageErrors(); len(errs) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(errs, "\n"))
	}
}
