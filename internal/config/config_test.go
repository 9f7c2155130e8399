package config

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

func (s *sample) SetDefaults() {
	if s.Timeout == 0 {
		s.Timeout = time.Second
	}
}

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
			got, err := Parse[sample]([]byte(tt.in))
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
	got, err := Parse[sample]([]byte("timeout: 3s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Timeout != 3*time.Second {
		t.Errorf("Timeout = %v, want 3s (defaults must not override the file)", got.Timeout)
	}
}

func TestCheckHostPort(t *testing.T) {
	for _, s := range []string{"127.0.0.1:80", ":0", "localhost:8080", "[::1]:9"} {
		if err := CheckHostPort("x", s); err != nil {
			t.Errorf("CheckHostPort(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"x:y", "nohost", "1.2.3.4:99999", ""} {
		if err := CheckHostPort("lb.listen", s); err == nil || !strings.HasPrefix(err.Error(), "lb.listen: ") {
			t.Errorf("CheckHostPort(%q) = %v, want an error naming the field", s, err)
		}
	}
}

func TestCheckHTTPURL(t *testing.T) {
	if err := CheckHTTPURL("u", "http://127.0.0.1:9000"); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"127.0.0.1:9000", "ftp://x", "http://", "::"} {
		if err := CheckHTTPURL("backend.url", s); err == nil {
			t.Errorf("CheckHTTPURL(%q) = nil", s)
		}
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
