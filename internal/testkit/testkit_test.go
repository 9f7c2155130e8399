package testkit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Errorf("%d lines, want 800", n)
	}
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	took := WaitFor(t, 5*time.Second, "the third call", func() bool { return n.Add(1) == 3 })
	if took < 2*PollInterval {
		t.Errorf("took %v for three calls, want at least two intervals (%v)", took, 2*PollInterval)
	}
	if took := WaitFor(t, time.Second, "nothing", func() bool { return true }); took >= PollInterval {
		t.Errorf("took %v for a condition that holds at once", took)
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	c.Advance(90 * time.Second)
	c.Advance(time.Nanosecond)
	if got, want := c.Now(), start.Add(90*time.Second+time.Nanosecond); !got.Equal(want) {
		t.Errorf("Now() = %v, want %v", got, want)
	}
}
