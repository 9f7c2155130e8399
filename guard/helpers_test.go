package guard_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/guard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var errBoom = errors.New("boom")

func succeed(context.Context) error { return nil }

func fail(context.Context) error { return errBoom }

// hang waits for the call's context, as a dependency that never answers
// does behind an http.Client.
func hang(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// holdCalls starts n calls through g that stay in flight until release,
// and waits (in a testing/synctest bubble) until they are. release lets
// them return and waits for them; a call that fails fails the test.
func holdCalls(t *testing.T, g *guard.Guard, n int) (release func()) {
	t.Helper()
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := g.Do(t.Context(), func(context.Context) error {
				<-ch
				return nil
			}); err != nil {
				t.Errorf("call held in flight: %v", err)
			}
		})
	}
	synctest.Wait()
	return func() {
		close(ch)
		wg.Wait()
	}
}

// testGuard is a Guard with its own registry and a log recorder.
type testGuard struct {
	*guard.Guard
	reg  *prometheus.Registry
	logs *logRecorder
}

func newTestGuard(t *testing.T, cfg guard.Config, opts guard.Options) *testGuard {
	t.Helper()
	tg := &testGuard{reg: prometheus.NewRegistry(), logs: &logRecorder{}}
	if opts.Name == "" {
		opts.Name = "backend"
	}
	opts.Registerer = tg.reg
	opts.Logger = slog.New(tg.logs)
	g, err := guard.New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tg.Guard = g
	return tg
}

// wantBreaker fails the test unless the breaker is in state want.
func wantBreaker(t *testing.T, g *guard.Guard, want string) {
	t.Helper()
	if got := g.Status().Breaker; got != want {
		t.Fatalf("breaker = %q, want %q", got, want)
	}
}

// logRecorder is a slog.Handler that keeps each record's message, level
// and attributes, and optionally sends them to ch too.
type logRecorder struct {
	mu   sync.Mutex
	recs []map[string]string
	ch   chan map[string]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"level": rec.Level.String(), "msg": rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, m)
	r.mu.Unlock()
	if r.ch != nil {
		select {
		case r.ch <- m:
		default:
		}
	}
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

func (r *logRecorder) records() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.recs...)
}
