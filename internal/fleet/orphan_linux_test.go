package fleet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

const orphanEnv = "FLEET_TEST_ORPHAN_CHILD"

func init() {
	if os.Getenv(orphanEnv) != "" {
		testChildMain = orphanChild
	}
}

// orphanChild runs in a re-executed test binary: a fleet of two sleeping
// processes that prints their pids and waits to be killed.
func orphanChild() {
	cfg := DefaultConfig()
	cfg.Size, cfg.Command = 2, []string{"/bin/sh", "-c", "exec sleep 60", "sh"}
	f, err := New(cfg, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() {
		for {
			if st := f.Status(); len(st) == 2 {
				fmt.Println("pids", st[0].PID, st[1].PID)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling for the starts
		}
	}()
	f.Run(context.Background())
	os.Exit(1)
}

// If the fleet's process dies by SIGKILL, with no chance to stop anything,
// the kernel kills its instances (Pdeathsig): no orphans.
func TestNoOrphansWhenFleetIsKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "pids ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q: %v", line, err)
	}
	var pids []int
	for _, f := range strings.Fields(line)[1:] {
		p, _ := strconv.Atoi(f)
		pids = append(pids, p)
	}
	t.Cleanup(func() {
		for _, p := range pids {
			if testkit.Alive(p) {
				syscall.Kill(p, syscall.SIGKILL) // orphaned by a failure: do not leave it
			}
		}
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	testkit.WaitFor(t, 3*time.Second, fmt.Sprintf("instances %v to die with their fleet", pids), func() bool {
		for _, p := range pids {
			if testkit.Alive(p) {
				return false
			}
		}
		return true
	})
}
