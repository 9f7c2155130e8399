package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/internal/dashboard"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// A dashboard wired to a timeline and one control; the other controls are
// nil, so their buttons are hidden. `spillway up` wires the LB's Status,
// the fleet's and the backend simulator's controls the same way.
func ExampleNew() {
	rec := timeline.New(301, nil)
	h := dashboard.New(dashboard.Sources{
		LB:     func() any { return map[string]any{"panic": false, "instances": []any{}} },
		Series: rec.Series,
		Events: func() []dashboard.Event {
			return []dashboard.Event{{Time: time.Now(), Kind: "started", Message: "dashboard example"}}
		},
	}, dashboard.Controls{
		SetBackendMode: func(ctx context.Context, mode string) error {
			fmt.Println("backend mode:", mode)
			return nil
		},
	}, dashboard.Options{Token: "token"})

	// The page's break button does this.
	req := httptest.NewRequest("POST", "/api/backend", strings.NewReader(`{"mode":"hang"}`))
	req.Header.Set("Authorization", "Bearer token")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Result().Body)
	fmt.Print(w.Code, " ", string(body))
	// Output:
	// backend mode: hang
	// 200 {"ok":true}
}
