package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// Token is an admin bearer token, kept as its hash. The zero Token
// authorizes nothing.
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// NewToken returns s as a Token; "" authorizes nothing.
func NewToken(s string) Token {
	return Token{sum: sha256.Sum256([]byte(s)), set: s != ""}
}

// Authorized reports whether r carries "Authorization: Bearer TOKEN". The
// scheme is matched case-insensitively (RFC 7235, as every spillway API
// does); the token is compared in constant time, through hashes of equal
// length, so not even its length leaks.
func (t Token) Authorized(r *http.Request) bool {
	if !t.set {
		return false
	}
	tok, ok := BearerToken(r)
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], t.sum[:]) == 1
}

// BearerToken returns the token of r's "Authorization: Bearer TOKEN",
// the scheme matched case-insensitively (RFC 7235 §2.1) and surrounding
// spaces trimmed; ok is false when there is none.
func BearerToken(r *http.Request) (token string, ok bool) {
	auth := r.Header.Get("Authorization")
	scheme, rest, found := strings.Cut(strings.TrimSpace(auth), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(rest)
	return token, token != ""
}

// Unauthorized is the error of a request without the token; realm names
// the API in WWW-Authenticate.
func Unauthorized(w http.ResponseWriter, realm string) *Error {
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized"}
}

// IsLoopback reports whether a is a loopback TCP address.
func IsLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// LoopbackHost reports whether a request's Host header names this
// machine by a loopback name or address ("localhost", "127.0.0.1:8081",
// "[::1]"), with or without a port.
func LoopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// GuardLoopback protects a listener on a loopback address, whose reads
// need no token, from DNS rebinding: a page on another site that resolves
// its own name to 127.0.0.1 could otherwise read (and, with backend-sim's
// unauthenticated control, drive) it from the user's browser. A request
// whose Host is not a loopback name or address gets 421 Misdirected
// Request. On any other listener (onLoopback false) every Host passes:
// there reads need the token, which a rebinding page does not have.
func GuardLoopback(onLoopback bool, next http.Handler) http.Handler {
	if !onLoopback {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LoopbackHost(r.Host) {
			WriteJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "misdirected_request",
				"detail": "this listener answers only to a loopback Host (localhost, 127.0.0.1, [::1])"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
