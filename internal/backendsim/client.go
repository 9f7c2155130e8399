package backendsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client drives a Sim over HTTP: its control and stats endpoints, and
// validate calls. The zero value is not usable: set BaseURL. A Client is
// safe for concurrent use.
type Client struct {
	// BaseURL is the Sim's address, such as "http://127.0.0.1:9000".
	BaseURL string
	// HTTP makes the requests. Nil means http.DefaultClient.
	HTTP *http.Client
}

// StatusError is an answer from the Sim with a status other than 200.
type StatusError struct {
	StatusCode int
	// Message is the "error" field of the answer's JSON body, if any.
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("backend-sim answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("backend-sim answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// maxResponseBytes bounds the answers the Client reads.
const maxResponseBytes = 1 << 20

// Control returns the Sim's current behaviour.
func (c *Client) Control(ctx context.Context) (Config, error) {
	var out controlJSON
	if err := c.do(ctx, http.MethodGet, "/control", nil, &out); err != nil {
		return Config{}, err
	}
	cfg, err := out.config()
	if err != nil {
		return Config{}, fmt.Errorf("GET /control: %w", err)
	}
	return cfg, nil
}

// SetMode sets the Sim's mode and ModeUp's latency, for requests that
// arrive from now on.
func (c *Client) SetMode(ctx context.Context, mode string, latency time.Duration) error {
	lat := latency.String()
	return c.put(ctx, controlJSON{Mode: &mode, Latency: &lat})
}

// SetSlowLatency sets ModeSlow's latency, for requests that arrive from now
// on.
func (c *Client) SetSlowLatency(ctx context.Context, d time.Duration) error {
	s := d.String()
	return c.put(ctx, controlJSON{SlowLatency: &s})
}

// SetCapacity sets how many validate calls the Sim works on at once (0: no
// limit) and how long a call that arrives from now on may wait for a worker
// (0: as long as its caller waits), in one step.
func (c *Client) SetCapacity(ctx context.Context, capacity int, queueTimeout time.Duration) error {
	qt := queueTimeout.String()
	return c.put(ctx, controlJSON{Capacity: &capacity, QueueTimeout: &qt})
}

// SetQueueSize bounds the queue of calls waiting for a worker (0: no
// bound), for calls that arrive from now on.
func (c *Client) SetQueueSize(ctx context.Context, n int) error {
	return c.put(ctx, controlJSON{QueueSize: &n})
}

func (c *Client) put(ctx context.Context, body controlJSON) error {
	return c.do(ctx, http.MethodPut, "/control", body, nil)
}

// Stats returns the Sim's request counts and its worker pool's figures.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.do(ctx, http.MethodGet, "/stats", nil, &st)
	return st, err
}

// ResetStats returns the Sim's request counts and worker pool figures, and
// starts them afresh.
func (c *Client) ResetStats(ctx context.Context) (Stats, error) {
	var st Stats
	err := c.do(ctx, http.MethodDelete, "/stats", nil, &st)
	return st, err
}

// Validate asks the Sim whether ticket is valid, as a login would.
func (c *Client) Validate(ctx context.Context, ticket string) (ValidateResponse, error) {
	var out ValidateResponse
	err := c.do(ctx, http.MethodPost, PathValidate, ValidateRequest{Ticket: ticket}, &out)
	return out, err
}

// do sends in (if not nil) as JSON and decodes a 200 answer into out (if
// not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	url := strings.TrimSuffix(c.BaseURL, "/") + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = json.Unmarshal(data, &eb) // best effort: the status says enough
		return fmt.Errorf("%s %s: %w", method, path, &StatusError{StatusCode: resp.StatusCode, Message: eb.Error})
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
