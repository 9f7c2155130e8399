package discovery

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// A real balancer takes File's sets: the instances it tracks follow the
// file. (The instances are ports nothing listens on; their checks fail,
// which does not matter here.)
func TestBalancerFollowsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instances.yaml")
	writeInPlace(t, path, oneYAML)
	f, err := NewFile(FileConfig{Path: path, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lb.DefaultConfig()
	cfg.Server.DrainDelay = 0
	cfg.Server.ShutdownTimeout = time.Second
	b, err := lb.New(cfg, lb.Options{Discovery: f, AdminToken: "discovery-test-token"})
	if err != nil {
		t.Fatal(err)
	}
	ln, aln := testkit.Listen(t), testkit.Listen(t)
	testkit.Go(t, "Balancer.Run", 10*time.Second, func(ctx context.Context) error { return b.Run(ctx, ln, aln) })

	ids := func() []string {
		var out []string
		for _, in := range b.Status().Instances {
			out = append(out, in.ID)
		}
		slices.Sort(out)
		return out
	}
	testkit.WaitFor(t, 5*time.Second, "the file's instance", func() bool {
		return slices.Equal(ids(), []string{"127.0.0.1:8001"})
	})
	writeAtomic(t, path, twoYAML)
	testkit.WaitFor(t, 5*time.Second, "the new file's instances", func() bool {
		return slices.Equal(ids(), []string{"127.0.0.1:8001", "127.0.0.1:8002"})
	})
	writeAtomic(t, path, badYAML)
	writeAtomic(t, path, "instances: []\n")
	testkit.WaitFor(t, 5*time.Second, "no instance", func() bool { return len(ids()) == 0 })
}
