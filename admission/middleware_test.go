package admission

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestMiddlewareEndToEnd runs the middleware in a real server: one request
// holds the only slot, the next is shed with the full 503 contract.
func TestMiddlewareEndToEnd(t *testing.T) {
	l := mustNew(t, Config{Limit: 1, RetryAfter: 1500 * time.Millisecond}, Options{})
	started, unblock := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-unblock
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	client := srv.Client()

	type result struct {
		status int
		body   string
		err    error
	}
	firstDone := make(chan result, 1)
	go func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			firstDone <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		firstDone <- result{resp.StatusCode, string(b), err}
	}()
	<-started
	wantStats(t, l, Stats{Limit: 1, InFlight: 1})

	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"Retry-After":       "2", // 1.5s rounded up
		"X-Spillway-Reason": "overloaded",
		"Cache-Control":     "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var doc map[string]string
	if err := json.Unmarshal(body, &doc); err != nil || doc["error"] != "overloaded" || len(doc) != 1 {
		t.Errorf("body = %q (%v), want {\"error\":\"overloaded\"}", body, err)
	}

	close(unblock)
	first := <-firstDone
	if first.err != nil || first.status != http.StatusOK || first.body != "ok" {
		t.Errorf("admitted request = %d %q %v, want 200 \"ok\"", first.status, first.body, first.err)
	}
	wantStats(t, l, Stats{Limit: 1})
}

func TestRetryAfterHeader(t *testing.T) {
	tests := []struct {
		retryAfter time.Duration
		want       string
	}{
		{time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{30 * time.Second, "30"},
	}
	for _, tt := range tests {
		t.Run(tt.retryAfter.String(), func(t *testing.T) {
			l := mustNew(t, Config{Limit: 1, RetryAfter: tt.retryAfter}, Options{})
			l.SetLimit(0)
			rec := httptest.NewRecorder()
			l.Middleware(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if got := rec.Header().Get("Retry-After"); rec.Code != 503 || got != tt.want {
				t.Errorf("got %d Retry-After %q, want 503 Retry-After %q", rec.Code, got, tt.want)
			}
		})
	}
}

func TestMiddlewareClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := mustNew(t, Config{Limit: 1, QueueSize: 1, QueueTimeout: time.Minute}, Options{})
		held := mustAcquire(t, l)
		defer held.Release(Success)
		h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			t.Error("handler called for a request whose client left")
		}))
		ctx, cancel := context.WithCancel(t.Context())
		rec := httptest.NewRecorder()
		done := make(chan any, 1)
		go func() {
			defer func() { done <- recover() }()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/", nil))
		}()
		synctest.Wait()
		wantStats(t, l, Stats{Limit: 1, InFlight: 1, Queue: 1})
		cancel()
		// The response is aborted (the server closes the connection),
		// never answered with a status the client could take for one.
		if p := <-done; p != http.ErrAbortHandler {
			t.Errorf("panic value %v, want http.ErrAbortHandler", p)
		}
		if rec.Flushed || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Errorf("something was written for a client that left: %d %q", rec.Code, rec.Body.String())
		}
		wantStats(t, l, Stats{Limit: 1, InFlight: 1})
	})
}

// TestMiddlewareOutcome: in aimd mode a slow 200 shrinks the limit, a slow
// 503 or 504 (a dependency failing) does not, and a panic releases the slot.
func TestMiddlewareOutcome(t *testing.T) {
	tests := []struct {
		name      string
		status    int // 0: write a body without a status
		panics    bool
		wantLimit int
	}{
		{name: "slow 200", status: 200, wantLimit: 4},
		{name: "slow implicit 200", status: 0, wantLimit: 4},
		{name: "slow 500", status: 500, wantLimit: 4},
		{name: "slow 503", status: 503, wantLimit: 8},
		{name: "slow 504", status: 504, wantLimit: 8},
		{name: "slow panic", panics: true, wantLimit: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testkit.NewClock(time.Date(2018, 7, 1, 12, 0, 0, 0, time.UTC))
			l := mustNew(t, Config{
				Algorithm: "aimd", Limit: 8, MinLimit: 1, MaxLimit: 16,
				LatencyTarget: 100 * time.Millisecond, Backoff: 0.5,
			}, Options{Now: clock.Now})
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				clock.Advance(time.Second)
				if tt.panics {
					panic(http.ErrAbortHandler)
				}
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				_, _ = io.WriteString(w, "x")
			}))
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panics {
						t.Errorf("recovered %v, want a panic: %v", r, tt.panics)
					}
				}()
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			}()
			wantStats(t, l, Stats{Limit: tt.wantLimit})
		})
	}
}

func TestStatusWriterUnwrapsAndFlushes(t *testing.T) {
	l := mustNew(t, Config{Algorithm: "aimd"}, Options{})
	rec := httptest.NewRecorder()
	l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through ResponseController: %v", err)
		}
		w.(http.Flusher).Flush()
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if !rec.Flushed {
		t.Error("response not flushed")
	}
}
