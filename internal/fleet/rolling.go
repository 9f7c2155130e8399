package fleet

import (
	"context"
	"fmt"
	"time"
)

// RollingRestart replaces every instance, one slot at a time: it starts the
// new instance first (a surge of one), waits until its traffic check
// passes, then stops the old one and waits for it to exit before the next
// slot, so the number of ready instances never drops. It does not spend the
// replacement budget. If a new instance is not ready within ready_timeout
// (or exits first) it is stopped, the old one is kept, and the restart
// ends with ErrNotReady. Canceling ctx ends the restart: a new instance
// not ready yet is stopped, an old one being stopped goes on stopping.
// Only one rolling restart runs at a time. The decisions are the Plan's
// (Roll); this waits for their outcome.
func (f *Fleet) RollingRestart(ctx context.Context) error {
	f.mu.Lock()
	if f.phase != phaseRunning {
		f.mu.Unlock()
		return ErrNotRunning
	}
	if err := ctx.Err(); err != nil {
		f.mu.Unlock()
		return fmt.Errorf("rolling restart: %w", err)
	}
	begin := f.clock()
	acts, err := f.plan.Roll(begin)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	done := make(chan error, 1)
	f.rollDone = done
	f.log.Info("rolling restart begins", "size", f.plan.Target())
	f.applyLocked(acts, begin)
	f.mu.Unlock()
	f.kickLoop() // the new instance's ready deadline is the loop's to watch

	select {
	case err = <-done:
	case <-ctx.Done():
		f.mu.Lock()
		now := f.clock()
		f.applyLocked(f.plan.CancelRoll(ctx.Err(), now), now)
		f.mu.Unlock()
		select {
		case err = <-done: // canceled, or done just before
		case <-f.quit:
			return ErrNotRunning
		}
	case <-f.quit:
		return ErrNotRunning
	}
	if err != nil {
		f.log.Warn("rolling restart stopped", "err", err)
		return err
	}
	f.log.Info("rolling restart done", "took", f.clock().Sub(begin).Round(time.Millisecond))
	return nil
}
