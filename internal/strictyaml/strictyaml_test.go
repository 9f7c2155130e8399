package strictyaml

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `yaml:"name"`
	Timeout time.Duration `yaml:"timeout"`
	Inner   struct {
		Count int `yaml:"count"`
	} `yaml:"inner"`
}

func (s *sample) Resolve() {
	if s.Name == "" {
		s.Name = "derived"
	}
}

var defaultSample = sample{Timeout: time.Second}

func (s *sample) Validate() error {
	if s.Inner.Count < 0 {
		return errFor("inner.count")
	}
	return nil
}

type fieldErr string

func (e fieldErr) Error() string { return string(e) + ": must not be negative" }

func errFor(f string) error { return fieldErr(f) }

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means success
	}{
		{"empty", "", ""},
		{"ok", "name: a\ntimeout: 250ms\ninner:\n  count: 3\n", ""},
		{"unknown top", "name: a\nbogus: 1\n", "line 2: field bogus not found"},
		{"unknown nested", "inner:\n  count: 1\n  extra: 2\n", "line 3: field extra not found"},
		{"bad duration", "timeout: soon\n", "line 1"},
		{"wrong type", "inner:\n  count: many\n", "line 2"},
		{"duplicate key", "name: a\nname: b\n", "line 2"},
		{"second document", "name: a\n---\nname: b\n", "second YAML document"},
		{"validate", "inner:\n  count: -1\n", "inner.count: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), defaultSample)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got.Timeout == 0 {
					t.Errorf("defaults not applied: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseDefaultsAfterDecode(t *testing.T) {
	got, err := Parse([]byte("timeout: 3s\n"), defaultSample)
	if err != nil {
		t.Fatal(err)
	}
	if got.Timeout != 3*time.Second {
		t.Errorf("Timeout = %v, want 3s (defaults must not override the file)", got.Timeout)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: a\ntimeout: 1s\n"))
	f.Add([]byte("inner: {count: 2}\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		_ = Decode(data, &s)
	})
}

func TestDecodeRefusesNonFiniteNumbers(t *testing.T) {
	type floats struct {
		A float64   `yaml:"a"`
		B []float64 `yaml:"b"`
		S string    `yaml:"s"`
	}
	for _, tt := range []struct{ doc, want string }{
		{"a: .nan\n", "line 1: .nan: must be a finite number"},
		{"a: 1\nb: [1, -.inf]\n", "line 2: -.inf: must be a finite number"},
		{"a: 1\nb:\n  - .Inf\n", "line 3: .Inf: must be a finite number"},
	} {
		var f floats
		if err := Decode([]byte(tt.doc), &f); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want %q", tt.doc, err, tt.want)
		}
	}
	// A string that says nan is a string.
	var f floats
	if err := Decode([]byte("a: 0.5\ns: \".nan\"\n"), &f); err != nil || f.A != 0.5 || f.S != ".nan" {
		t.Errorf("finite document: %v %+v", err, f)
	}
}
