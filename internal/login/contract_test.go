package login

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// reportSchema compiles the report's JSON Schema, the contract's file in
// docs/contract.
func reportSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("..", "..", "docs", "contract", "health-report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("schema %s: %v", path, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(path, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(path)
	if err != nil {
		t.Fatalf("schema %s: %v", path, err)
	}
	return sch
}

// TestReportsMatchTheSchema: the /health reports of a real login instance
// in each of its states (backend not called yet, up, down, back up,
// draining) validate against docs/contract/health-report.schema.json, and
// the schema refuses reports that break the contract.
func TestReportsMatchTheSchema(t *testing.T) {
	sch := reportSchema(t)
	s := startStack(t, nil)
	raw := func(state string) any {
		t.Helper()
		res, err := s.client.Get(s.hURL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", state, ct)
		}
		data, err := io.ReadAll(io.LimitReader(res.Body, health.MaxReportBytes+1))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > health.MaxReportBytes {
			t.Errorf("%s: report of %d bytes, over %d", state, len(data), health.MaxReportBytes)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v\n%s", state, err, data)
		}
		if err := sch.Validate(doc); err != nil {
			t.Errorf("%s: the report breaks the schema: %v\n%s", state, err, data)
		}
		return doc
	}
	raw("started")
	if r := s.login("valid-a"); r.status != 200 {
		t.Fatalf("login: %d", r.status)
	}
	raw("backend up")
	s.setMode(backendsim.ModeHang)
	for range 3 {
		s.login("valid-a")
	}
	testkit.WaitFor(t, 5*time.Second, "backend down in the report", func() bool {
		return s.healthReport().Dependencies[BackendName].State == health.DepDown
	})
	raw("backend down")
	s.setMode(backendsim.ModeUp)
	testkit.WaitFor(t, 5*time.Second, "backend up in the report", func() bool {
		return s.healthReport().Dependencies[BackendName].State == health.DepUp
	})
	raw("backend back")

	// The schema has teeth: each of these breaks the contract.
	for name, body := range map[string]string{
		"state not in the enum": `{"dependencies":{"backend":{"state":"DOWN"}}}`,
		"negative limit":        `{"limit":-1}`,
		"limit not an integer":  `{"limit":2.5}`,
		"ready as a string":     `{"ready":"true"}`,
		"since not a time":      `{"dependencies":{"backend":{"state":"up","since":"yesterday"}}}`,
		"no state":              `{"dependencies":{"backend":{"breaker":"open"}}}`,
		"not an object":         `"ok"`,
		"no known field":        `{"status":"UP"}`,
		"empty":                 `{}`,
	} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		if sch.Validate(doc) == nil {
			t.Errorf("%s: %s passes the schema", name, body)
		}
	}
}

// TestDrainingReportMatchesTheSchema: the report of an instance shutting
// down says so and validates.
func TestDrainingReportMatchesTheSchema(t *testing.T) {
	sch := reportSchema(t)
	cfg := testConfig("")
	cfg.Health.DrainDelay = 2 * time.Second
	r := startShutdownRig(t, backendsim.Config{Mode: backendsim.ModeUp}, cfg)
	get := func() (health.Report, any) {
		t.Helper()
		res, err := r.client.Get(r.hURL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		var rep health.Report
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return rep, doc
	}
	testkit.WaitFor(t, 2*time.Second, "ready", func() bool { rep, _ := get(); return rep.Ready })
	r.cancel()
	var doc any
	testkit.WaitFor(t, time.Second, "draining in the report", func() bool {
		var rep health.Report
		rep, doc = get()
		return rep.Draining && !rep.Ready && rep.Phase == "draining"
	})
	if err := sch.Validate(doc); err != nil {
		t.Errorf("draining report breaks the schema: %v", err)
	}
	r.wait(t, 10*time.Second)
}
