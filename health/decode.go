package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Format is the format an instance's health report came in.
type Format string

// The report formats DecodeReport understands (docs/CONTRACT.md,
// "Reports in other formats").
const (
	// FormatSpillway is Report, spillway's own /health document.
	FormatSpillway Format = "spillway"
	// FormatIETF is the IETF health-check draft
	// (draft-inadarei-api-health-check, application/health+json).
	FormatIETF Format = "ietf"
	// FormatSpring is Spring Boot Actuator's health document.
	FormatSpring Format = "spring"
)

// Media types of the report formats.
const (
	ContentTypeJSON       = "application/json"
	ContentTypeHealthJSON = "application/health+json"
	// ContentTypeSpring is Spring Boot 2.2+'s own type; Actuator also
	// answers application/json with the same document.
	ContentTypeSpring = "application/vnd.spring-boot.actuator.v3+json"
)

// The reasons a report is unusable, the values of ReportError.Reason. The
// set is fixed and the strings are stable: spillway lb counts and shows
// them (spillway_lb_report_unusable_total{reason}).
const (
	// UnusableUnreachable: no answer (refused, reset, timed out).
	UnusableUnreachable = "unreachable"
	// UnusableBadStatus: an answer other than 200 or 503.
	UnusableBadStatus = "bad_status"
	// UnusableTooLarge: a body larger than MaxReportBytes.
	UnusableTooLarge = "too_large"
	// UnusableNotJSON: a body that is not JSON (/livez's "ok", HTML...).
	UnusableNotJSON = "not_json"
	// UnusableWrongShape: JSON, but none of the understood formats.
	UnusableWrongShape = "wrong_shape"
	// UnusableBadValue: one of the formats, with a field of the wrong
	// type or out of range (a negative limit, a dependency state that is
	// not "up", "down" or "unknown", an unknown status).
	UnusableBadValue = "bad_value"
)

// UnusableReasons lists every reason, in a fixed order.
var UnusableReasons = [...]string{UnusableUnreachable, UnusableBadStatus, UnusableTooLarge, UnusableNotJSON, UnusableWrongShape, UnusableBadValue}

// ReportError says why a report cannot be used. errors.Is matches it
// against the sentinel of its Reason (ErrReportNotJSON...), whatever its
// Detail; errors.As gives the Reason and the Detail.
type ReportError struct {
	// Reason is one of the Unusable* constants.
	Reason string
	// Detail says what was wrong in plain words, for a log or a person.
	// It quotes no more than a few bytes of the body.
	Detail string
	// Err is the underlying error, if any.
	Err error
}

// Sentinels for errors.Is, one per reason.
var (
	ErrReportUnreachable = &ReportError{Reason: UnusableUnreachable}
	ErrReportBadStatus   = &ReportError{Reason: UnusableBadStatus}
	ErrReportTooLarge    = &ReportError{Reason: UnusableTooLarge}
	ErrReportNotJSON     = &ReportError{Reason: UnusableNotJSON}
	ErrReportWrongShape  = &ReportError{Reason: UnusableWrongShape}
	ErrReportBadValue    = &ReportError{Reason: UnusableBadValue}
)

func (e *ReportError) Error() string {
	s := "health report unusable (" + e.Reason + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ReportError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's Reason.
func (e *ReportError) Is(target error) bool {
	t, ok := target.(*ReportError)
	return ok && t.Detail == "" && t.Err == nil && t.Reason == e.Reason
}

func unusable(reason string, err error, format string, args ...any) *ReportError {
	return &ReportError{Reason: reason, Detail: fmt.Sprintf(format, args...), Err: err}
}

// Unreachable wraps the error of a report request that got no answer as
// a ReportError with Reason UnusableUnreachable.
func Unreachable(err error) error {
	return &ReportError{Reason: UnusableUnreachable, Detail: "no answer", Err: err}
}

// ReadReport reads a report request's answer and decodes it with
// DecodeReport. A 200 and a 503 are both read (Spring Boot and many IETF
// services answer 503 with their document when something is down); any
// other status is UnusableBadStatus. It reads at most MaxReportBytes+1
// bytes of the body and does not close it.
func ReadReport(resp *http.Response) (Report, Format, error) {
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return Report{}, "", unusable(UnusableBadStatus, nil, "status %d, want 200 (or 503 with a report)", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReportBytes+1))
	if err != nil {
		return Report{}, "", &ReportError{Reason: UnusableUnreachable, Detail: "reading the body", Err: err}
	}
	return DecodeReport(resp.Header.Get("Content-Type"), data)
}

// DecodeReport decodes an instance's health report in any of the
// understood formats, chosen by contentType (the answer's Content-Type;
// "" when unknown) first, then by shape: application/health+json is the
// IETF draft, Spring Boot's v3+json is Spring, anything else is told by
// its fields (docs/CONTRACT.md, "Reports in other formats"). It returns
// the report as spillway's Report, the format it came in, or a
// *ReportError. Unknown fields are ignored in every format.
func DecodeReport(contentType string, data []byte) (Report, Format, error) {
	if len(data) > MaxReportBytes {
		return Report{}, "", unusable(UnusableTooLarge, nil, "%d bytes or more, the limit is %d", len(data), MaxReportBytes)
	}
	if !json.Valid(data) {
		return Report{}, "", unusable(UnusableNotJSON, nil, "body %s is not JSON", quoteStart(data))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return Report{}, "", unusable(UnusableWrongShape, nil, "body %s is not a JSON object", quoteStart(data))
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	var f Format
	switch mt {
	case ContentTypeHealthJSON:
		f = FormatIETF
	case ContentTypeSpring:
		f = FormatSpring
	default:
		var ok bool
		if f, ok = shapeOf(top); !ok {
			return Report{}, "", unusable(UnusableWrongShape, nil, "a JSON object with none of the fields of a spillway, IETF health+json or Spring Boot report (fields: %s)", fieldList(top))
		}
	}
	var rep Report
	var err error
	switch f {
	case FormatIETF:
		rep, err = decodeIETF(top)
	case FormatSpring:
		rep, err = decodeSpring(top)
	default:
		rep, err = decodeSpillway(data)
	}
	if err != nil {
		return Report{}, "", err
	}
	return rep, f, nil
}

// spillwayFields are Report's JSON names: an object with any of them is a
// spillway report.
var spillwayFields = [...]string{"ready", "ready_for_s", "draining", "phase", "in_flight", "limit", "queue", "dependencies", "version"}

// shapeOf tells a report's format by its fields: "checks" is IETF,
// "components" (or Boot 2.0-2.1's "details") Spring; else a "status"
// string tells by its value (lower-case pass/ok/up/warn/fail/error/down
// IETF, upper-case UP/DOWN/OUT_OF_SERVICE/UNKNOWN Spring); else any of
// Report's fields makes a spillway report.
func shapeOf(top map[string]json.RawMessage) (Format, bool) {
	if _, ok := top["checks"]; ok {
		return FormatIETF, true
	}
	if _, ok := top["components"]; ok {
		return FormatSpring, true
	}
	if raw, ok := top["status"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if _, ok := ietfStatus[s]; ok {
				return FormatIETF, true
			}
			if _, ok := springStatus[s]; ok {
				return FormatSpring, true
			}
		}
	}
	if _, ok := top["details"]; ok {
		if _, ok := top["status"]; ok {
			return FormatSpring, true
		}
	}
	for _, k := range spillwayFields {
		if _, ok := top[k]; ok {
			return FormatSpillway, true
		}
	}
	return "", false
}

func decodeSpillway(data []byte) (Report, error) {
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return Report{}, unusable(UnusableBadValue, err, "a spillway report with a field of the wrong type")
	}
	switch {
	case rep.Limit < 0:
		return Report{}, unusable(UnusableBadValue, nil, "limit %d is negative", rep.Limit)
	case rep.InFlight < 0:
		return Report{}, unusable(UnusableBadValue, nil, "in_flight %d is negative", rep.InFlight)
	case rep.Queue < 0:
		return Report{}, unusable(UnusableBadValue, nil, "queue %d is negative", rep.Queue)
	case rep.ReadyForSeconds < 0:
		return Report{}, unusable(UnusableBadValue, nil, "ready_for_s %g is negative", rep.ReadyForSeconds)
	}
	for _, name := range sortedKeys(rep.Dependencies) {
		d := rep.Dependencies[name]
		switch d.State {
		case "":
			d.State = DepUnknown // every field is optional
			rep.Dependencies[name] = d
		case DepUp, DepDown, DepUnknown:
		default:
			return Report{}, unusable(UnusableBadValue, nil, "dependencies.%s.state %q is not %q, %q or %q", name, d.State, DepUp, DepDown, DepUnknown)
		}
	}
	return rep, nil
}

// ietfStatus maps the IETF draft's status values to a dependency state.
var ietfStatus = map[string]string{
	"pass": DepUp, "ok": DepUp, "up": DepUp,
	"warn": DepUp,
	"fail": DepDown, "error": DepDown, "down": DepDown,
}

// springStatus maps Spring Boot's built-in statuses to a dependency state.
var springStatus = map[string]string{
	"UP": DepUp, "DOWN": DepDown, "OUT_OF_SERVICE": DepDown, "UNKNOWN": DepUnknown,
}

// Extension is the object a foreign document (IETF: the top-level member
// "spillway"; Spring: the details of a component named "spillway") may
// carry for what only spillway's report says. Every field is optional;
// Ready and Draining, when present, override what the document's status
// implies.
type Extension struct {
	Ready           *bool   `json:"ready,omitempty"`
	Draining        *bool   `json:"draining,omitempty"`
	Phase           string  `json:"phase,omitempty"`
	ReadyForSeconds float64 `json:"ready_for_s,omitempty"`
	InFlight        int     `json:"in_flight,omitempty"`
	Limit           int     `json:"limit,omitempty"`
	Queue           int     `json:"queue,omitempty"`
	Version         string  `json:"version,omitempty"`
}

// ExtensionName is the IETF member and the Spring component that carry an
// Extension.
const ExtensionName = "spillway"

type ietfCheck struct {
	Status        *string `json:"status"`
	ComponentID   string  `json:"componentId"`
	ComponentType string  `json:"componentType"`
	Time          string  `json:"time"`
	Output        string  `json:"output"`
}

func decodeIETF(top map[string]json.RawMessage) (Report, error) {
	var status string
	if raw, ok := top["status"]; !ok {
		return Report{}, unusable(UnusableBadValue, nil, "an IETF health+json document without \"status\"")
	} else if err := json.Unmarshal(raw, &status); err != nil {
		return Report{}, unusable(UnusableBadValue, err, "IETF \"status\" is not a string")
	}
	overall, ok := ietfStatus[status]
	if !ok {
		return Report{}, unusable(UnusableBadValue, nil, "IETF status %q is not pass, ok, up, warn, fail, error or down", truncateUTF8(status, 40))
	}
	var checks map[string][]ietfCheck
	if raw, ok := top["checks"]; ok {
		if err := json.Unmarshal(raw, &checks); err != nil {
			return Report{}, unusable(UnusableBadValue, err, "IETF \"checks\" is not an object of arrays of check objects")
		}
	}
	deps := make(map[string]Dependency)
	for _, key := range sortedKeys(checks) {
		name, _, _ := strings.Cut(key, ":")
		if name == "" {
			continue
		}
		d, seen := deps[name]
		if !seen {
			d.State = DepUnknown
		}
		system := true
		for i, c := range checks[key] {
			if c.ComponentType != "system" {
				system = false
			}
			state := DepUnknown
			if c.Status != nil {
				if state, ok = ietfStatus[*c.Status]; !ok {
					return Report{}, unusable(UnusableBadValue, nil, "IETF checks[%q][%d].status %q is not pass, ok, up, warn, fail, error or down", truncateUTF8(key, 60), i, truncateUTF8(*c.Status, 40))
				}
			}
			d = mergeDep(d, state)
			if state == DepDown && d.LastError == "" {
				d.LastError = truncateUTF8(c.Output, maxLastError)
			}
			if t, err := time.Parse(time.RFC3339, c.Time); err == nil && (d.Since.IsZero() || t.After(d.Since)) {
				d.Since = t
			}
		}
		// Checks of the instance's own resources (componentType
		// "system": cpu, memory, uptime) are not dependencies.
		if system && len(checks[key]) > 0 && !seen {
			continue
		}
		deps[name] = d
	}
	return foreignReport(overall, deps, top[ExtensionName], "IETF \""+ExtensionName+"\"")
}

// mergeDep folds one observation into a dependency's state: down wins,
// then up, then unknown.
func mergeDep(d Dependency, state string) Dependency {
	switch {
	case d.State == DepDown || state == DepDown:
		d.State = DepDown
	case d.State == DepUp || state == DepUp:
		d.State = DepUp
	default:
		d.State = DepUnknown
	}
	return d
}

// springBuiltins are Spring Boot components that describe the instance
// itself, not a dependency: they never vote.
var springBuiltins = map[string]bool{
	"ping": true, "diskSpace": true, "livenessState": true, "readinessState": true,
	"ssl": true, "refreshScope": true, ExtensionName: true,
}

type springComponent struct {
	Status     *string                    `json:"status"`
	Components map[string]json.RawMessage `json:"components"`
	Details    map[string]json.RawMessage `json:"details"`
}

func decodeSpring(top map[string]json.RawMessage) (Report, error) {
	var status string
	if raw, ok := top["status"]; !ok {
		return Report{}, unusable(UnusableBadValue, nil, "a Spring Boot health document without \"status\"")
	} else if err := json.Unmarshal(raw, &status); err != nil {
		return Report{}, unusable(UnusableBadValue, err, "Spring Boot \"status\" is not a string")
	}
	overall, ok := springStatus[status]
	if !ok {
		overall = DepUnknown // a custom status: neither up nor down
	}
	var comps map[string]json.RawMessage
	raw, ok := top["components"]
	if !ok {
		raw, ok = top["details"] // Spring Boot 2.0 and 2.1
	}
	if ok {
		if err := json.Unmarshal(raw, &comps); err != nil {
			return Report{}, unusable(UnusableBadValue, err, "Spring Boot \"components\" is not an object")
		}
	}
	deps := make(map[string]Dependency)
	var ext json.RawMessage
	outOfService := status == "OUT_OF_SERVICE"
	for _, name := range sortedKeys(comps) {
		var c springComponent
		if err := json.Unmarshal(comps[name], &c); err != nil || c.Status == nil {
			if _, pre := top["components"]; !pre {
				continue // 2.0's details may hold plain values
			}
			return Report{}, unusable(UnusableBadValue, err, "Spring Boot component %q is not an object with a \"status\"", truncateUTF8(name, 60))
		}
		if name == ExtensionName {
			ext = mustJSON(c.Details)
		}
		if name == "readinessState" && *c.Status == "OUT_OF_SERVICE" {
			outOfService = true
		}
		if springBuiltins[name] {
			continue
		}
		state, ok := springStatus[*c.Status]
		if !ok {
			state = DepUnknown
		}
		d := Dependency{State: state}
		if state == DepDown {
			d.LastError = springError(c)
		}
		deps[name] = d
	}
	rep, err := foreignReport(overall, deps, ext, "Spring Boot component \""+ExtensionName+"\"")
	if err != nil {
		return Report{}, err
	}
	if outOfService && !rep.Draining {
		rep.Ready, rep.Draining, rep.Phase = false, true, PhaseDraining.String()
	}
	return rep, nil
}

// springError is what a down component says: its details' "error", or
// the names of its down parts.
func springError(c springComponent) string {
	if raw, ok := c.Details["error"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return truncateUTF8(s, maxLastError)
		}
	}
	var down []string
	for _, name := range sortedKeys(c.Components) {
		var sub springComponent
		if json.Unmarshal(c.Components[name], &sub) == nil && sub.Status != nil && springStatus[*sub.Status] == DepDown {
			down = append(down, name)
		}
	}
	if len(down) > 0 {
		return truncateUTF8("down: "+strings.Join(down, ", "), maxLastError)
	}
	return ""
}

// foreignReport builds the Report of an IETF or Spring document: overall
// is its status as a dependency state. The instance is ready unless the
// document fails without a dependency to blame: a failure that a down
// dependency explains is a dependency outage, which must not make the
// instance unready (its report would then cast no vote). An Extension
// overrides readiness and adds the load figures.
func foreignReport(overall string, deps map[string]Dependency, ext json.RawMessage, where string) (Report, error) {
	rep := Report{Dependencies: deps}
	blamed := false
	for _, d := range deps {
		if d.State == DepDown {
			blamed = true
		}
	}
	rep.Ready = overall == DepUp || (overall == DepDown && blamed)
	if ext != nil {
		var x Extension
		if err := json.Unmarshal(ext, &x); err != nil {
			return Report{}, unusable(UnusableBadValue, err, "%s has a field of the wrong type", where)
		}
		switch {
		case x.Limit < 0:
			return Report{}, unusable(UnusableBadValue, nil, "%s limit %d is negative", where, x.Limit)
		case x.InFlight < 0:
			return Report{}, unusable(UnusableBadValue, nil, "%s in_flight %d is negative", where, x.InFlight)
		case x.Queue < 0:
			return Report{}, unusable(UnusableBadValue, nil, "%s queue %d is negative", where, x.Queue)
		case x.ReadyForSeconds < 0:
			return Report{}, unusable(UnusableBadValue, nil, "%s ready_for_s %g is negative", where, x.ReadyForSeconds)
		}
		if x.Ready != nil {
			rep.Ready = *x.Ready
		}
		if x.Draining != nil {
			rep.Draining = *x.Draining
		}
		rep.Phase, rep.ReadyForSeconds, rep.Version = x.Phase, x.ReadyForSeconds, x.Version
		rep.InFlight, rep.Limit, rep.Queue = x.InFlight, x.Limit, x.Queue
	}
	if rep.Draining {
		rep.Ready = false
	}
	if rep.Phase == "" {
		switch {
		case rep.Draining:
			rep.Phase = PhaseDraining.String()
		case rep.Ready:
			rep.Phase = PhaseReady.String()
		}
	}
	return rep, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fieldList names an object's first fields, for a detail.
func fieldList(top map[string]json.RawMessage) string {
	keys := sortedKeys(top)
	if len(keys) == 0 {
		return "none"
	}
	if len(keys) > 6 {
		keys = append(keys[:6], "...")
	}
	for i, k := range keys {
		keys[i] = truncateUTF8(k, 30)
	}
	return strings.Join(keys, ", ")
}

// quoteStart quotes the first bytes of a body.
func quoteStart(data []byte) string {
	const n = 32
	if len(data) == 0 {
		return "(empty)"
	}
	s := truncateUTF8(string(bytes.ToValidUTF8(data, []byte("\uFFFD"))), n)
	if len(s) < len(data) {
		return fmt.Sprintf("%q...", s)
	}
	return fmt.Sprintf("%q", s)
}

var _ error = (*ReportError)(nil)

// ReasonOf returns err's unusable reason: the Reason of the *ReportError
// in its chain, or UnusableUnreachable for any other error (a transport
// failure), or "" for nil.
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	if re, ok := errors.AsType[*ReportError](err); ok {
		return re.Reason
	}
	return UnusableUnreachable
}
