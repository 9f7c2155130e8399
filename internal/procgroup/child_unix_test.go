//go:build unix

package procgroup

import (
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// A Child that exits on SIGTERM is reaped within its Stop's timeout, its
// reaped hook runs before Done closes, and its exit is the signal's.
func TestChildStop(t *testing.T) {
	s := NewSpawner()
	defer s.Close()
	var hooked atomic.Bool
	c, err := s.StartChild(exec.Command("sleep", "60"), func() { hooked.Store(true) })
	if err != nil {
		t.Fatal(err)
	}
	if c.Exited() || c.PID() <= 0 {
		t.Fatalf("just started: Exited %v, PID %d", c.Exited(), c.PID())
	}
	begin := time.Now()
	c.Stop(10 * time.Second)
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Stop took %v; sleep exits on SIGTERM at once", took)
	}
	if !c.Exited() || !hooked.Load() || c.Err() == nil {
		t.Errorf("after Stop: Exited %v, hook ran %v, Err %v; want true, true and the signal", c.Exited(), hooked.Load(), c.Err())
	}
	c.Terminate() // of a reaped process: nothing
}

// Reap kills a Child that ignores SIGTERM once its deadline has passed.
func TestChildReapKills(t *testing.T) {
	s := NewSpawner()
	defer s.Close()
	c, err := s.StartChild(exec.Command("/bin/sh", "-c", `trap "" TERM; sleep 60 & wait`), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Terminate()
	c.Reap(time.Now().Add(200 * time.Millisecond))
	select {
	case <-c.Done():
	default:
		t.Fatal("Reap returned before the process was reaped")
	}
}

func TestStartChildClosed(t *testing.T) {
	s := NewSpawner()
	s.Close()
	if c, err := s.StartChild(exec.Command("true"), nil); err == nil || c != nil {
		t.Fatalf("StartChild after Close = %v, %v; want ErrClosed", c, err)
	}
}
