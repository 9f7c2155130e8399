package health

import (
	"net/http"
	"testing"
)

func TestClassifyAnswer(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		status int
		h      http.Header
		body   string
		want   Outcome
	}{
		{"200", 200, nil, `{}`, OutcomeOK},
		{"204", 204, nil, ``, OutcomeOK},
		{"401", 401, nil, `{"error":"invalid_ticket"}`, OutcomeClientError},
		{"429", 429, hdr("X-Spillway-Reason", "rate_limited"), ``, OutcomeClientError},
		{"503 shed header", 503, hdr("X-Spillway-Reason", "dependency_unavailable"), ``, OutcomeShed},
		{"503 shed body", 503, nil, `{"error":"dependency_unavailable","dependency":"backend"}`, OutcomeShed},
		{"503 overloaded body", 503, nil, `{"error":"overloaded"}`, OutcomeOverloaded},
		{"503 overloaded header", 503, hdr("X-Spillway-Reason", "overloaded"), `junk`, OutcomeOverloaded},
		{"503 header wins", 503, hdr("X-Spillway-Reason", "overloaded"), `{"error":"dependency_unavailable"}`, OutcomeOverloaded},
		{"503 no instance", 503, nil, `{"error":"no_healthy_instance"}`, OutcomeFailed},
		{"503 bare", 503, nil, `Service Unavailable`, OutcomeFailed},
		{"500", 500, nil, `{"error":"internal_error"}`, OutcomeFailed},
		{"502", 502, hdr("X-Spillway-Reason", "bad_gateway"), ``, OutcomeFailed},
		{"504", 504, nil, ``, OutcomeFailed},
		{"502 claiming shed", 502, hdr("X-Spillway-Reason", "dependency_unavailable"), ``, OutcomeFailed},
		// A redirect is an answer, not a failure of the system (the
		// dashboard always counted it so; the load generator counted it
		// failed before the two shared this rule).
		{"302", 302, nil, ``, OutcomeOK},
		{"304", 304, nil, ``, OutcomeOK},
		{"101", 101, nil, ``, OutcomeOK},
		{"no status", 0, nil, ``, OutcomeFailed},
		{"600", 600, nil, ``, OutcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyAnswer(tt.status, tt.h, []byte(tt.body)); got != tt.want {
				t.Errorf("ClassifyAnswer(%d, %v, %q) = %v, want %v", tt.status, tt.h, tt.body, got, tt.want)
			}
			if tt.h != nil {
				if got := Classify(tt.status, tt.h.Get(ReasonHeader)); got != tt.want {
					t.Errorf("Classify(%d, %q) = %v, want %v", tt.status, tt.h.Get(ReasonHeader), got, tt.want)
				}
			}
		})
	}
}

func TestOutcomeNames(t *testing.T) {
	want := []string{"ok", "client_error", "shed", "overloaded", "failed", "client_timeout"}
	for i, o := range Outcomes {
		if o.String() != want[i] {
			t.Errorf("Outcomes[%d] = %q, want %q", i, o, want[i])
		}
	}
	if got := Outcome(len(Outcomes)).String(); got != "unknown" {
		t.Errorf("an outcome past the list = %q, want unknown", got)
	}
}

func FuzzClassifyAnswer(f *testing.F) {
	f.Add(503, "", []byte(`{"error":"overloaded"}`))
	f.Add(503, "dependency_unavailable", []byte(``))
	f.Add(200, "", []byte(`{}`))
	f.Fuzz(func(t *testing.T, status int, reason string, body []byte) {
		h := http.Header{}
		if reason != "" {
			h.Set("X-Spillway-Reason", reason)
		}
		o := ClassifyAnswer(status, h, body)
		if o.String() == "unknown" || o == OutcomeClientTimeout {
			t.Errorf("ClassifyAnswer(%d, %q, %q) = %v", status, reason, body, o)
		}
	})
}
