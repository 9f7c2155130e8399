package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Every subcommand that logs takes --log-format, and refuses a value it
// does not know as a usage error naming the flag.
func TestLogFormatUnknownIsUsageError(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, cmd := range []string{"lb", "login", "up", "fleet", "guard", "controller", "backend-sim"} {
		t.Run(cmd, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(t.Context(), []string{cmd, "--log-format", "yaml"}, &stdout, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2; stderr %q", code, stderr.String())
			}
			if want := `invalid value "yaml" for flag -log-format: "yaml": want text or json`; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), want)
			}
		})
	}
}

func TestNewLoggerFormats(t *testing.T) {
	for _, tt := range []struct {
		format logFormat
		want   string
	}{
		{logText, "level=INFO msg=hello request_id=r1\n"},
		{logJSON, `"level":"INFO","msg":"hello","request_id":"r1"}` + "\n"},
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, "info", tt.format)
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("not shown")
		log.Info("hello", "request_id", "r1")
		if !strings.HasSuffix(buf.String(), tt.want) || strings.Count(buf.String(), "\n") != 1 {
			t.Errorf("%s: %q, want one line ending %q", tt.format, buf.String(), tt.want)
		}
	}
	if _, err := newLogger(&bytes.Buffer{}, "loud", logText); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad level: err = %v, want one naming --log-level", err)
	}
}

// backend-sim --log-format json writes nothing but JSON lines.
func TestBackendSimLogsJSON(t *testing.T) {
	defer goleak.VerifyNone(t)
	var stderr testkit.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- runBackendSim(ctx, []string{"--listen", "127.0.0.1:0", "--log-format", "json"}, &bytes.Buffer{}, &stderr)
	}()
	testkit.WaitFor(t, 5*time.Second, "the listening line", func() bool { return strings.Contains(stderr.String(), "listening on") })
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("runBackendSim: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if rec["msg"] == nil || rec["level"] == nil || rec["time"] == nil {
			t.Errorf("line %q lacks time, level or msg", line)
		}
	}
	if !strings.Contains(lines[0], `"addr":"127.0.0.1:`) {
		t.Errorf("first line %q: want the listening line with its addr", lines[0])
	}
}
