package fleet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// proc is one instance process, as the shell runs it; its place in the
// fleet is the Plan's. Its fields are set once the process has started and
// never change.
type proc struct {
	id         string
	cmd        *exec.Cmd
	pid        int
	service    string
	health     string
	out        *output
	stopProbes context.CancelFunc

	// child reaps cmd: its Done is closed once cmd.Wait has returned,
	// the group's leftovers have been killed and the output flushed.
	child *procgroup.Child
}

// addr returns the address a check on port targets.
func (p *proc) addr(port string) string {
	if port == PortService {
		return p.service
	}
	return p.health
}

// output prefixes each line an instance writes with its ID and copies it to
// dst, and keeps the last tailSize bytes for the diagnosis of an exit. exec
// calls Write from one goroutine at a time (Stdout and Stderr are the same
// *output); the lock also covers tail reads.
type output struct {
	id    string
	dst   io.Writer   // nil: discard
	dstMu *sync.Mutex // shared by all instances, so lines do not interleave

	mu      sync.Mutex
	partial []byte
	tail    []byte
}

const (
	tailSize    = 2 << 10
	maxLineSize = 8 << 10
)

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tail = append(o.tail, b...)
	if len(o.tail) > tailSize {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailSize:]...)
	}
	if o.dst == nil {
		return len(b), nil
	}
	o.partial = append(o.partial, b...)
	rest := o.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		o.emitLocked(rest[:i])
		rest = rest[i+1:]
	}
	if len(rest) > maxLineSize {
		o.emitLocked(rest)
		rest = nil
	}
	o.partial = append(o.partial[:0], rest...)
	return len(b), nil
}

// flush writes an unterminated last line.
func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 && o.dst != nil {
		o.emitLocked(o.partial)
	}
	o.partial = nil
}

func (o *output) emitLocked(line []byte) {
	o.dstMu.Lock()
	defer o.dstMu.Unlock()
	fmt.Fprintf(o.dst, "%s | %s\n", o.id, line) // an output error must not break the instance's pipe
}

// lastLine returns the last non-empty line the instance wrote.
func (o *output) lastLine() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := bytes.TrimRight(o.tail, "\r\n")
	if i := bytes.LastIndexByte(t, '\n'); i >= 0 {
		t = t[i+1:]
	}
	return string(t)
}

func (o *output) addrInUse() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Contains(o.tail, []byte("address already in use"))
}

// exit describes p's exit for the plan. Call it once p.child is done.
func (p *proc) exit() Exit {
	return Exit{Status: errText(p.child.Err()), Output: p.out.lastLine(), AddrInUse: p.out.addrInUse()}
}

func errText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// startLocked starts the process of a, with its waiter and prober, and
// records it.
func (f *Fleet) startLocked(a Action, now time.Time) error {
	if f.phase != phaseRunning {
		return ErrNotRunning
	}
	addrs, err := procgroup.FreeAddrs(f.cfg.Host, 2)
	if err != nil {
		return err
	}
	argv := slices.Concat(f.argv, []string{"--listen", addrs[0], "--health-listen", addrs[1]}, f.cfg.Args)
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &output{id: a.ID, dst: f.out, dstMu: &f.outMu}
	cmd.Stdout, cmd.Stderr = out, out
	if len(f.env) > 0 {
		cmd.Env = append(os.Environ(), f.env...)
	}
	cmd.WaitDelay = time.Second // bounds Wait if a grandchild keeps the output pipe open
	child, err := f.spawn.StartChild(cmd, func() {
		procgroup.KillGroup(cmd.Process.Pid) // whatever it left behind
		out.flush()
	})
	if err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &proc{
		id:      a.ID,
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		service: addrs[0],
		health:  addrs[1],
		out:     out,
		child:   child,
	}
	f.procs[p.id] = p
	var ctx context.Context
	ctx, p.stopProbes = context.WithCancel(f.baseCtx)
	f.wg.Add(2)
	go f.wait(p)
	go f.probeLoop(ctx, p)
	f.eventLocked(Event{Time: now, Kind: EventStarted, Instance: p.id, PID: p.pid,
		Detail: fmt.Sprintf("slot %d, pid %d, service %s, health %s", a.Slot, p.pid, p.service, p.health)})
	f.log.Info("instance started", "instance", p.id, "slot", a.Slot, "pid", p.pid, "service", p.service, "health", p.health)
	return nil
}

// wait reports p's exit to the loop once p has been reaped.
func (f *Fleet) wait(p *proc) {
	defer f.wg.Done()
	<-p.child.Done()
	select {
	case f.exits <- p:
	case <-f.quit:
	}
}
