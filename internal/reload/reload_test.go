package reload

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestGauges: a success sets both gauges, a failure only the first, and
// a success after it sets both again.
func TestGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	start := time.Unix(1000, 500_000_000)
	g, err := New(reg, start)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ok, at string) {
		t.Helper()
		want := `# HELP spillway_config_last_reload_success_timestamp_seconds When the running configuration was loaded: the last successful reload, or the start.
# TYPE spillway_config_last_reload_success_timestamp_seconds gauge
spillway_config_last_reload_success_timestamp_seconds ` + at + `
# HELP spillway_config_last_reload_successful 1 if the last configuration reload (SIGHUP), or the load at start, succeeded, else 0.
# TYPE spillway_config_last_reload_successful gauge
spillway_config_last_reload_successful ` + ok + `
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
			t.Error(err)
		}
	}
	check("1", "1000.5")
	g.Record(errors.New("bad file"), time.Unix(2000, 0))
	check("0", "1000.5")
	if g.Successful() {
		t.Error("Successful after a failure")
	}
	g.Record(nil, time.Unix(3000, 0))
	check("1", "3000")
	if _, err := New(reg, start); err == nil {
		t.Error("a second New on the same registry: no error")
	}
}
