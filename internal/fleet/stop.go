package fleet

import (
	"context"
	"time"

	"github.com/spillway-dev/spillway/internal/procgroup"
)

// stopLocked stops p gracefully in a goroutine: SIGTERM to its process
// group, then SIGKILL after stop_timeout. The plan has already taken it out
// of service.
func (f *Fleet) stopLocked(p *proc) {
	p.stopProbes()
	f.wg.Add(1)
	go f.stopProc(p)
}

func (f *Fleet) stopProc(p *proc) {
	defer f.wg.Done()
	if p.child.Exited() {
		return
	}
	if err := procgroup.Terminate(p.cmd.Process); err != nil {
		f.log.Warn("SIGTERM failed", "instance", p.id, "pid", p.pid, "err", err)
	}
	t := time.NewTimer(f.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.child.Done():
	case <-f.quit: // shutdown takes over
	case <-t.C:
		f.log.Warn("instance did not stop in time; killing", "instance", p.id, "pid", p.pid, "stop_timeout", f.cfg.StopTimeout)
		if err := procgroup.Kill(p.cmd.Process); err != nil && !p.child.Exited() {
			f.log.Error("SIGKILL failed", "instance", p.id, "pid", p.pid, "err", err)
		}
	}
}

// shutdown stops every process: SIGTERM to all, SIGKILL to those still
// running after stop_timeout; then waits for every goroutine.
func (f *Fleet) shutdown(cancelBase context.CancelFunc) {
	f.mu.Lock()
	f.phase = phaseStopping
	f.rollDone = nil // a rolling restart under way ends with ErrNotRunning
	var live []*proc
	for _, id := range f.plan.Shutdown() {
		if p := f.procs[id]; p != nil {
			live = append(live, p)
		}
	}
	f.publishLocked()
	f.mu.Unlock()

	cancelBase()  // ends the probers
	close(f.quit) // waiters, stoppers and a rolling restart stop waiting
	if len(live) > 0 {
		f.log.Info("stopping instances", "count", len(live))
	}
	for _, p := range live {
		if !p.child.Exited() {
			if err := procgroup.Terminate(p.cmd.Process); err != nil {
				f.log.Warn("SIGTERM failed", "instance", p.id, "pid", p.pid, "err", err)
			}
		}
	}
	deadline := time.NewTimer(f.cfg.StopTimeout)
	defer deadline.Stop()
	expired := false
	for _, p := range live {
		if expired {
			break
		}
		select {
		case <-p.child.Done():
		case <-deadline.C:
			expired = true
		}
	}
	if expired {
		for _, p := range live {
			if !p.child.Exited() {
				f.log.Warn("instance did not stop in time; killing", "instance", p.id, "pid", p.pid)
				if err := procgroup.Kill(p.cmd.Process); err != nil && !p.child.Exited() {
					f.log.Error("SIGKILL failed", "instance", p.id, "pid", p.pid, "err", err)
				}
			}
		}
		for _, p := range live {
			<-p.child.Done()
		}
	}
	f.wg.Wait()

	f.mu.Lock()
	f.plan.Stopped()
	f.pruneLocked()
	f.phase = phaseStopped
	f.publishLocked()
	f.mu.Unlock()
	f.log.Info("fleet stopped")
}
