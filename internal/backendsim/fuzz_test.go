package backendsim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeValidate checks that the validate decoder never panics, accepts
// only a non-empty ticket, and accepts again what it accepted once encoded.
func FuzzDecodeValidate(f *testing.F) {
	for _, s := range []string{
		`{"ticket":"valid-alice"}`,
		`{"ticket":""}`,
		`{"ticket":"x","extra":1}`,
		`{"ticket":"x"} {}`,
		`null`,
		`{"ticket":"\u00e9\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ticket, err := decodeValidate(bytes.NewReader(data))
		if err != nil {
			return
		}
		if ticket == "" {
			t.Fatal("accepted an empty ticket")
		}
		b, err := json.Marshal(ValidateRequest{Ticket: ticket})
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeValidate(bytes.NewReader(b))
		if err != nil || again != ticket {
			t.Fatalf("round trip of %q: %q, %v", ticket, again, err)
		}
	})
}

// FuzzDecodeControl checks that the control decoder never panics and yields
// only values a Config accepts.
func FuzzDecodeControl(f *testing.F) {
	for _, s := range []string{
		`{"mode":"hang"}`,
		`{"mode":"up","latency":"20ms","slow_latency":"10s"}`,
		`{"latency":"-1s"}`,
		`{"latency":"9999999h"}`,
		`{"mode":null}`,
		`{"speed":1}`,
		`{}`,
		`{"capacity":2,"queue_size":64,"queue_timeout":"500ms"}`,
		`{"capacity":-1}`,
		`{"capacity":1e3}`,
		`{"capacity":2.5}`,
		`{"queue_size":99999999999999999999}`,
		`{"queue_timeout":"1e400s"}`,
		`{"capacity":null,"queue_timeout":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := decodeControl(bytes.NewReader(data))
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if u.mode != nil && *u.mode == "" {
			t.Fatal("accepted an empty mode")
		}
		cfg := u.applyTo(Config{})
		if err := cfg.Validate(); err != nil {
			t.Fatalf("decoded %s into an invalid config: %v", data, err)
		}
	})
}
