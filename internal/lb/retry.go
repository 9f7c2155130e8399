package lb

// This file holds the retry rules: which failed attempts are safe to send
// again.

import (
	"errors"
	"net"
	"net/http"
)

func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// maxConnectRetries bounds the retries of a request whose every attempt
// failed to connect.
const maxConnectRetries = 2

// retryable: whether a first failure may be retried, never after a
// timeout: a connect failure (nothing was sent) for any request, another
// transport failure only for an idempotent request without a body. After
// that, only connect failures are retried again (connectFailed), up to
// maxConnectRetries in all.
func retryable(kind outcome, err error, req *http.Request, c *call) bool {
	if c.retried || kind != outBadGateway || c.Err() != nil {
		return false
	}
	if connectFailed(kind, err, c) {
		return true
	}
	return (req.Body == nil || req.Body == http.NoBody) && idempotent(req.Method)
}

// connectFailed reports whether an attempt failed to connect, before a
// byte of the request's body was read: the instance got nothing.
func connectFailed(kind outcome, err error, c *call) bool {
	return kind == outBadGateway && c.Err() == nil && isDial(err) && !c.body.read.Load()
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// replayable mirrors net/http's rule for requests its transport may resend
// after a partial write; GetBody must not be offered to those.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}
