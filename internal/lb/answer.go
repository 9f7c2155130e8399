package lb

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/spillway-dev/spillway/health"
)

// answer is a precomputed response of the balancer's own: JSON
// {"error": CODE} with the same CODE in health.ReasonHeader, as the
// contract in package health has it; to a gRPC client, a trailers-only
// gRPC answer carrying the same reason (writeAnswer). Its header values
// are shared, read-only slices, so writing one allocates nothing but what
// net/http itself does.
type answer struct {
	status int
	reason []string
	length []string
	body   []byte
	// The gRPC form: grpc-status (grpcCode) and grpc-message.
	grpcStatus, grpcMessage []string
}

func newAnswer(status int, body any, reason, message string) *answer {
	b, _ := json.Marshal(body)
	b = append(b, '\n')
	return &answer{status: status, reason: []string{reason}, length: []string{strconv.Itoa(len(b))}, body: b,
		grpcStatus: []string{strconv.Itoa(grpcCode(status))}, grpcMessage: []string{grpcPercentEncode(message)}}
}

func errorAnswer(status int, reason string) *answer {
	return newAnswer(status, map[string]string{"error": reason}, reason, reason)
}

func shedAnswer(dep string) *answer {
	return newAnswer(http.StatusServiceUnavailable,
		struct {
			Error      string `json:"error"`
			Dependency string `json:"dependency"`
		}{health.ReasonDependencyUnavailable, dep}, health.ReasonDependencyUnavailable,
		health.ReasonDependencyUnavailable+": "+dep)
}

var (
	ansOverloaded       = errorAnswer(http.StatusServiceUnavailable, health.ReasonOverloaded)
	ansNoInstance       = errorAnswer(http.StatusServiceUnavailable, health.ReasonNoHealthyInstance)
	ansBadGateway       = errorAnswer(http.StatusBadGateway, health.ReasonBadGateway)
	ansGatewayTimeout   = errorAnswer(http.StatusGatewayTimeout, health.ReasonGatewayTimeout)
	ansBadRequest       = errorAnswer(http.StatusBadRequest, health.ReasonBadRequest)
	ansMethodNotAllowed = errorAnswer(http.StatusMethodNotAllowed, health.ReasonMethodNotAllowed)

	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
)

// writeAnswer writes a to the client of r, with Retry-After when
// retryAfter is set. It is where every answer of the balancer's own is
// rendered: a gRPC request (Content-Type application/grpc...) gets it in
// gRPC's terms instead, trailers-only (writeGRPCAnswer).
func writeAnswer(w http.ResponseWriter, r *http.Request, a *answer, retryAfter []string) {
	if ct := r.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc") {
		writeGRPCAnswer(w, a, retryAfter)
		return
	}
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h[health.ReasonHeader] = a.reason
	h["Content-Length"] = a.length
	if retryAfter != nil {
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

var hdrGRPC = []string{"application/grpc"}

// writeGRPCAnswer writes a as a trailers-only gRPC answer: HTTP 200,
// content-type application/grpc, grpc-status (UNAVAILABLE for every
// refusal and gateway failure, as gRPC maps 429, 502, 503 and 504) and
// grpc-message (the reason, and the dependency of a shed), no body: over
// HTTP/2, one HEADERS frame that ends the stream. The reason header and
// Retry-After stay: a gRPC client reads them as response metadata.
func writeGRPCAnswer(w http.ResponseWriter, a *answer, retryAfter []string) {
	h := w.Header()
	h["Content-Type"] = hdrGRPC
	h["Grpc-Status"] = a.grpcStatus
	h["Grpc-Message"] = a.grpcMessage
	h[health.ReasonHeader] = a.reason
	if retryAfter != nil {
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(http.StatusOK)
}

// grpcCode maps an HTTP status to a gRPC status code, as gRPC does
// (doc/http-grpc-status-mapping.md in grpc/grpc).
func grpcCode(status int) int {
	const (
		unknown          = 2
		permissionDenied = 7
		unimplemented    = 12
		internal         = 13
		unavailable      = 14
		unauthenticated  = 16
	)
	switch status {
	case http.StatusBadRequest:
		return internal
	case http.StatusUnauthorized:
		return unauthenticated
	case http.StatusForbidden:
		return permissionDenied
	case http.StatusNotFound:
		return unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return unavailable
	}
	return unknown
}

// grpcPercentEncode encodes s as grpc-message wants it: bytes outside
// printable ASCII, and '%', as %XX.
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
