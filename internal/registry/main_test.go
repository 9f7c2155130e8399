package registry

import (
	"io"
	"log/slog"
	"testing"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger keeps the logs, and prints them if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	buf := &testkit.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return bufLogger(buf)
}

func bufLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
