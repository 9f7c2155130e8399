//go:build unix

package haproxytest

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestart(t *testing.T) {
	front := testkit.FreePort(t)
	s := Start(t, func(dir string) string {
		return "frontend fe\n    bind " + front + "\n    http-request return status 204\n"
	})
	first := s.PID()
	if first == 0 {
		t.Fatal("no PID after Start")
	}
	if a, err := command(s.UserSocket, "set weight x/y 1"); err != nil || !strings.HasPrefix(a, "Permission denied") {
		t.Errorf("user socket answered %q, %v; want Permission denied", a, err)
	}
	s.Restart()
	if s.PID() == first || s.PID() == 0 {
		t.Errorf("PID after Restart = %d, before %d", s.PID(), first)
	}
	s.Stop()
	if s.Running() {
		t.Error("Running after Stop")
	}
}
