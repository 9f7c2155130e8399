package guard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

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

// holdCall starts a call through g that stays in flight until release,
// and waits (in a testing/synctest bubble) until it is. release makes the
// call return result and returns what Do returned.
func holdCall(t *testing.T, g *guard.Guard, result error) (release func() error) {
	t.Helper()
	ch := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- g.Do(t.Context(), func(context.Context) error {
			<-ch
			return result
		})
	}()
	synctest.Wait()
	return func() error {
		close(ch)
		return <-errc
	}
}

// holdCalls holds n calls in flight (holdCall) until release, which lets
// them succeed; a call that fails fails the test.
func holdCalls(t *testing.T, g *guard.Guard, n int) (release func()) {
	t.Helper()
	var held []func() error
	for range n {
		held = append(held, holdCall(t, g, nil))
	}
	return func() {
		t.Helper()
		for _, release := range held {
			if err := release(); err != nil {
				t.Errorf("call held in flight: %v", err)
			}
		}
	}
}

// wantRecords checks the log records: each has exactly want's keys and
// values, in want's order.
func (r *logRecorder) wantRecords(t *testing.T, want []map[string]string) {
	t.Helper()
	got := r.records()
	if len(got) != len(want) {
		t.Fatalf("got %d records %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("record %d: %s = %q, want %q (record %v)", i, k, got[i][k], v, got[i])
			}
		}
		if len(got[i]) != len(want[i]) {
			t.Errorf("record %d: keys %v, want %v", i, got[i], want[i])
		}
	}
}

// refused makes a call through g with ctx that the guard must refuse: it
// fails the test if the call's function runs. It returns how long Do took
// and its error.
func refused(t *testing.T, ctx context.Context, g *guard.Guard) (took time.Duration, err error) {
	t.Helper()
	called := false
	start := time.Now()
	err = g.Do(ctx, func(context.Context) error {
		called = true
		return nil
	})
	took = time.Since(start)
	if called {
		t.Errorf("the call ran (Do = %v), want it refused", err)
	}
	return took, err
}

// answer is a response with status code and no body to req, as a fake
// transport returns it.
func answer(req *http.Request, code int) *http.Response {
	return &http.Response{
		StatusCode: code,
		Status:     fmt.Sprintf("%d %s", code, http.StatusText(code)),
		Body:       http.NoBody,
		Request:    req,
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
