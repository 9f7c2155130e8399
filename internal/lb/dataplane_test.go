package lb_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestBalancerDataPlane: a balancer run without a proxy listener checks
// its instances, serves its admin API and publishes its decisions to the
// data plane; a feedback recovery is refused with a data plane.
func TestBalancerDataPlane(t *testing.T) {
	up := startUpstream(t, http.NotFoundHandler())
	gone := testkit.Listen(t)
	closed := lb.Instance{Service: "127.0.0.1:1", Health: gone.Addr().String()}
	gone.Close() // its health port refuses connections
	cfg := testConfig(up.lbInstance(), closed)
	feed := lb.NewPlanFeed()

	cfg.Shedding.Recovery = lb.RecoveryFeedback
	if _, err := lb.New(*cfg, lb.Options{AdminToken: testToken, DataPlane: feed}); !errors.Is(err, lb.ErrFeedbackNeedsProxy) {
		t.Fatalf("New with feedback recovery and a data plane: %v, want ErrFeedbackNeedsProxy", err)
	}
	cfg.Shedding.Recovery = lb.RecoveryWindow
	b, err := lb.New(*cfg, lb.Options{AdminToken: testToken, DataPlane: feed})
	if err != nil {
		t.Fatal(err)
	}
	aln := testkit.Listen(t)
	stop := testkit.Go(t, "balancer", 10*time.Second, func(ctx context.Context) error { return b.Run(ctx, nil, aln) })

	var plan lb.Plan
	testkit.WaitFor(t, 5*time.Second, "a plan with both instances checked", func() bool {
		select {
		case <-feed.Ready():
		case <-time.After(100 * time.Millisecond):
		}
		plan, _ = feed.Latest()
		a, _ := plan.Instance(up.svc)
		c, _ := plan.Instance(closed.Service)
		return a.State == lb.ServerReady && c.State == lb.ServerMaint
	})
	if a, _ := plan.Instance(up.svc); a.Health != up.health || a.Weight != lb.FullWeight || a.MaxConn != 0 {
		t.Errorf("routable instance: %+v", a)
	}
	if !plan.Settled {
		t.Errorf("plan with every instance checked: not Settled")
	}
	if s, ok := plan.Route("/"); !ok || s != 1 {
		t.Errorf(`route "/": %v %v, want share 1`, s, ok)
	}
	res, err := http.Get("http://" + aln.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /status: %s", res.Status)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
}
