//go:build linux

package repo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// unitDir holds the systemd units; unitDir/etc the /etc/spillway files
// they name.
const unitDir = "../../deploy/systemd"

// maxExposure is the highest `systemd-analyze security` exposure a unit
// may have, in tenths as --threshold takes it: 25 is 2.5 of 10 (0 is the
// most confined; the units score 1.5 and 1.8).
const maxExposure = "25"

// TestSystemdUnits runs `systemd-analyze verify` and `systemd-analyze
// security --offline` on deploy/systemd's units, and checks that each
// names a configuration shipped beside it, which loads, and a stop
// timeout that covers its drain. verify needs the ExecStart binary to
// exist: the units are copied with /usr/local/bin/spillway replaced by
// this test's own executable (verify only checks that it is executable;
// building spillway would add a link to every run), and a template as
// its instance 1.
func TestSystemdUnits(t *testing.T) {
	analyze := testkit.Binary(t, "/usr/bin/systemd-analyze", "systemd-analyze", "systemd")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob(filepath.Join(unitDir, "*.service"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in %s (%v)", unitDir, err)
	}
	tmp := t.TempDir()
	var copies []string
	for _, path := range units {
		name := strings.Replace(filepath.Base(path), "@.", "@1.", 1)
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { checkUnit(t, string(src)) })
		cp := filepath.Join(tmp, name)
		if err := os.WriteFile(cp, bytes.ReplaceAll(src, []byte("/usr/local/bin/spillway"), []byte(exe)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, cp)
	}

	// verify exits 0 on an unknown key or a value it cannot parse, and
	// says so: any line about our units fails the test.
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, copies...)...).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, tmp) || strings.Contains(line, "spillway") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	for _, cp := range copies {
		out, err := exec.Command(analyze, "security", "--offline=true", "--threshold="+maxExposure, "--no-pager", cp).CombinedOutput()
		score := regexp.MustCompile(`Overall exposure level for \S+: [0-9.]+ \S+`).Find(out)
		if err != nil || score == nil {
			t.Errorf("systemd-analyze security %s (threshold %s tenths): %v\n%s", filepath.Base(cp), maxExposure, err, out)
			continue
		}
		t.Log(string(score))
	}
}

// checkUnit checks a unit's settings against the files and the
// configuration they name.
func checkUnit(t *testing.T, unit string) {
	start := directive(t, unit, "ExecStart")
	args := strings.Fields(strings.ReplaceAll(start, "%i", "1"))
	if len(args) != 4 || args[0] != "/usr/local/bin/spillway" || args[2] != "--config" {
		t.Fatalf("ExecStart=%s: want /usr/local/bin/spillway COMMAND --config /etc/spillway/FILE", start)
	}
	command, file := args[1], args[3]
	if got := directive(t, unit, "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s: want /bin/kill -HUP $MAINPID (SIGHUP reloads)", got)
	}
	env := directive(t, unit, "EnvironmentFile")
	for _, f := range []string{file, env + ".example"} {
		rel, ok := strings.CutPrefix(f, "/etc/spillway/")
		if !ok {
			t.Errorf("%s is not in /etc/spillway", f)
			continue
		}
		if _, err := os.Stat(filepath.Join(unitDir, "etc", rel)); err != nil {
			t.Errorf("the example of %s: %v", f, err)
		}
	}
	f, err := config.Load(filepath.Join(unitDir, "etc", strings.TrimPrefix(file, "/etc/spillway/")), config.Default())
	if err != nil {
		t.Fatal(err)
	}
	f.Resolve() // as spillway does after loading
	if err := f.Validate(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var drain time.Duration
	switch command {
	case "lb":
		drain = f.LB.Server.DrainDelay + f.LB.Server.ShutdownTimeout
	case "login":
		drain = f.Login.Health.DrainDelay + f.Login.ShutdownTimeout
	default:
		t.Fatalf("ExecStart runs spillway %s: want lb or login", command)
	}
	stop, err := time.ParseDuration(directive(t, unit, "TimeoutStopSec"))
	if err != nil {
		t.Fatal(err)
	}
	const margin = 5 * time.Second
	if stop < drain+margin {
		t.Errorf("TimeoutStopSec=%v: the drain takes %v, so at least %v (systemd kills after it)", stop, drain, drain+margin)
	}
	// The balancer alone may bind a privileged port; nothing else gets a
	// capability.
	caps := directive(t, unit, "CapabilityBoundingSet")
	if want := map[string]string{"lb": "CAP_NET_BIND_SERVICE", "login": ""}[command]; caps != want || directive(t, unit, "AmbientCapabilities") != want {
		t.Errorf("CapabilityBoundingSet=%s AmbientCapabilities=%s: want %q for both", caps, directive(t, unit, "AmbientCapabilities"), want)
	}
	if n, err := strconv.Atoi(directive(t, unit, "LimitNOFILE")); err != nil || n < 16384 {
		t.Errorf("LimitNOFILE=%s: want a number, at least 16384", directive(t, unit, "LimitNOFILE"))
	}
}

// directive returns the value of a unit's key, which must appear once.
func directive(t *testing.T, unit, key string) string {
	t.Helper()
	var vals []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vals = append(vals, strings.TrimSpace(v))
		}
	}
	if len(vals) != 1 {
		t.Fatalf("%s= set %d times, want once", key, len(vals))
	}
	return vals[0]
}
