package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// DecodeJSON reads one JSON object of at most limit bytes from r's body
// into v, strictly: an unknown field, a wrong type, an empty body or
// anything after the object is a 400 bad_request, a larger body a 413
// body_too_large.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, limit)
		}
		return BadRequest("body: data after the JSON object")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Detail: fmt.Sprintf("body: over %d bytes", limit)}
	case errors.Is(err, io.EOF):
		return BadRequest("body: empty, want a JSON object")
	}
	return BadRequest("body: %v", err)
}
