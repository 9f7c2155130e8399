//go:build unix

package procgroup

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// startPair starts sh with a sleeping child of its own in the background.
// Both hold the returned pipe open: it reaches EOF only when both are gone,
// however long a reparented zombie waits to be reaped.
func startPair(t *testing.T, s *Spawner, script string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	cmd.Stdout = pw // an *os.File: the child holds it, Wait leaves pr alone
	err = s.Start(cmd)
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(pr)
	if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "up" {
		t.Fatalf("child said %q: %v", line, err)
	}
	return cmd, r
}

// waitEOF waits for the pipe of startPair to close.
func waitEOF(t *testing.T, r *bufio.Reader) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the group still holds its pipe 5s after the signal")
	}
}

func TestTerminateReachesTheGroup(t *testing.T) {
	s := NewSpawner()
	defer s.Close()
	cmd, r := startPair(t, s, `sleep 60 & echo up; wait`)
	if err := Terminate(cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, r)
	if err := cmd.Wait(); err == nil {
		t.Error("sh exited 0 after SIGTERM")
	}
	if err := Terminate(cmd.Process); err != nil {
		t.Errorf("Terminate of a reaped process = %v, want nil", err)
	}
}

func TestKillEndsWhatIgnoresSIGTERM(t *testing.T) {
	s := NewSpawner()
	defer s.Close()
	cmd, r := startPair(t, s, `trap "" TERM; sleep 60 & echo up; wait`)
	if err := Kill(cmd.Process); err != nil {
		t.Fatal(err)
	}
	waitEOF(t, r)
	cmd.Wait()
}

func TestKillGroupEndsWhatIsLeft(t *testing.T) {
	s := NewSpawner()
	defer s.Close()
	// sh exits at once, leaving its sleep behind in the group.
	cmd, r := startPair(t, s, `sleep 60 & echo up`)
	cmd.Wait()
	KillGroup(cmd.Process.Pid)
	waitEOF(t, r)
}
