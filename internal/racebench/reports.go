package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
)

// markPoll is how often watch asks: the resolution of the reported and
// door-shedding marks.
const markPoll = 10 * time.Millisecond

// watch asks probe every markPoll from from until it says yes, ctx is done
// or until is reached. It returns when the asking that said yes began
// (for a report, an upper bound on when the instance said it, by at most
// markPoll plus one round of asking) and whether one did.
func watch(ctx context.Context, from, until time.Time, probe func(context.Context) bool) (time.Time, bool) {
	if err := sleepUntil(ctx, from); err != nil {
		return time.Time{}, false
	}
	tick := time.NewTicker(markPoll)
	defer tick.Stop()
	for time.Now().Before(until) {
		asked := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 5*markPoll)
		yes := probe(pctx)
		cancel()
		if yes {
			return asked, true
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-tick.C:
		}
	}
	return time.Time{}, false
}

// anyReportsDown is a probe: some instance's /health report has a
// dependency down.
func anyReportsDown(client *http.Client, urls []string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		return slices.ContainsFunc(urls, func(u string) bool {
			var r health.Report
			if !getJSON(ctx, client, u, health.MaxReportBytes, &r) {
				return false
			}
			for _, d := range r.Dependencies {
				if d.State == health.DepDown {
					return true
				}
			}
			return false
		})
	}
}

// lbShedding is a probe: spillway lb's /status has a dependency shedding.
func lbShedding(client *http.Client, statusURL string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		var st struct {
			Dependencies []lb.DependencyStatus `json:"dependencies"`
		}
		if !getJSON(ctx, client, statusURL, 4<<20, &st) {
			return false
		}
		return slices.ContainsFunc(st.Dependencies, func(d lb.DependencyStatus) bool { return d.State == lb.ShedShedding })
	}
}

// mapShedding is a probe: HAProxy's share map has a route at 0, so that
// HAProxy answers its requests 503 itself.
func mapShedding(rt *haproxy.Runtime, mapFile string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		entries, err := rt.ShowMap(ctx, mapFile)
		return err == nil && slices.ContainsFunc(entries, func(e haproxy.MapEntry) bool { return e.Value == "0" })
	}
}

// getJSON GETs url and decodes at most limit bytes of its body into v; an
// error or a non-200 answer says false.
func getJSON(ctx context.Context, client *http.Client, url string, limit int64, v any) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	return res.StatusCode == http.StatusOK && json.NewDecoder(io.LimitReader(res.Body, limit)).Decode(v) == nil
}
