package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// reportPoll is how often watchReports reads every instance's /health: the
// resolution of the reported mark.
const reportPoll = 10 * time.Millisecond

// watchReports reads every instance's /health report from from until one
// of them reports a dependency down, or until ctx is done or until is
// reached. It returns when that report was asked for (an upper bound on
// how late the instance said it, by at most reportPoll plus one round of
// reads) and whether one was seen.
func watchReports(ctx context.Context, client *http.Client, urls []string, from, until time.Time) (time.Time, bool) {
	if err := sleepUntil(ctx, from); err != nil {
		return time.Time{}, false
	}
	tick := time.NewTicker(reportPoll)
	defer tick.Stop()
	for time.Now().Before(until) {
		for _, u := range urls {
			asked := time.Now()
			if reportsDown(ctx, client, u) {
				return asked, true
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-tick.C:
		}
	}
	return time.Time{}, false
}

// reportsDown reads one /health report and says whether it has a
// dependency down; an unreadable report says no.
func reportsDown(ctx context.Context, client *http.Client, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*reportPoll)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var r health.Report
	if err := json.NewDecoder(io.LimitReader(res.Body, health.MaxReportBytes)).Decode(&r); err != nil {
		return false
	}
	for _, d := range r.Dependencies {
		if d.State == health.DepDown {
			return true
		}
	}
	return false
}
