package health

import (
	"encoding/json"
	"mime"
	"strconv"
	"strings"
	"time"
)

type ietfDocument struct {
	Status   string                    `json:"status"`
	Checks   map[string][]ietfCheckOut `json:"checks,omitempty"`
	Spillway Extension                 `json:"spillway"`
}

type ietfCheckOut struct {
	ComponentID   string `json:"componentId"`
	ComponentType string `json:"componentType"`
	Status        string `json:"status"`
	Time          string `json:"time,omitempty"`
	Output        string `json:"output,omitempty"`
}

// MarshalIETF renders r as an IETF health-check document
// (application/health+json): "status" is "fail" when the instance is not
// ready (starting, warming, draining), "warn" when it is ready and a
// dependency is down or unknown, else "pass"; each dependency is a check
// "NAME" of componentType "component" (up pass, down fail, unknown warn;
// "time" its since, "output" its last error); the member "spillway" (an
// Extension) carries readiness, the load figures and the version, so
// that DecodeReport gives r back.
func MarshalIETF(r Report) ([]byte, error) {
	doc := ietfDocument{Status: "pass"}
	ready, draining := r.Ready, r.Draining
	doc.Spillway = Extension{
		Ready: &ready, Draining: &draining, Phase: r.Phase, ReadyForSeconds: r.ReadyForSeconds,
		InFlight: r.InFlight, Limit: r.Limit, Queue: r.Queue, Version: r.Version,
	}
	if len(r.Dependencies) > 0 {
		doc.Checks = make(map[string][]ietfCheckOut, len(r.Dependencies))
	}
	for name, d := range r.Dependencies {
		c := ietfCheckOut{ComponentID: name, ComponentType: "component", Status: "warn", Output: d.LastError}
		switch d.State {
		case DepUp:
			c.Status = "pass"
		case DepDown:
			c.Status = "fail"
			doc.Status = "warn"
		default:
			if c.Output == "" {
				c.Output = "no call or probe has completed yet"
			}
			doc.Status = "warn"
		}
		if !d.Since.IsZero() {
			c.Time = d.Since.UTC().Format(time.RFC3339Nano)
		}
		doc.Checks[name] = []ietfCheckOut{c}
	}
	if !r.Ready {
		doc.Status = "fail"
	}
	return json.Marshal(doc)
}

// wantsIETF reports whether an Accept header prefers
// application/health+json: it is listed with q > 0 and application/json
// is not listed with a higher q. Wildcards choose spillway's own format.
func wantsIETF(accept string) bool {
	if !strings.Contains(accept, "health+json") {
		return false
	}
	qHealth, qJSON := 0.0, 0.0
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			} else {
				q = 0
			}
		}
		switch mt {
		case ContentTypeHealthJSON:
			qHealth = max(qHealth, q)
		case ContentTypeJSON:
			qJSON = max(qJSON, q)
		}
	}
	return qHealth > 0 && qHealth >= qJSON
}
