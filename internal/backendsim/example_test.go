package backendsim_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
)

func Example() {
	sim, err := backendsim.New(backendsim.Config{}, nil)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	defer sim.Close() // first: release anything still waiting

	ctx := context.Background()
	c := &backendsim.Client{BaseURL: srv.URL}
	res, err := c.Validate(ctx, "valid-alice")
	fmt.Println(res.Valid, res.AccountID, err)

	// Break the backend: every call now fails with a 500.
	if err := c.SetMode(ctx, "error", 0); err != nil {
		panic(err)
	}
	_, err = c.Validate(ctx, "valid-alice")
	fmt.Println(err)

	st, _ := c.Stats(ctx)
	fmt.Println(st.Paths[backendsim.PathValidate].Valid, st.Paths[backendsim.PathValidate].Error, st.Total)
	// Output:
	// true acct-6c939a362702 <nil>
	// POST /v1/validate: backend-sim answered 500 Internal Server Error: backend-sim: mode error
	// 1 1 2
}

// A backend with two workers: a third call at once waits in the queue, for
// at most half a second, behind at most 64 others.
func ExampleClient_SetCapacity() {
	sim, err := backendsim.New(backendsim.Config{}, nil)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	defer sim.Close()

	ctx := context.Background()
	c := &backendsim.Client{BaseURL: srv.URL}
	if err := c.SetCapacity(ctx, 2, 500*time.Millisecond); err != nil {
		panic(err)
	}
	if err := c.SetQueueSize(ctx, 64); err != nil {
		panic(err)
	}
	cfg, _ := c.Control(ctx)
	fmt.Println(cfg.Capacity, cfg.QueueSize, cfg.QueueTimeout)

	_, _ = c.Validate(ctx, "valid-alice")
	st, _ := c.Stats(ctx)
	fmt.Println(st.Pool.PeakBusy, st.Pool.Busy, st.Pool.Queued)
	// Output:
	// 2 64 500ms
	// 1 0 0
}
