package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestParseInstancesTestdata(t *testing.T) {
	want := map[string][]lb.Instance{
		"two.good.yaml":        {inst("10.0.0.1:8000", "10.0.0.1:9000"), inst("10.0.0.2:8000", "10.0.0.2:9000")},
		"empty-list.good.yaml": {},
	}
	wantErr := map[string]string{
		"unknown-field.bad.yaml":    "line 4: field weight not found",
		"bad-address.bad.yaml":      `line 5: instances[1].service: "10.0.0.2": not a host:port`,
		"duplicate.bad.yaml":        `line 4: instances[1].service: "10.0.0.1:8000": duplicate of instances[0].service`,
		"no-instances-key.bad.yaml": "instances: required",
		"syntax.bad.yaml":           "did not find expected '-' indicator",
		"top-list.bad.yaml":         "line 1: cannot unmarshal !!seq",
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) != len(want)+len(wantErr) {
		t.Fatalf("%d files in testdata, %d in the tables", len(files), len(want)+len(wantErr))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseInstances(data)
			if strings.HasSuffix(name, ".good.yaml") {
				if err != nil {
					t.Fatalf("ParseInstances: %v", err)
				}
				if got == nil || !cmp.Equal(got, want[name]) {
					t.Errorf("got %#v, want %#v", got, want[name])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), wantErr[name]) {
				t.Errorf("error = %v, want it to contain %q", err, wantErr[name])
			}
		})
	}
}

func TestParseInstancesEmpty(t *testing.T) {
	for _, data := range []string{"", "  \n", "instances:\n", "instances: ~\n"} {
		if got, err := ParseInstances([]byte(data)); err == nil {
			t.Errorf("ParseInstances(%q) = %v, want an error (a half-written file is not an empty set)", data, got)
		}
	}
}

// writeAtomic writes data the way orchestrators do: a temporary file in
// the same directory, renamed over path.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeInPlace(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	oneYAML = "instances:\n  - {service: 127.0.0.1:8001, health: 127.0.0.1:9001}\n"
	twoYAML = "instances:\n  - {service: 127.0.0.1:8001, health: 127.0.0.1:9001}\n  - {service: 127.0.0.1:8002, health: 127.0.0.1:9002}\n"
	badYAML = "instances:\n  - service: 127.0.0.1:8003\n    health: 127.0.0.1:9003\n    bogus: 1\n"
)

var (
	oneSet = []lb.Instance{inst("127.0.0.1:8001", "127.0.0.1:9001")}
	twoSet = []lb.Instance{inst("127.0.0.1:8001", "127.0.0.1:9001"), inst("127.0.0.1:8002", "127.0.0.1:9002")}
)

// startFile writes content to a fresh instance file and watches it; the
// watch's interval is long, so that what the test sees comes from change
// events unless it says otherwise.
func startFile(t *testing.T, content string, interval time.Duration) (path string, rec *recorder, log *testkit.SyncBuffer, stop func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "instances.yaml")
	writeInPlace(t, path, content)
	logger, buf := testLog()
	f, err := NewFile(FileConfig{Path: path, Interval: interval, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	rec = &recorder{}
	stop = testkit.Go(t, "File.Watch", 5*time.Second, func(ctx context.Context) error { return f.Watch(ctx, rec.update) })
	return path, rec, buf, stop
}

func TestFileWatch(t *testing.T) {
	path, rec, buf, stop := startFile(t, oneYAML, time.Hour)
	rec.waitSet(t, 1, oneSet)

	t.Run("atomic rename", func(t *testing.T) {
		writeAtomic(t, path, twoYAML)
		rec.waitSet(t, 2, twoSet)
	})
	t.Run("in-place write", func(t *testing.T) {
		writeInPlace(t, path, oneYAML)
		rec.waitSet(t, 3, oneSet)
	})
	// keepsSet checks that the watch refuses a change to the file: it
	// waits for logged in the log (what: the refusal), finds still n sets
	// passed (why: the reason), then writes content and waits for set n+1,
	// want.
	keepsSet := func(t *testing.T, what, logged string, n int, why, content string, want []lb.Instance) {
		t.Helper()
		testkit.WaitFor(t, 5*time.Second, what+" logged", func() bool {
			return strings.Contains(buf.String(), logged)
		})
		if got := rec.count(); got != n {
			t.Fatalf("%d sets passed, want still %d (%s)", got, n, why)
		}
		writeAtomic(t, path, content)
		rec.waitSet(t, n+1, want)
	}
	t.Run("invalid file keeps the set", func(t *testing.T) {
		writeAtomic(t, path, badYAML)
		keepsSet(t, "the refusal", "line 4: field bogus not found", 3, "the invalid file's refused", twoYAML, twoSet)
	})
	t.Run("deleted file keeps the set", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		keepsSet(t, "the missing file", "no such file", 4, "a deleted file is no empty set", oneYAML, oneSet)
	})
	t.Run("zero instances", func(t *testing.T) {
		writeAtomic(t, path, "instances: []\n")
		rec.waitSet(t, 6, []lb.Instance{})
	})
	if err := stop(); err != nil {
		t.Errorf("Watch returned %v after its context's cancel, want nil", err)
	}
	if strings.Contains(buf.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", buf)
	}
}

// The periodic re-read finds a change that no event announced: here, one
// in a directory that was replaced (its watch lost with it).
func TestFilePeriodicReread(t *testing.T) {
	path, rec, buf, _ := startFile(t, oneYAML, 200*time.Millisecond)
	rec.waitSet(t, 1, oneSet)
	dir := filepath.Dir(path)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the missing file logged", func() bool {
		return strings.Contains(buf.String(), "no such file")
	})
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, path, twoYAML)
	rec.waitSet(t, 2, twoSet)
	if !strings.Contains(buf.String(), "watching the file's directory again") {
		t.Errorf("the watch was not taken up again:\n%s", buf)
	}
}

// Watch starts from the file as it is then; refused, from the set NewFile
// read.
func TestFileWatchStartsFromLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "instances.yaml")
	writeInPlace(t, path, oneYAML)
	logger, buf := testLog()
	f, err := NewFile(FileConfig{Path: path, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, path, badYAML)
	rec := &recorder{}
	testkit.Go(t, "File.Watch", 5*time.Second, func(ctx context.Context) error { return f.Watch(ctx, rec.update) })
	rec.waitSet(t, 1, oneSet)
	testkit.WaitFor(t, 5*time.Second, "the refusal logged", func() bool {
		return strings.Contains(buf.String(), "field bogus not found")
	})
}

func TestNewFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	writeInPlace(t, bad, badYAML)
	for _, tt := range []struct {
		c    FileConfig
		want string
	}{
		{FileConfig{Path: missing}, missing + ": no such file"},
		{FileConfig{Path: bad}, "line 4: field bogus not found"},
		{FileConfig{Path: dir}, "is a directory"},
		{FileConfig{}, "no path"},
		{FileConfig{Path: bad, Interval: -time.Second}, "interval"},
	} {
		if _, err := NewFile(tt.c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewFile(%+v) = %v, want an error containing %q", tt.c, err, tt.want)
		}
	}
}
