// Package chromium drives a headless Chromium tab for tests, through
// chromedp: it finds the browser (or skips the test), starts it with a
// fresh profile, collects the page's errors, bounds every step, and saves
// screenshots to $SPILLWAY_SCREENSHOT_DIR (or the test's temporary
// directory). It is part of the test kit (see internal/testkit), apart so
// that only the tests that drive a browser link chromedp.
//
// # Contract
//
//   - Only tests import it. New needs Debian's chromium at Path; without
//     it the test is skipped, except in CI (CI=true), which installs it:
//     there the test fails.
//   - A Tab belongs to the test that made it: its methods fail that test
//     (from the test's goroutine) and it is closed, the browser process
//     waited for, when the test ends. Make it after the servers the page
//     talks to, so that it closes first (t.Cleanup runs last-registered
//     first).
//   - What the page reports as an error (an uncaught exception,
//     console.error or console.assert, and with ReportCSP a
//     Content-Security-Policy violation) is collected for Errors; the
//     collecting is safe for concurrent use.
package chromium

import (
	"context"
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

// Path is Debian's chromium, which CI installs.
const Path = "/usr/bin/chromium"

// Options are a Tab's settings; the zero value is the defaults.
type Options struct {
	// Wait bounds the browser's start and each step (Do, WaitFor, Eval,
	// Screenshot). Default 20s.
	Wait time.Duration
	// Dump, when set, is a JavaScript expression of a string that
	// describes the page; Fail logs its value.
	Dump string
	// Settle, when set, is JavaScript that Screenshot runs first (to hide
	// a transient element, say); then it waits two animation frames for
	// the page to finish drawing.
	Settle string
	// FailureShot is the name (without .png) of the screenshot Fail
	// saves. Default "failure".
	FailureShot string
}

// Tab is a headless Chromium tab with the page's errors collected.
type Tab struct {
	t    testing.TB
	ctx  context.Context
	dir  string // screenshots
	opts Options

	mu     sync.Mutex
	errors []string
}

// Need skips t when Chromium is missing, or fails it in CI (CI=true).
func Need(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no %s in CI: %v", Path, err)
		}
		t.Skipf("no %s: %v", Path, err)
	}
}

// New starts Chromium with a fresh profile and returns its tab (see Need
// for a missing browser).
func New(t testing.TB, opts Options) *Tab {
	t.Helper()
	Need(t)
	if opts.Wait <= 0 {
		opts.Wait = 20 * time.Second
	}
	if opts.FailureShot == "" {
		opts.FailureShot = "failure"
	}
	dir := os.Getenv("SPILLWAY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path),
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
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), flags...)
	t.Cleanup(cancelAlloc) // waits for the browser process to exit
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)

	b := &Tab{t: t, ctx: ctx, dir: dir, opts: opts}
	// The first Run starts the browser: no timeout on it (it would bound
	// the browser's life), but a watchdog in case it never comes up.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(opts.Wait):
		cancelTab()
		t.Fatalf("chromium did not start within %v", opts.Wait)
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
	return b
}

// ReportCSP makes every page loaded from now on report its
// Content-Security-Policy violations as console errors (so in Errors): an
// inline style or script the policy blocks would break the page silently.
func (b *Tab) ReportCSP() {
	b.t.Helper()
	_, err := chromedp.Call(b.Step(), page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));`,
	})
	if err != nil {
		b.t.Fatal(err)
	}
}

// Step returns a context for one action, bounded by Options.Wait.
func (b *Tab) Step() context.Context {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Wait)
	b.t.Cleanup(cancel)
	return ctx
}

// Do runs actions as one step, and calls Fail if they fail.
func (b *Tab) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.Step(), actions...); err != nil {
		b.Fail(what, err)
	}
}

// WaitFor polls the page every 100ms until the JavaScript expression is
// true, and returns how long that took; it calls Fail if that takes longer
// than Options.Wait.
func (b *Tab) WaitFor(what, expr string) time.Duration {
	b.t.Helper()
	start := time.Now()
	_, err := chromedp.Run(b.Step(), chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(b.opts.Wait), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		b.Fail("waiting for "+what, err)
	}
	return time.Since(start)
}

// Eval returns the value of the JavaScript expression on b's page, and
// calls Fail if it cannot.
func Eval[T any](b *Tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.Step(), chromedp.Evaluate[T](expr))
	if err != nil {
		b.Fail("evaluate "+expr, err)
	}
	return v
}

// Fail saves what the page looked like (a screenshot named
// Options.FailureShot, and Options.Dump's value in the log) and ends the
// test.
func (b *Tab) Fail(what string, err error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100)); serr == nil {
		path := filepath.Join(b.dir, b.opts.FailureShot+".png")
		if os.WriteFile(path, png, 0o644) == nil {
			b.t.Logf("page at failure: %s", path)
		}
	}
	var dump string
	if b.opts.Dump != "" {
		dump, _ = chromedp.Run(ctx, chromedp.Evaluate[string](b.opts.Dump))
	}
	b.t.Fatalf("%s: %v\npage:\n%s\npage errors: %v", what, err, dump, b.Errors())
}

// Screenshot saves the whole page as name.png in the screenshot directory,
// after Options.Settle and two animation frames.
func (b *Tab) Screenshot(name string) {
	b.t.Helper()
	b.Do("settle", chromedp.Evaluate[chromedp.Void](b.opts.Settle+`; new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))`))
	png, err := chromedp.Run(b.Step(), chromedp.FullScreenshot(100))
	if err != nil {
		b.Fail("screenshot "+name, err)
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// Errors returns the errors the page reported so far.
func (b *Tab) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.errors)
}
