package loadgen_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// Half a second of 100 logins a second against a service that sheds every
// third one; every request is accounted for.
func ExampleRun() {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			w.Header().Set("X-Spillway-Reason", "dependency_unavailable")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"token":"…"}`)
	}))
	defer srv.Close()

	rec := timeline.New(60, nil)
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:      srv.URL + "/v1/login",
		Header:   http.Header{"Content-Type": {"application/json"}},
		Body:     func(i int) []byte { return []byte(`{"ticket":"valid-1"}`) },
		Rate:     100,
		Duration: 500 * time.Millisecond,
		Timeout:  time.Second,
	}, rec)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sent", res.Sent, "lost", res.Lost(), "ok", res.Outcomes["ok"], "shed", res.Outcomes["shed"])
	// Output: sent 50 lost 0 ok 34 shed 16
}
