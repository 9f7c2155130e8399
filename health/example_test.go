package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
	// /health 200 {"ready":true,"ready_for_s":0,"draining":false,"phase":"ready","in_flight":3,"limit":20,"queue":0,"dependencies":{"backend":{"state":"down","breaker":"open","since":"2018-03-01T11:40:00Z"}},"version":"0c9f2eb0f6c68190"}
	// /readyz 503 draining
	// stopped: <nil>
}

// A service that refuses work names the reason in ReasonHeader and in its
// JSON body; whoever counts the answers, a load generator, the drill or
// the dashboard, files them by the one rule of Classify.
func ExampleClassify() {
	shed := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.Header().Set(health.ReasonHeader, health.ReasonDependencyUnavailable)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"`+health.ReasonDependencyUnavailable+`"}`+"\n")
	}
	rec := httptest.NewRecorder()
	shed(rec, httptest.NewRequest(http.MethodPost, "/v1/login", nil))
	fmt.Println(health.ClassifyAnswer(rec.Code, rec.Header(), rec.Body.Bytes()))

	for _, a := range []struct {
		status int
		reason string
	}{
		{200, ""},
		{302, ""}, // a redirect is an answer, not a failure
		{429, health.ReasonRateLimited},
		{503, health.ReasonOverloaded},
		{503, ""}, // no reason: an instance failing
		{502, health.ReasonBadGateway},
	} {
		fmt.Printf("%d %q: %s\n", a.status, a.reason, health.Classify(a.status, a.reason))
	}
	// Output:
	// shed
	// 200 "": ok
	// 302 "": ok
	// 429 "rate_limited": client_error
	// 503 "overloaded": overloaded
	// 503 "": failed
	// 502 "bad_gateway": failed
}

// A reader of instances' reports (a load balancer, a probe) decodes any
// of the three formats and, for an unusable one, learns why.
func ExampleDecodeReport() {
	spring := `{"status":"DOWN","components":{"db":{"status":"UP"},"ping":{"status":"UP"},
	  "backend":{"status":"DOWN","details":{"error":"Read timed out"}},
	  "spillway":{"status":"UP","details":{"limit":25,"in_flight":2}}}}`
	rep, format, err := health.DecodeReport("application/vnd.spring-boot.actuator.v3+json", []byte(spring))
	fmt.Println(format, err, rep.Ready, rep.Limit, rep.Dependencies["backend"].State, rep.Dependencies["backend"].LastError, len(rep.Dependencies))

	_, _, err = health.DecodeReport("text/plain", []byte("ok"))
	var re *health.ReportError
	if errors.As(err, &re) {
		fmt.Println(re.Reason, errors.Is(err, health.ErrReportNotJSON))
	}
	// Output:
	// spring <nil> true 25 down Read timed out 2
	// not_json true
}
