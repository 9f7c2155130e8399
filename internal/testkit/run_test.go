package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestGo(t *testing.T) {
	errStopped := errors.New("stopped")
	started := make(chan struct{})
	stop := Go(t, "run", 5*time.Second, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return errStopped
	})
	<-started
	if err := stop(); !errors.Is(err, errStopped) {
		t.Errorf("stop() = %v, want run's error", err)
	}
	if err := stop(); !errors.Is(err, errStopped) {
		t.Errorf("second stop() = %v, want the same", err)
	}
}

// recorder is a testing.TB that keeps its cleanups and errors.
type recorder struct {
	testing.TB // nil: other methods panic
	cleanups   []func()
	errs       []string
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// end runs the cleanups, last registered first, as a test's end does.
func (r *recorder) end() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestGoAtTheEnd(t *testing.T) {
	r := &recorder{}
	Go(r, "run", 5*time.Second, func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("boom")
	})
	r.end()
	if want := []string{"run: boom"}; !slices.Equal(r.errs, want) {
		t.Errorf("errors %q, want %q", r.errs, want)
	}

	r = &recorder{}
	release := make(chan struct{})
	defer close(release)
	Go(r, "stuck", 10*time.Millisecond, func(context.Context) error {
		<-release
		return nil
	})
	r.end()
	if want := []string{"stuck did not return within 10ms of its context's cancel"}; !slices.Equal(r.errs, want) {
		t.Errorf("errors %q, want %q", r.errs, want)
	}
}

func TestServe(t *testing.T) {
	var srvErr = make(chan error, 1)
	addr := Serve(t, func(ctx context.Context, ln net.Listener) error {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ReadHeaderTimeout: time.Second}
		go func() { srvErr <- srv.Serve(ln) }()
		<-ctx.Done()
		srv.Close()
		if err := <-srvErr; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("GET / = %d", res.StatusCode)
	}
}
