//go:build unix

package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

// TestIncidentHAProxy: the incident survived with HAProxy in front
// (`spillway drill --data-plane haproxy`, issue 13): the spillway profile
// on the short incident, with the acceptance of TestIncident's spillway
// half: no replacement, a recovery within the bound (+ 2 s for a loaded
// machine), failed p99 under 50 ms during the outage, every request
// answered. About 45 s.
func TestIncidentHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole system with HAProxy for about 45s")
	}
	haproxytest.Binary(t)
	bin := spillwayBinary(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "drill", "--scenario", "testdata/incident-short.yaml", "--profile", "spillway", "--data-plane", "haproxy", "--out", out)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("spillway drill --data-plane haproxy: %v\n%s", err, log.String())
	}
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "spillway ") {
			t.Log(strings.TrimSpace(l))
		}
	}
	data, err := os.ReadFile(filepath.Join(out, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var sum struct {
		Profiles map[Profile]Summary `json:"profiles"`
		Details  map[Profile]Details `json:"details"`
	}
	if err := json.Unmarshal(data, &sum); err != nil {
		t.Fatal(err)
	}
	cur, curD := sum.Profiles[ProfileSpillway], sum.Details[ProfileSpillway]
	if cur.Replacements != 0 {
		t.Errorf("%d replacements, want 0", cur.Replacements)
	}
	if !cur.Recovered || *cur.TimeToRecoverS > recoveryBound.Seconds()+2 {
		t.Errorf("recovered %v after %v, want within %s + 2s", cur.Recovered, cur.TimeToRecoverS, recoveryBound)
	}
	if cur.FailedP99Ms >= 50 {
		t.Errorf("failed p99 %vms during the outage, want under 50ms", cur.FailedP99Ms)
	}
	if curD.ClientTimeoutsDuring != 0 || cur.Lost != 0 {
		t.Errorf("%d client timeouts during the outage, %d lost: want every request answered", curD.ClientTimeoutsDuring, cur.Lost)
	}
	md, err := os.ReadFile(filepath.Join(out, ReportFile))
	if err != nil || !strings.Contains(string(md), "HAProxy in front") {
		t.Errorf("the report does not say HAProxy was in front (%v)", err)
	}
	if t.Failed() {
		t.Logf("drill output:\n%s\nreport:\n%s", log.String(), md)
	}
}
