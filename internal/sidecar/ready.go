package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// errNotChecked: the service's readiness has not been checked yet.
var errNotChecked = errors.New("not checked yet")

// serviceReady polls the service's readiness endpoint and keeps the last
// result for the health server's readiness gate.
type serviceReady struct {
	cfg    ServiceReadyConfig
	log    *slog.Logger
	client *http.Client
	notify func() // the health server's Notify: the gate changed

	mu   sync.Mutex
	last error // nil: the last check passed
}

func newServiceReady(cfg ServiceReadyConfig, log *slog.Logger, notify func()) *serviceReady {
	return &serviceReady{
		cfg: cfg,
		log: log,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:                  nil,
				DialContext:            (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
				ResponseHeaderTimeout:  cfg.Timeout,
				TLSHandshakeTimeout:    cfg.Timeout,
				MaxIdleConnsPerHost:    1,
				IdleConnTimeout:        max(2*cfg.Interval, 30*time.Second),
				MaxResponseHeaderBytes: 16 << 10,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		notify: notify,
		last:   errNotChecked,
	}
}

// err is the readiness gate: nil once the last check passed.
func (s *serviceReady) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// run checks the service at once, then every Interval (start to start),
// until ctx is done; it returns nil.
func (s *serviceReady) run(ctx context.Context) error {
	defer s.client.CloseIdleConnections()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		err := s.check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.set(err)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check GETs the readiness URL once: a 2xx answer is ready.
func (s *serviceReady) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return fmt.Errorf("service readiness: %w", err)
	}
	req.Header.Set("User-Agent", "spillway-guard-readiness")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("service readiness: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("service readiness: GET %s: status %s", req.URL.Redacted(), resp.Status)
	}
	return nil
}

// set keeps a check's result and, when readiness changed, logs it and
// tells the health server.
func (s *serviceReady) set(err error) {
	s.mu.Lock()
	was := s.last
	s.last = err
	s.mu.Unlock()
	if (was == nil) == (err == nil) {
		return
	}
	if err != nil {
		s.log.Warn("service not ready", "url", s.cfg.URL, "error", err)
	} else {
		s.log.Info("service ready", "url", s.cfg.URL)
	}
	s.notify()
}
