package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// onHangup gives a long-running subcommand a deliberate answer to SIGHUP,
// whose default action would kill it at once, without drain or log line,
// when an operator reloads "all spillway processes". Until the returned
// stop is called, each SIGHUP calls reload (which logs its own outcome),
// or, with reload nil, is logged and ignored with the reason why.
//
// Call it before logging that the process listens, so a script that waits
// for that line may send SIGHUP safely. stop returns once the goroutine
// it started has ended.
func onHangup(logger *slog.Logger, why string, reload func()) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if reload == nil {
					logger.Info("SIGHUP ignored: " + why)
					continue
				}
				reload()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
