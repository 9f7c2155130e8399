package login

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxBackendBody bounds a backend answer read into memory.
const maxBackendBody = 64 << 10

// validation is the backend's answer to a ticket.
type validation struct {
	Valid     bool   `json:"valid"`
	AccountID string `json:"account_id"`
}

// backendClient calls the validation API. It is used only through the
// guard, which sets the deadline.
type backendClient struct {
	validateURL string
	probeURL    string
	http        *http.Client
}

func newBackendClient(baseURL, probeURL string, maxConns int, timeout time.Duration) *backendClient {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:           maxConns,
		MaxIdleConnsPerHost:    maxConns,
		MaxConnsPerHost:        0,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      false,
	}
	return &backendClient{
		validateURL: strings.TrimSuffix(baseURL, "/") + "/v1/validate",
		probeURL:    probeURL,
		http:        &http.Client{Transport: tr},
	}
}

// validate asks the backend about ticket. Any answer but a 200 with a
// well-formed body is an error: the dependency is not serving.
func (b *backendClient) validate(ctx context.Context, ticket string) (validation, error) {
	body, err := json.Marshal(loginRequest{Ticket: ticket})
	if err != nil {
		return validation{}, fmt.Errorf("encode validate request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.validateURL, bytes.NewReader(body))
	if err != nil {
		return validation{}, fmt.Errorf("validate request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return validation{}, fmt.Errorf("validate: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBackendBody))
	if err != nil {
		return validation{}, fmt.Errorf("validate: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return validation{}, fmt.Errorf("validate: backend answered %s", resp.Status)
	}
	var v validation
	if err := json.Unmarshal(data, &v); err != nil {
		return validation{}, fmt.Errorf("validate: decode answer: %w", err)
	}
	if v.Valid && v.AccountID == "" {
		return validation{}, fmt.Errorf("validate: backend said valid without an account_id")
	}
	return v, nil
}

// probe GETs the backend's health URL; any non-2xx answer is an error. It
// serves the 2018 "deep" health checks.
func (b *backendClient) probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.probeURL, nil)
	if err != nil {
		return fmt.Errorf("probe request: %w", err)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBackendBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe: backend answered %s", resp.Status)
	}
	return nil
}
