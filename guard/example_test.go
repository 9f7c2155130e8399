package guard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/guard"
)

// A login service guards its calls to the backend validation API, runs the
// recovery probe, and answers 503 when the guard says the backend is
// unavailable.
func Example() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	defer backend.Close()

	g, err := guard.New(guard.Config{
		Timeout:  500 * time.Millisecond,
		ProbeURL: backend.URL + "/healthz",
	}, guard.Options{Name: "backend"}) // add Logger and Registerer in a real service
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.Run(ctx) }) // the probe; stops with ctx
	defer wg.Wait()
	defer cancel()

	client := backend.Client()
	validate := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, backend.URL+"/validate", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("validate: %s", resp.Status)
		}
		return nil
	}

	err = g.Do(context.Background(), validate)
	switch {
	case errors.Is(err, guard.ErrUnavailable):
		fmt.Println("503: backend unavailable:", err)
	case err != nil:
		fmt.Println("request ended:", err) // the caller's own cancellation
	default:
		fmt.Println("ticket validated")
	}
	fmt.Println("backend:", g.Status().State)
	// Output:
	// ticket validated
	// backend: up
}
