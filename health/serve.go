package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Limits of the health server. Probes are tiny GETs: anything slow or large
// is not a probe and is cut off before it can tie the port up.
const (
	readHeaderTimeout = 2 * time.Second
	readTimeout       = 5 * time.Second
	// writeTimeout is the base; Serve adds the check budgets to it so that a
	// slow check is answered with 503 rather than a cut connection.
	writeTimeout    = 5 * time.Second
	idleTimeout     = 60 * time.Second
	maxHeaderBytes  = 8 << 10
	shutdownTimeout = 5 * time.Second
)

// Serve serves Handler on ln with an http.Server of its own, whose timeouts
// and header limit are set for probes, until ctx is done. Then it shuts the
// server down gracefully (in-flight requests see ctx cancelled, so a slow
// check ends at once), closes lingering connections after 5 s, and returns
// nil. It returns an error only if serving fails before ctx is done. Serve
// owns ln and closes it in every case; it starts no goroutine that outlives
// it.
//
// On shutdown, call Drain first and keep Serve running until the load
// balancer has seen /readyz fail; cancel its ctx last.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	wt := writeTimeout + s.checkTimeout
	if s.deep != nil {
		wt += s.deepTimeout
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      wt,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // owned here: Serve waits for it below

	s.log.Info("health: serving", "addr", addr)
	select {
	case err := <-errc:
		// The listener failed before ctx was done (Serve has closed it).
		return fmt.Errorf("serve health on %s: %w", addr, err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("health: graceful shutdown timed out, closing connections", "addr", addr, "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve health on %s: %w", addr, err)
	}
	s.log.Info("health: stopped", "addr", addr)
	return nil
}
