package discovery

import (
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// recorder keeps every set a Watch passes to its update.
type recorder struct {
	mu   sync.Mutex
	sets [][]lb.Instance
}

func (r *recorder) update(insts []lb.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, insts)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sets)
}

func (r *recorder) last() []lb.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil
	}
	return slices.Clone(r.sets[len(r.sets)-1])
}

// waitSet waits until the recorder's latest set is want, and at least n
// sets were passed.
func (r *recorder) waitSet(t *testing.T, n int, want []lb.Instance) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "set "+cmp.Diff(nil, want), func() bool {
		return r.count() >= n && cmp.Equal(r.last(), want)
	})
}

// testLog returns a logger writing text into a buffer the test reads.
func testLog() (*slog.Logger, *testkit.SyncBuffer) {
	var buf testkit.SyncBuffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func inst(service, health string) lb.Instance { return lb.Instance{Service: service, Health: health} }
