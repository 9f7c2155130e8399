package backendsim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ValidateRequest is the body of POST /v1/validate.
type ValidateRequest struct {
	Ticket string `json:"ticket"`
}

// ValidateResponse is the answer to POST /v1/validate.
type ValidateResponse struct {
	Valid bool `json:"valid"`
	// AccountID is set when Valid is true; see AccountID.
	AccountID string `json:"account_id,omitempty"`
}

// AccountID returns the account a valid ticket belongs to: "acct-" and the
// first 12 hex digits of the ticket's SHA-256, stable across runs.
func AccountID(ticket string) string {
	sum := sha256.Sum256([]byte(ticket))
	return "acct-" + hex.EncodeToString(sum[:6])
}

// decodeValidate strictly decodes a ValidateRequest and returns its ticket:
// one JSON object, no unknown fields, nothing after it, a non-empty ticket.
func decodeValidate(r io.Reader) (string, error) {
	var req ValidateRequest
	if err := decodeStrict(r, &req); err != nil {
		return "", err
	}
	if req.Ticket == "" {
		return "", errors.New("ticket: required")
	}
	return req.Ticket, nil
}

// controlJSON is the wire form of Config at /control. Durations are Go
// duration strings such as "20ms", counts are JSON integers. In a PUT every
// field is optional.
type controlJSON struct {
	Mode         *string `json:"mode,omitempty"`
	Latency      *string `json:"latency,omitempty"`
	SlowLatency  *string `json:"slow_latency,omitempty"`
	Capacity     *int    `json:"capacity,omitempty"`
	QueueSize    *int    `json:"queue_size,omitempty"`
	QueueTimeout *string `json:"queue_timeout,omitempty"`
}

func controlOf(c Config) controlJSON {
	mode, lat, slow, qt := string(c.Mode), c.Latency.String(), c.SlowLatency.String(), c.QueueTimeout.String()
	return controlJSON{
		Mode: &mode, Latency: &lat, SlowLatency: &slow,
		Capacity: &c.Capacity, QueueSize: &c.QueueSize, QueueTimeout: &qt,
	}
}

// config converts a complete controlJSON (as GET /control returns) back to
// a Config. The capacity fields may be absent, as from a Sim that predates
// them: they are zero then.
func (c controlJSON) config() (Config, error) {
	u, err := c.update()
	if err != nil {
		return Config{}, err
	}
	if u.mode == nil || u.latency == nil || u.slowLatency == nil {
		return Config{}, errors.New("incomplete control document")
	}
	return u.applyTo(Config{}), nil
}

func (c controlJSON) update() (update, error) {
	var u update
	if c.Mode != nil {
		m, err := ParseMode(*c.Mode)
		if err != nil {
			return update{}, fmt.Errorf("mode: %w", err)
		}
		u.mode = &m
	}
	var err error
	if u.latency, err = parseLatency("latency", c.Latency); err != nil {
		return update{}, err
	}
	if u.slowLatency, err = parseLatency("slow_latency", c.SlowLatency); err != nil {
		return update{}, err
	}
	if u.capacity, err = checkCount("capacity", c.Capacity, MaxCapacity); err != nil {
		return update{}, err
	}
	if u.queueSize, err = checkCount("queue_size", c.QueueSize, MaxQueueSize); err != nil {
		return update{}, err
	}
	if u.queueTimeout, err = parseLatency("queue_timeout", c.QueueTimeout); err != nil {
		return update{}, err
	}
	return u, nil
}

func checkCount(field string, n *int, limit int) (*int, error) {
	if n == nil {
		return nil, nil
	}
	if err := CheckCount(*n, limit); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return n, nil
}

func parseLatency(field string, s *string) (*time.Duration, error) {
	if s == nil {
		return nil, nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q: not a Go duration such as \"20ms\"", field, *s)
	}
	if err := CheckLatency(d); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &d, nil
}

// decodeControl strictly decodes the body of PUT /control. Absent or null
// fields are left unchanged.
func decodeControl(r io.Reader) (update, error) {
	var c controlJSON
	if err := decodeStrict(r, &c); err != nil {
		return update{}, err
	}
	return c.update()
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields, an empty body and anything after the value.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body: want a JSON object")
		}
		return fmt.Errorf("decode body: %w", err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("decode body: %w", err)
		}
		return errors.New("decode body: data after the JSON object")
	}
	return nil
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

type healthBody struct {
	Status string `json:"status"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// An error here means the client has gone; there is no one to tell.
	_ = json.NewEncoder(w).Encode(v)
}
