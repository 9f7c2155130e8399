package health_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/health"
)

// A service serves its health on a port of its own, reports its admission
// load and its backend's state in /health, and drains before it stops.
func Example() {
	reg := prometheus.NewRegistry()
	hs := health.New(health.Options{
		Warmup:     0,                                                                         // e.g. 30 * time.Second to fill caches first
		Now:        func() time.Time { return time.Date(2018, 3, 1, 11, 45, 0, 0, time.UTC) }, // a fixed clock keeps the output stable
		Gatherer:   reg,
		Registerer: reg,
	})
	// In a real service: the guard's Status and the admission limiter.
	hs.AddDependency("backend", func() health.Dependency {
		return health.Dependency{
			State:   health.DepDown,
			Breaker: "open",
			Since:   time.Date(2018, 3, 1, 11, 40, 0, 0, time.UTC),
		}
	})
	hs.SetLoad(func() (inFlight, limit, queue int) { return 3, 20, 0 })

	ln, err := net.Listen("tcp", "127.0.0.1:0") // the health port
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ctx, ln) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) {
		resp, err := client.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(path, resp.StatusCode, strings.TrimSpace(string(body)))
	}

	get("/readyz") // not started yet
	hs.Start()
	get("/readyz")
	get("/livez") // the backend is down, yet the instance is alive and ready
	get("/health")
	hs.Drain() // before stopping: the LB stops sending traffic
	get("/readyz")

	stop()
	fmt.Println("stopped:", <-served)
	// Output:
	// /readyz 503 starting
	// /readyz 200 ok
	// /livez 200 ok
	// /health 200 {"ready":true,"ready_for_s":0,"draining":false,"phase":"ready","in_flight":3,"limit":20,"queue":0,"dependencies":{"backend":{"state":"down","breaker":"open","since":"2018-03-01T11:40:00Z"}}}
	// /readyz 503 draining
	// stopped: <nil>
}
