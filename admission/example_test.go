package admission_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/admission"
)

func Example() {
	l, err := admission.New(admission.Config{Limit: 2}, admission.Options{Name: "example"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	a, _ := l.Acquire(ctx)
	b, _ := l.Acquire(ctx)
	_, err = l.Acquire(ctx) // no queue configured: rejected at once
	fmt.Println(errors.Is(err, admission.ErrRejected), err)
	fmt.Printf("%+v\n", l.Stats())

	a.Release(admission.Success)
	b.Release(admission.Success)
	fmt.Printf("%+v\n", l.Stats())
	// Output:
	// true admission: rejected: queue full
	// {Limit:2 InFlight:2 Queue:0}
	// {Limit:2 InFlight:0 Queue:0}
}

func ExampleLimiter_Middleware() {
	l, err := admission.New(admission.Config{
		Limit:      64,
		QueueSize:  0, // shed at once; with a queue, waiters get QueueTimeout
		RetryAfter: 2 * time.Second,
	}, admission.Options{Name: "login", Registerer: prometheus.NewRegistry()})
	if err != nil {
		panic(err)
	}
	login := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "welcome")
	}))

	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	fmt.Print(rec.Code, " ", rec.Body)

	l.SetLimit(0) // for example, the load balancer sees no capacity left
	rec = httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	fmt.Print(rec.Code, " ", rec.Header().Get("Retry-After"), " ", rec.Body)
	// Output:
	// 200 welcome
	// 503 2 {"error":"overloaded"}
}

func ExampleLimiter_SetLimit() {
	// At the load balancer's edge: the limit is the fleet's capacity,
	// refreshed from outside every few hundred milliseconds.
	edge, err := admission.New(admission.Config{Limit: 1}, admission.Options{Name: "edge"})
	if err != nil {
		panic(err)
	}
	for _, capacity := range []int{3 * 64, 2 * 64} {
		edge.SetLimit(capacity)
		fmt.Println(edge.Limit())
	}
	// Output:
	// 192
	// 128
}
