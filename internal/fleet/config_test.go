package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/strictyaml"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	c.Resolve()
	want := Config{
		Size:         3,
		Host:         "127.0.0.1",
		Grace:        10 * time.Second,
		ReadyTimeout: 30 * time.Second,
		Check: CheckConfig{
			Interval:           2 * time.Second,
			Timeout:            time.Second,
			UnhealthyThreshold: 3,
			Liveness:           ProbeConfig{Path: "/livez", Port: PortHealth},
			Traffic:            ProbeConfig{Path: "/readyz", Port: PortHealth},
		},
		ReplaceOn:    ReplaceOnLiveness,
		Budget:       BudgetConfig{Max: Percent(25), Window: time.Minute},
		Freeze:       FreezeConfig{Share: 0.5, Window: time.Minute},
		Backoff:      BackoffConfig{Base: time.Second, Max: 30 * time.Second, Reset: time.Minute},
		StopTimeout:  15 * time.Second,
		ScheduleLead: 2 * time.Minute,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Fatalf("defaults (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestBudgetDefaultIsAQuarter(t *testing.T) {
	for size, want := range map[int]int{1: 1, 3: 1, 4: 1, 8: 2, 12: 3} {
		c := DefaultConfig()
		c.Size = size
		if got := c.Budget.Max.Of(c.Size); got != want {
			t.Errorf("size %d: budget.max %d, want %d", size, got, want)
		}
	}
}

func TestConfigFiles(t *testing.T) {
	wantErrs := map[string][]string{
		"unknown-field.bad.yaml": {"field replace_when not found"},
		"bad-duration.bad.yaml":  {"line 1", "into time.Duration"},
		"bad-values.bad.yaml": {
			`size: 1000: must be from 1 to 256`,
			`args[0]: "--listen": the fleet chooses the ports itself`,
			`host: "not-an-ip": not an IP address`,
			`check.timeout: 2s: must be at most check.interval (1s)`,
			`check.unhealthy_threshold: -1: must be at least 1`,
			`check.liveness.path: "livez": must be a path starting with "/"`,
			`check.liveness.port: "admin": must be "health" or "service"`,
			`replace_on: "lb": must be "liveness" or "traffic"`,
			`freeze.share: 1.5: must be in [0, 1]`,
			`backoff.max: 1s: must be at least backoff.base (10s)`,
		},
		"bad-schedule.bad.yaml": {
			`schedule_lead: -1s: must not be negative`,
			`schedule[1].name: "ok": schedule[0] has this name too; names must be unique`,
			`schedule[1].time_zone: "Mars/Olympus": not a known IANA time zone name such as "Europe/Berlin"`,
			`schedule[1].start: "0 8 * *": expected exactly 5 fields, found 4: [0 8 * *]`,
			`schedule[1].duration: 0s: must be positive`,
			`schedule[1].instances: 0: must be from 1 to 256`,
			`schedule[1].scope: "region": must be "host" or "fleet"`,
			`schedule[2].name: "": required: names the window in logs and events`,
			`schedule[2].start: "CRON_TZ=Europe/Berlin 0 8 * * *": the time zone goes in time_zone, not in start`,
			`schedule[2].duration: -1m0s: must be positive`,
			`schedule[2].instances: 257: must be from 1 to 256`,
			`schedule[3].time_zone: "Local": not an IANA time zone name such as "Europe/Berlin" ("Local" differs from host to host)`,
			`schedule[3].start: "0 0 30 2 *": matches no date`,
			`schedule[4].start: "TZ=x": the time zone goes in time_zone, not in start`,
			`schedule[5].name: "tab\tname": at most 64 printable characters`,
			`schedule[5].start: "0 25 * * *": end of range (25) above maximum (23): 25`,
		},
	}
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c, err := strictyaml.Parse(data, DefaultConfig())
			if strings.HasSuffix(name, ".good.yaml") {
				if err != nil {
					t.Fatalf("want valid: %v", err)
				}
				if c.Size < 1 {
					t.Fatalf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			want, ok := wantErrs[name]
			if !ok {
				t.Fatalf("no expected errors listed for %s; got: %v", name, err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; (strings.HasPrefix(name, "bad-values") || strings.HasPrefix(name, "bad-schedule")) && n != len(want) {
				t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
			}
		})
	}
}

func TestValidateRejectsZeroes(t *testing.T) {
	// Zeroes where 0 means nothing are errors, each naming its field
	// (budget.max and freeze.share may be 0: that disables them).
	err := (&Config{Freeze: FreezeConfig{Share: 0.5}}).Validate()
	for _, w := range []string{"size: 0", "ready_timeout", "check.interval", "check.timeout",
		"replace_on", "budget.window", "freeze.window", "backoff.base", "backoff.reset", "stop_timeout"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func FuzzConfig(f *testing.F) {
	testkit.Seed(f, "testdata/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := strictyaml.Parse(data, DefaultConfig())
		if err != nil {
			return
		}
		// A valid configuration builds working policies.
		g := NewGuardrails(c)
		g.Request(t0)
		NewBackoff(c.Backoff).Exited(t0, t0)
		// And a plan whose schedule evaluates (the cron parser sees
		// outside input).
		p, err := NewPlan(*c, nil)
		if err != nil {
			t.Fatalf("valid configuration, no plan: %v", err)
		}
		p.Boot(t0)
		p.Tick(t0.Add(25 * time.Hour))
		p.Next()
	})
}

// Resolve fills a window's empty time zone and scope, on a copy of the
// caller's list.
func TestScheduleResolve(t *testing.T) {
	ws := []Window{{Name: "w", Start: "0 8 * * *", Duration: time.Hour, Instances: 2}}
	c := DefaultConfig()
	c.Schedule = ws
	c.Resolve()
	if got := c.Schedule[0]; got.TimeZone != "UTC" || got.Scope != ScopeHost {
		t.Errorf("resolved window %+v, want time_zone UTC and scope host", got)
	}
	if ws[0].TimeZone != "" || ws[0].Scope != "" {
		t.Errorf("Resolve changed the caller's list: %+v", ws[0])
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Schedule = make([]Window, MaxWindows+1)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "schedule: 65: at most 64 windows") {
		t.Errorf("too many windows: %v", err)
	}
}
