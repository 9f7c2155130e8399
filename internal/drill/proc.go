package drill

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// child is one process the drill started: the backend-sim or `spillway
// up` (whose own children, the login instances, it supervises). Its Stop
// asks its process group to stop (SIGTERM), waits up to a timeout, then
// kills the group (SIGKILL) and waits for the process to be reaped.
type child struct {
	*procgroup.Child
	name string
}

// startChild starts bin with args through sp (in a process group of its
// own, with Pdeathsig on Linux), its output going to out, and reaps it in
// the background.
func startChild(sp *procgroup.Spawner, name, bin string, args []string, out io.Writer) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	c, err := sp.StartChild(cmd, nil)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &child{Child: c, name: name}, nil
}

// killPID ends one process (an instance the scenario kills).
func killPID(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
