//go:build unix

package etcdtest

import (
	"net/http"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	get := func() error {
		c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := c.Get(s.Endpoint() + "/health")
		if err == nil {
			res.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("GET /health after Start: %v", err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	if err := get(); err == nil {
		t.Fatal("GET /health answered after Stop")
	}
	s.Restart()
	if err := get(); err != nil {
		t.Fatalf("GET /health after Restart: %v", err)
	}
}
