//go:build unix

package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Error("Alive(own pid) = false")
	}
	// A shell in a group of its own, leading a sleep: the group lives on
	// after its leader exits, until the sleep is killed.
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	var sleep int
	if _, err := fmt.Sscan(string(out), &sleep); err != nil {
		t.Fatalf("sleep pid %q: %v", out, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(sleep, syscall.SIGKILL) })
	if !Alive(pgid) {
		t.Errorf("Alive(%d) = false while its group's sleep runs", pgid)
	}
	if left := StillRunning(50*time.Millisecond, pgid); len(left) != 1 {
		t.Errorf("StillRunning = %v, want [%d]", left, pgid)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if left := StillRunning(5*time.Second, pgid); len(left) != 0 {
		t.Errorf("StillRunning = %v after the group was killed", left)
	}
}
