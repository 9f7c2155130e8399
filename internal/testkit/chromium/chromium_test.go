package chromium

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestTab drives a page that reports an error and breaks its
// Content-Security-Policy: the tab waits for it, evaluates on it, collects
// both errors and takes a screenshot.
func TestTab(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'")
		io.WriteString(w, `<!doctype html><title>t</title><p id="p">hello</p>
<script>console.error('on purpose'); document.body.dataset.ready = 'yes';</script>
<img src="https://blocked.example/x.png">`)
	}))
	t.Cleanup(ts.Close)
	dir := t.TempDir()
	t.Setenv("SPILLWAY_SCREENSHOT_DIR", dir)
	b := New(t, Options{})
	b.ReportCSP()

	b.Do("open the page", chromedp.Navigate(ts.URL))
	b.WaitFor("the page's script", `document.body.dataset.ready === 'yes'`)
	if got := Eval[string](b, `document.getElementById('p').textContent`); got != "hello" {
		t.Errorf("Eval = %q, want hello", got)
	}
	b.Screenshot("page")
	if _, err := os.Stat(filepath.Join(dir, "page.png")); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	has := func(s string) bool {
		return slices.ContainsFunc(b.Errors(), func(e string) bool { return strings.Contains(e, s) })
	}
	// The page's events reach the tab on their own schedule.
	testkit.WaitFor(t, 10*time.Second, "the console error and the CSP violation in Errors", func() bool {
		return has("on purpose") && has("CSP violation")
	})
}
