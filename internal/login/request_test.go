package login

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeLogin(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string
		wantErr string
	}{
		{"ok", `{"ticket":"valid-1"}`, "valid-1", ""},
		{"whitespace", " {\"ticket\": \"t\"}\n", "t", ""},
		{"unknown field", `{"ticket":"t","x":1}`, "", "unknown field"},
		{"empty ticket", `{"ticket":""}`, "", "missing or empty"},
		{"no ticket", `{}`, "", "missing or empty"},
		{"not json", `ticket=1`, "", "decode body"},
		{"trailing", `{"ticket":"t"}{}`, "", "after the JSON object"},
		{"wrong type", `{"ticket":1}`, "", "decode body"},
		{"long ticket", `{"ticket":"` + strings.Repeat("a", maxTicketLen+1) + `"}`, "", "longer than"},
		{"too large", `{"ticket":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, "", "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeLogin(strings.NewReader(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Ticket != tt.want {
				t.Fatalf("got %q, %v; want %q", got.Ticket, err, tt.want)
			}
		})
	}
	if _, err := decodeLogin(strings.NewReader(strings.Repeat(" ", MaxBodyBytes+1))); !errors.Is(err, errTooLarge) {
		t.Errorf("oversized body: err = %v, want errTooLarge", err)
	}
}

func FuzzDecodeLogin(f *testing.F) {
	f.Add([]byte(`{"ticket":"valid-abc"}`))
	f.Add([]byte(`{"ticket":""}`))
	f.Add([]byte(`{"ticket":"x","extra":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeLogin(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if req.Ticket == "" || len(req.Ticket) > maxTicketLen {
			t.Fatalf("accepted an invalid ticket of length %d", len(req.Ticket))
		}
	})
}
