package lb

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "/plain", `"quoted" \back\`, "ctl\x00\x01\n\t\x7f", "utf8 é ☃", "bad \xff\xfe utf8", "\u2028"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%q: %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want && !strings.Contains(s, "\xff") {
			t.Errorf("%q: decoded %q", s, got)
		}
	}
	line := appendAccessLine(nil, time.Now(), 1500*time.Microsecond, "id", "GET", "/"+strings.Repeat("p", 5000), 200, "", "", 0, 0, "127.0.0.1:1")
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil || m["duration"] != 0.0015 || len(m["path"].(string)) != maxLoggedPath+3 {
		t.Errorf("line %s: %v, %v", line, m, err)
	}
}

// The buffer bounds memory: a line that does not fit is dropped and
// counted, never waited for, and flushing frees the space.
func TestAccessLogBufferBound(t *testing.T) {
	c := DefaultAccessLogConfig()
	c.Path, c.BufferSize = "-", 4096
	a, err := newAccessLog(c, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	a.out = &out
	line := []byte(strings.Repeat("x", 99) + "\n")
	for range 50 {
		a.add(line)
	}
	if got := a.dropped.Load(); got != 50-40 {
		t.Errorf("dropped %d lines, want 10", got)
	}
	a.flush()
	a.add(line)
	a.close()
	if got := strings.Count(out.String(), "\n"); got != 41 {
		t.Errorf("%d lines written, want 41", got)
	}
}
