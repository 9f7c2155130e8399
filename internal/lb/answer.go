package lb

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/spillway-dev/spillway/health"
)

// answer is a precomputed response of the balancer's own: JSON
// {"error": CODE} with the same CODE in health.ReasonHeader, as the
// contract in package health has it. Its header values are shared,
// read-only slices, so writing one allocates nothing but what net/http
// itself does.
type answer struct {
	status int
	reason []string
	length []string
	body   []byte
}

func newAnswer(status int, body any, reason string) *answer {
	b, _ := json.Marshal(body)
	b = append(b, '\n')
	return &answer{status: status, reason: []string{reason}, length: []string{strconv.Itoa(len(b))}, body: b}
}

func errorAnswer(status int, reason string) *answer {
	return newAnswer(status, map[string]string{"error": reason}, reason)
}

func shedAnswer(dep string) *answer {
	return newAnswer(http.StatusServiceUnavailable,
		struct {
			Error      string `json:"error"`
			Dependency string `json:"dependency"`
		}{health.ReasonDependencyUnavailable, dep}, health.ReasonDependencyUnavailable)
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

func writeAnswer(w http.ResponseWriter, a *answer, retryAfter []string) {
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
