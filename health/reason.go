package health

import (
	"encoding/json"
	"net/http"
)

// ReasonHeader names the reason of an answer that spillway gives
// deliberately instead of the service's own: every one carries it, with
// the same code as its JSON body, {"error": CODE}. It is the instance
// contract's second half, beside Report: a load balancer reads it to tell
// a deliberate 502, 503 or 504 (shed, overloaded) from a failing
// instance, which a 5xx without it is; clients and dashboards read it to
// count answers (Classify). Any service, in any language, that sheds or
// rejects load must set it on those answers.
const ReasonHeader = "X-Spillway-Reason"

// The reason codes: the values of ReasonHeader and of the JSON body's
// "error", each with the status it goes with and what it means. Codes are
// only ever added, never renamed.
const (
	// ReasonDependencyUnavailable, 503: a dependency the request needs is
	// unavailable, so it is refused at once instead of waiting for it: shed
	// at the edge by the load balancer, or failed fast by an instance whose
	// guard is open. Retry-After says when to try again.
	ReasonDependencyUnavailable = "dependency_unavailable"
	// ReasonOverloaded, 503: admission control refused the request (the
	// concurrency bound and its queue are full, or the wait in the queue
	// timed out, or the connection cap is reached); the instance or the
	// load balancer that said so is healthy. Retry-After says when to try
	// again.
	ReasonOverloaded = "overloaded"
	// ReasonNoHealthyInstance, 503: the load balancer has no instance to
	// route to.
	ReasonNoHealthyInstance = "no_healthy_instance"
	// ReasonBadGateway, 502: the load balancer's instance failed: the
	// connection was refused or reset, or the response was broken.
	ReasonBadGateway = "bad_gateway"
	// ReasonGatewayTimeout, 504: the load balancer's instance did not send
	// its response headers in time.
	ReasonGatewayTimeout = "gateway_timeout"
	// ReasonRateLimited, 429: the client sent more than its share.
	// Retry-After says when to try again.
	ReasonRateLimited = "rate_limited"
	// ReasonBadRequest, 400: the request is malformed.
	ReasonBadRequest = "bad_request"
	// ReasonMethodNotAllowed, 405: the method is not served here; Allow
	// lists those that are.
	ReasonMethodNotAllowed = "method_not_allowed"
	// ReasonRequestTimeout, 408: the request's body did not arrive in time.
	ReasonRequestTimeout = "request_timeout"
	// ReasonRequestTooLarge, 413: the request's body is over the limit.
	ReasonRequestTooLarge = "request_too_large"
)

// Outcome is how a request ended, as a client, a load generator or a
// dashboard counts it. Its String is the name used in JSON and charts.
type Outcome uint8

// The outcomes, in the order charts stack them.
const (
	// OutcomeOK: the service answered as it meant to (1xx to 3xx). A
	// redirect is an answer, not a failure of the system.
	OutcomeOK Outcome = iota
	// OutcomeClientError: a 4xx: an invalid ticket, rate limited,
	// malformed. The client's doing, whatever the reason.
	OutcomeClientError
	// OutcomeShed: a 503 dependency_unavailable.
	OutcomeShed
	// OutcomeOverloaded: a 503 overloaded.
	OutcomeOverloaded
	// OutcomeFailed: any other 5xx (a 503 without a known reason, a
	// gateway error or timeout), or a transport failure.
	OutcomeFailed
	// OutcomeClientTimeout: no answer: the client gave up first. Classify
	// never returns it; a client files its own timeouts under it.
	OutcomeClientTimeout
	numOutcomes
)

// Outcomes lists every Outcome in chart order.
var Outcomes = [numOutcomes]Outcome{OutcomeOK, OutcomeClientError, OutcomeShed, OutcomeOverloaded, OutcomeFailed, OutcomeClientTimeout}

var outcomeNames = [numOutcomes]string{"ok", "client_error", "shed", "overloaded", "failed", "client_timeout"}

// String returns the outcome's snake_case name, as used in JSON.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Classify returns the outcome of an answer with status and reason (its
// ReasonHeader): 1xx to 3xx OutcomeOK; 4xx OutcomeClientError; 503
// dependency_unavailable OutcomeShed, 503 overloaded OutcomeOverloaded;
// anything else OutcomeFailed. Only a 503's reason matters: a 502 or 504
// is a failure whatever it claims.
func Classify(status int, reason string) Outcome {
	switch {
	case status >= 100 && status < 400:
		return OutcomeOK
	case status >= 400 && status < 500:
		return OutcomeClientError
	case reasoned(status):
		switch reason {
		case ReasonDependencyUnavailable:
			return OutcomeShed
		case ReasonOverloaded:
			return OutcomeOverloaded
		}
	}
	return OutcomeFailed
}

// ReasonBodyBytes is how much of an answer's body ClassifyAnswer reads:
// its first 4 KiB, which hold any JSON error of spillway's many times over.
const ReasonBodyBytes = 4 << 10

// ClassifyAnswer is Classify with the reason read from the answer: h's
// ReasonHeader or, when h has none (an instance's answer whose header was
// lost on the way), the "error" of the JSON body, of which body is the
// start (beyond ReasonBodyBytes it is not read). The body is read only
// when the status's outcome depends on the reason.
func ClassifyAnswer(status int, h http.Header, body []byte) Outcome {
	if !reasoned(status) {
		return Classify(status, "")
	}
	reason := h.Get(ReasonHeader)
	if reason == "" {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body[:min(len(body), ReasonBodyBytes)], &e) == nil {
			reason = e.Error
		}
	}
	return Classify(status, reason)
}

// reasoned reports whether an answer's outcome depends on its reason.
func reasoned(status int) bool { return status == http.StatusServiceUnavailable }
