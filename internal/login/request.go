package login

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxBodyBytes bounds a login request's body.
const MaxBodyBytes = 8 << 10

// maxTicketLen bounds a ticket's length.
const maxTicketLen = 4096

// errTooLarge reports a body over MaxBodyBytes.
var errTooLarge = errors.New("request body too large")

// loginRequest is the body of POST /v1/login.
type loginRequest struct {
	Ticket string `json:"ticket"`
}

// decodeLogin strictly decodes a login request: one JSON object with a
// non-empty "ticket" string and nothing else. A body over MaxBodyBytes
// returns errTooLarge.
func decodeLogin(r io.Reader) (loginRequest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return loginRequest{}, errTooLarge
		}
		return loginRequest{}, fmt.Errorf("read body: %w", err)
	}
	if len(data) > MaxBodyBytes {
		return loginRequest{}, errTooLarge
	}
	return parseLogin(data)
}

func parseLogin(data []byte) (loginRequest, error) {
	var req loginRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return loginRequest{}, fmt.Errorf("decode body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return loginRequest{}, errors.New("decode body: data after the JSON object")
	}
	switch {
	case req.Ticket == "":
		return loginRequest{}, errors.New(`decode body: "ticket" is missing or empty`)
	case len(req.Ticket) > maxTicketLen:
		return loginRequest{}, fmt.Errorf(`decode body: "ticket" is longer than %d bytes`, maxTicketLen)
	}
	return req, nil
}
