package dashboard

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/chromium"
)

// newBrowser starts a headless Chromium tab for the dashboard's page, with
// its Content-Security-Policy violations counted as page errors. Cleanup
// closes it before the test's servers (t.Cleanup runs last-registered
// first).
func newBrowser(t *testing.T) *chromium.Tab {
	t.Helper()
	b := chromium.New(t, chromium.Options{Dump: pageDump, Settle: hideToast})
	b.ReportCSP()
	return b
}

// pageDump is an expression: what the dashboard shows, for a failure's
// log.
const pageDump = `[...document.querySelectorAll('#dependencies .dep, #instances tbody tr')].map(e => e.id + ' ' + JSON.stringify(e.dataset)).join('\n') + '\n' + document.getElementById('toast').textContent`

// hideToast hides the last action's toast before a screenshot: it would
// float mid-page in a full-page shot.
const hideToast = `document.getElementById('toast').hidden = true`

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
	var logs testkit.SyncBuffer
	ts := httptest.NewServer(New(f.Sources(), f.Controls(), Options{Token: testToken, Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	t.Cleanup(ts.Close)
	b := newBrowser(t)

	b.Do("open the dashboard", chromedp.Navigate(ts.URL+"/#token="+testToken))
	b.WaitFor("three healthy instances", `document.querySelectorAll('#instances tbody tr[data-state="healthy"]').length === 3`)
	b.WaitFor("the backend up, no shedding", depIs("up", "ok"))
	b.WaitFor("the chart's history", kpiAbove("ok", 50))
	if h := chromium.Eval[string](b, `location.hash`); h != "" {
		t.Errorf("location.hash = %q after load, want the token removed from the address", h)
	}
	if got := chromium.Eval[string](b, `sessionStorage.getItem('spillway.dashboard.token')`); got != testToken {
		t.Errorf("sessionStorage token = %q, want the fragment's", got)
	}
	if s := chromium.Eval[string](b, `document.getElementById('auth').dataset.state`); s != "set" {
		t.Errorf("auth state = %q, want set", s)
	}
	b.Screenshot("1-healthy")

	b.Do("break the backend", chromedp.Click(chromedp.ID("btn-break")))
	b.WaitFor("the backend down and shedding on", depIs("down", "shedding"))
	b.WaitFor("the chart to show shedding", kpiAbove("shed", 90))
	b.WaitFor("the shedding event", `[...document.querySelectorAll('#events li')].some((li) => li.dataset.kind === 'shedding_on' && li.textContent.includes('answering 503'))`)
	b.WaitFor("the backend mode badge", `document.getElementById('backend-mode').dataset.mode === 'hang'`)
	b.Screenshot("2-backend-broken")

	b.Do("restore the backend", chromedp.Click(chromedp.ID("btn-restore")))
	b.WaitFor("the recovery ramp", depIs("up", "recovering"))
	b.Screenshot("3-recovering")
	b.WaitFor("full recovery", depIs("up", "ok"))
	b.WaitFor("the chart to show ok again", kpiAbove("ok", 100)+` && !(`+kpiAbove("shed", 5)+`)`)
	b.WaitFor("three healthy instances", `document.querySelectorAll('#instances tbody tr[data-state="healthy"]').length === 3`)
	b.Screenshot("4-recovered")

	if want := []string{"backend(hang)", "backend(up)"}; !slices.Equal(f.Calls(), want) {
		t.Errorf("controls called %v, want %v", f.Calls(), want)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(errs, "\n"))
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the token reached the log")
	}
}

// TestBrowserTokenAndDrain: without a token the controls refuse to act
// and ask for it; with the token typed in, drain and undrain work; an
// override shows the LB it came from (this one, then another through
// etcd), automatic shedding that it is decided here; the etcd line turns
// unreachable when etcd is lost.
func TestBrowserTokenAndDrain(t *testing.T) {
	f := newFakeSystem(nil)
	ts := httptest.NewServer(New(f.Sources(), f.Controls(), Options{Token: testToken}))
	t.Cleanup(ts.Close)
	b := newBrowser(t)

	b.Do("open the dashboard without a token", chromedp.Navigate(ts.URL+"/"))
	b.WaitFor("the instances", `document.querySelectorAll('#instances tbody tr').length === 3`)
	b.WaitFor("the token box", `document.getElementById('auth').dataset.state === 'none'`)
	b.Do("restart without a token", chromedp.Click(chromedp.ID("btn-restart")))
	b.WaitFor("the request for a token", `document.getElementById('toast').textContent.includes('admin token')`)

	b.Do("type a wrong token", chromedp.SendKeys(chromedp.ID("token-input"), "wrong"), chromedp.Click(chromedp.ID("btn-token")))
	b.WaitFor("the token accepted by the page", `document.getElementById('auth').dataset.state === 'set'`)
	b.Do("restart with a wrong token", chromedp.Click(chromedp.ID("btn-restart")))
	b.WaitFor("the refusal", `document.getElementById('toast').textContent.includes('refused') && document.getElementById('auth').dataset.state === 'none'`)
	if calls := f.Calls(); len(calls) != 0 {
		t.Fatalf("controls called without the token: %v", calls)
	}

	b.Do("type the token", chromedp.SendKeys(chromedp.ID("token-input"), testToken), chromedp.Click(chromedp.ID("btn-token")))
	b.WaitFor("the token set", `document.getElementById('auth').dataset.state === 'set'`)
	const row = `document.getElementById('inst-127_0_0_1_41002')`
	b.Do("drain an instance", chromedp.Click(chromedp.ID("btn-drain-127_0_0_1_41002")))
	b.WaitFor("the instance drained", row+`.dataset.state === 'drained' && document.getElementById('btn-drain-127_0_0_1_41002').textContent === 'Undrain'`)
	b.Do("undrain it", chromedp.Click(chromedp.ID("btn-drain-127_0_0_1_41002")))
	b.WaitFor("the instance back", row+`.dataset.state === 'healthy'`)
	const decided = `document.querySelector('[data-testid=decided-backend]').textContent`
	b.WaitFor("automatic shedding decided here", decided+`.startsWith("auto (decided here from the instances' reports)")`)
	b.Do("force shedding on", chromedp.Click(chromedp.ID("btn-shed-backend-on")))
	b.WaitFor("shedding forced", `document.getElementById('dep-backend').dataset.shedding === 'shedding' && document.getElementById('dep-backend').dataset.override === 'on'`)
	b.WaitFor("the override from this LB", `document.getElementById('dep-backend').dataset.origin === 'lb-a' && `+decided+`.startsWith('override on from lb-a')`)
	f.overrideFrom("lb-b", "off")
	b.WaitFor("another LB's override", `document.getElementById('dep-backend').dataset.origin === 'lb-b' && `+decided+`.startsWith('override off from lb-b') && document.getElementById('dep-backend').dataset.shedding === 'ok'`)
	b.WaitFor("etcd connected, the capacity share", `document.getElementById('pill-etcd').dataset.state === 'connected' && document.getElementById('pill-share').textContent.includes('50% · 2 LBs')`)
	f.loseEtcd()
	b.WaitFor("etcd unreachable", `document.getElementById('pill-etcd').dataset.state === 'unreachable' && document.getElementById('pill-etcd').textContent.includes('unreachable since')`)
	b.Screenshot("etcd-unreachable")
	b.Do("start a load", chromedp.SetValue(chromedp.ID("load-rps"), "75"), chromedp.Click(chromedp.ID("btn-load-start")))
	b.WaitFor("the load running", `document.getElementById('load-status').dataset.running === 'true'`)

	want := []string{"drain(127.0.0.1:41002,true)", "drain(127.0.0.1:41002,false)", "shedding(backend,on)", "load(75,120)"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("controls called %v, want %v", got, want)
	}
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("page errors:\n%s", strings.Join(errs, "\n"))
	}
}

// TestBrowserReportError: an instance whose report the LB cannot use
// shows the reason and the detail where its report would be; the others
// still show theirs.
func TestBrowserReportError(t *testing.T) {
	f := newFakeSystem(nil)
	ts := httptest.NewServer(New(f.Sources(), f.Controls(), Options{Token: testToken}))
	t.Cleanup(ts.Close)
	b := newBrowser(t)

	b.Do("open the dashboard", chromedp.Navigate(ts.URL+"/#token="+testToken))
	b.WaitFor("the instances with their reports", `document.querySelectorAll('#instances tbody tr').length === 3 && !document.querySelector('[data-testid=report-error]')`)
	f.breakReport("127.0.0.1:41002", "wrong_shape", "a JSON object with none of the fields of a spillway, IETF health+json or Spring Boot report (fields: healthy, status_text, uptime_seconds)")
	const cell = `document.querySelector('#inst-127_0_0_1_41002 [data-testid=report-error]')`
	b.WaitFor("the reason in the instance's report cell", cell+` && `+cell+`.textContent.startsWith('report unusable: wrong_shape') && `+cell+`.textContent.includes('none of the fields') && `+cell+`.querySelector('.sub').title.endsWith('uptime_seconds)') && `+cell+`.textContent.includes('since ')`)
	b.WaitFor("the other instances' reports", `document.querySelectorAll('[data-testid=report-error]').length === 1 && document.getElementById('inst-127_0_0_1_41001').textContent.includes('limit 64')`)
	b.Screenshot("report-error")
}
