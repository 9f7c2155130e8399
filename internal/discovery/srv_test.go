package discovery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

const loginSRV = "_login._tcp.example.test."

// watchSRV starts an SRV's Watch against dns; each send on tick starts
// one resolution, and the send returns once the resolution before it has
// finished (Watch takes the tick only between resolutions).
func watchSRV(t *testing.T, dns *dnsServer, c SRVConfig) (rec *recorder, log *testkit.SyncBuffer, tick chan<- time.Time, stop func() error) {
	t.Helper()
	logger, buf := testLog()
	ticks := make(chan time.Time)
	c.Resolver, c.Log = dns.resolver(), logger
	c.After = func(d time.Duration) <-chan time.Time {
		if d != c.Interval && !(c.Interval == 0 && d == DefaultSRVInterval) {
			t.Errorf("After(%v), want the interval", d)
		}
		return ticks
	}
	s, err := NewSRV(c)
	if err != nil {
		t.Fatal(err)
	}
	rec = &recorder{}
	stop = testkit.Go(t, "SRV.Watch", 5*time.Second, func(ctx context.Context) error { return s.Watch(ctx, rec.update) })
	return rec, buf, ticks, stop
}

// settle returns once the resolution a tick started has finished.
func settle(tick chan<- time.Time) { tick <- time.Time{} }

func TestSRVWatch(t *testing.T) {
	dns := startDNS(t)
	dns.setSRV(loginSRV, "b.example.test:8000", "a.example.test:8000", "a.example.test:8000")
	dns.setIP("a.example.test", "127.0.0.2")
	dns.setIP("b.example.test", "127.0.0.3")
	rec, buf, tick, stop := watchSRV(t, dns, SRVConfig{Name: loginSRV, HealthPort: 9000})

	// Duplicates dropped, sorted by address whatever the answer's order.
	first := []lb.Instance{inst("127.0.0.2:8000", "127.0.0.2:9000"), inst("127.0.0.3:8000", "127.0.0.3:9000")}
	rec.waitSet(t, 1, first)

	t.Run("changed answer", func(t *testing.T) {
		dns.setSRV(loginSRV, "c.example.test:8001", "b.example.test:8000")
		dns.setIP("c.example.test", "127.0.0.1", "::1") // dual stack: one instance, IPv4
		tick <- time.Time{}
		rec.waitSet(t, 2, []lb.Instance{inst("127.0.0.1:8001", "127.0.0.1:9000"), inst("127.0.0.3:8000", "127.0.0.3:9000")})
	})
	t.Run("unchanged answer passes nothing", func(t *testing.T) {
		tick <- time.Time{}
		settle(tick)
		if n := rec.count(); n != 2 {
			t.Errorf("%d sets passed, want still 2", n)
		}
	})
	t.Run("failed lookups keep the set", func(t *testing.T) {
		want := rec.last()
		// After each change, two settles: the first waits for the
		// resolution under way (begun before the change) and starts one,
		// the second waits for that one, wholly under the change. (One
		// settle left the last resolution running when the log was read.)
		dns.setFail(true)
		settle(tick)
		settle(tick)
		dns.setFail(false)
		dns.setSRV(loginSRV) // NXDOMAIN
		settle(tick)
		settle(tick)
		dns.setSRV(loginSRV, "gone.example.test:8000") // a target not found: no instance
		settle(tick)
		settle(tick)
		if n := rec.count(); n != 2 || !cmp.Equal(rec.last(), want) {
			t.Errorf("%d sets passed, the last %v; want still 2, the last %v", n, rec.last(), want)
		}
		for _, msg := range []string{"server misbehaving", "no such host", "1 records, no instance"} {
			if !strings.Contains(buf.String(), msg) {
				t.Errorf("log lacks %q:\n%s", msg, buf)
			}
		}
	})
	t.Run("recovery", func(t *testing.T) {
		dns.setSRV(loginSRV, "a.example.test:8000", "gone.example.test:8000")
		tick <- time.Time{}
		rec.waitSet(t, 3, []lb.Instance{inst("127.0.0.2:8000", "127.0.0.2:9000")})
		if !strings.Contains(buf.String(), "discovery recovered") {
			t.Errorf("recovery not logged:\n%s", buf)
		}
	})
	if err := stop(); err != nil {
		t.Errorf("Watch returned %v after its context's cancel, want nil", err)
	}
}

// Until a lookup succeeds Watch passes no set: an empty one would turn
// every client away.
func TestSRVFirstLookupFails(t *testing.T) {
	dns := startDNS(t)
	dns.setFail(true)
	rec, _, tick, _ := watchSRV(t, dns, SRVConfig{Name: loginSRV})
	settle(tick)
	if n := rec.count(); n != 0 {
		t.Fatalf("%d sets passed before any lookup succeeded", n)
	}
	dns.setFail(false)
	dns.setSRV(loginSRV, "a.example.test:8000")
	dns.setIP("a.example.test", "127.0.0.2")
	settle(tick)
	// No health option: the health address is the service address.
	rec.waitSet(t, 1, []lb.Instance{inst("127.0.0.2:8000", "127.0.0.2:8000")})
}

// health_srv pairs each service record with the health record of its
// target, as a headless service's two named ports give them.
func TestSRVHealthName(t *testing.T) {
	const healthSRV = "_health._tcp.example.test"
	dns := startDNS(t)
	dns.setSRV(loginSRV, "a.example.test:8000", "b.example.test:8000", "c.example.test:8000", "d.example.test:8000", "d.example.test:8001")
	dns.setSRV(healthSRV, "a.example.test:9000", "B.example.test.:9001", "d.example.test:9000", "d.example.test:9001")
	for _, n := range []string{"a", "b", "c", "d"} {
		dns.setIP(n+".example.test", map[string]string{"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4", "d": "127.0.0.5"}[n])
	}
	rec, buf, _, _ := watchSRV(t, dns, SRVConfig{Name: loginSRV, HealthName: healthSRV, Interval: time.Minute})
	rec.waitSet(t, 1, []lb.Instance{inst("127.0.0.2:8000", "127.0.0.2:9000"), inst("127.0.0.3:8000", "127.0.0.3:9001")})
	for _, msg := range []string{"c.example.test:8000: no _health._tcp.example.test record", "d.example.test has several"} {
		if !strings.Contains(buf.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, buf)
		}
	}
}

func TestNewSRVErrors(t *testing.T) {
	for _, tt := range []struct {
		c    SRVConfig
		want string
	}{
		{SRVConfig{}, "name: \"\": required"},
		{SRVConfig{Name: "bad name"}, "not a DNS name"},
		{SRVConfig{Name: loginSRV, Interval: -1}, "interval"},
		{SRVConfig{Name: loginSRV, HealthPort: 70000}, "health_port: 70000"},
		{SRVConfig{Name: loginSRV, HealthPort: 9000, HealthName: "x.test"}, "give one, not both"},
	} {
		if _, err := NewSRV(tt.c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewSRV(%+v) = %v, want an error containing %q", tt.c, err, tt.want)
		}
	}
}
