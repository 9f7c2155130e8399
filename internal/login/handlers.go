package login

// This file holds the service port: its handler (login, session, the
// rate limit before admission, the request id) and the answers' shapes.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/httpapi"
)

func (in *Instance) buildServiceHandler() http.Handler {
	a := httpapi.Adapter{Log: in.log}
	mux := http.NewServeMux()
	mux.Handle("/v1/login", in.rateLimited(in.limiter.Middleware(a.Wrap(in.handleLogin))))
	mux.Handle("/v1/session", in.limiter.Middleware(a.Wrap(in.handleSession)))
	if in.cfg.Health.SharedPort {
		// The 2018 design: health answers queue behind logins.
		h := in.limiter.Middleware(in.health.Handler())
		for _, p := range []string{"/livez", "/readyz", "/health", "/metrics"} {
			mux.Handle(p, h)
		}
	}
	mux.Handle("/", a.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &httpapi.Error{Status: http.StatusNotFound, Code: "not_found"}
	}))
	// Every answer, the admission limit's and the rate limit's too,
	// echoes the request's id (the load balancer's, or one made here),
	// and every log line about the request carries it (request_id).
	return httpapi.WithRequestID(mux)
}

// rateLimited applies the per-client attempt limit before admission, so a
// single noisy client never takes admission slots.
func (in *Instance) rateLimited(next http.Handler) http.Handler {
	a := httpapi.Adapter{Log: in.log}
	reject := a.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		in.metrics.requests.WithLabelValues(outcomeRateLimited).Inc()
		return &httpapi.Error{Status: http.StatusTooManyRequests, Code: health.ReasonRateLimited, RetryAfter: time.Second}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rate := in.rate.Load(); rate != nil && !rate.allow(rate.clientAddr(r)) {
			reject.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (in *Instance) handleLogin(w http.ResponseWriter, r *http.Request) (err error) {
	start := in.now()
	outcome := outcomeError
	defer func() {
		d := in.now().Sub(start)
		in.metrics.requests.WithLabelValues(outcome).Inc()
		in.metrics.duration.Observe(d.Seconds())
		// A failed login is logged by the adapter; every login, at debug,
		// here: both with the request's id, the one the balancer's access
		// log has.
		if in.log.Enabled(r.Context(), slog.LevelDebug) {
			in.log.DebugContext(r.Context(), "login", "request_id", r.Header.Get(httpapi.RequestIDHeader),
				"outcome", outcome, "duration", d)
		}
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		outcome = outcomeMalformed
		return &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: health.ReasonMethodNotAllowed}
	}
	req, err := decodeLogin(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	switch {
	case errors.Is(err, errTooLarge):
		outcome = outcomeTooLarge
		return &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Code: health.ReasonRequestTooLarge, Err: err}
	case err != nil:
		outcome = outcomeMalformed
		return &httpapi.Error{Status: http.StatusBadRequest, Code: "malformed_request", Err: err}
	}

	var v validation
	err = in.guard.Do(r.Context(), func(ctx context.Context) error {
		var err error
		v, err = in.backend.validate(ctx, req.Ticket)
		return err
	})
	if err != nil {
		if r.Context().Err() != nil {
			outcome = outcomeCanceled
			return httpapi.ErrClientGone
		}
		outcome = outcomeUnavailable
		return &httpapi.Error{
			Status:     http.StatusServiceUnavailable,
			Code:       health.ReasonDependencyUnavailable,
			RetryAfter: in.cfg.Backend.retryAfter(),
			Err:        err,
		}
	}
	if !v.Valid {
		outcome = outcomeInvalid
		return &httpapi.Error{Status: http.StatusUnauthorized, Code: "invalid_ticket"}
	}
	token, exp, err := in.tokens.Load().Issue(v.AccountID)
	if err != nil {
		return err
	}
	outcome = outcomeOK
	httpapi.WriteJSON(w, http.StatusOK, loginResponse{Token: token, AccountID: v.AccountID, ExpiresAt: exp.UTC()})
	return nil
}

type loginResponse struct {
	Token     string    `json:"token"`
	AccountID string    `json:"account_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

type sessionResponse struct {
	AccountID string    `json:"account_id"`
	Issuer    string    `json:"issuer"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	TokenID   string    `json:"token_id"`
	KeyID     string    `json:"key_id"`
}

func (in *Instance) handleSession(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: health.ReasonMethodNotAllowed}
	}
	raw, ok := httpapi.BearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spillway"`)
		return &httpapi.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Err: errors.New("no bearer token")}
	}
	tokens := in.tokens.Load()
	c, err := tokens.Verify(raw)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="spillway", error="invalid_token"`)
		return &httpapi.Error{Status: http.StatusUnauthorized, Code: "invalid_token", Err: err}
	}
	resp := sessionResponse{AccountID: c.AccountID, Issuer: c.Issuer, TokenID: c.ID, KeyID: tokens.KeyID()}
	if c.IssuedAt != nil {
		resp.IssuedAt = c.IssuedAt.UTC()
	}
	if c.ExpiresAt != nil {
		resp.ExpiresAt = c.ExpiresAt.UTC()
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
	return nil
}
