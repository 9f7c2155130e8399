package login

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestTokensIssueVerify(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	toks := NewTokens(key, nil, "spillway", time.Hour, fixedClock(now))
	raw, exp, err := toks.Issue("acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(time.Hour); !exp.Equal(want) {
		t.Errorf("expiry = %v, want %v", exp, want)
	}
	// The header names the key.
	tok, _, err := jwt.NewParser().ParseUnverified(raw, &Claims{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["kid"] != toks.KeyID() || tok.Header["alg"] != "EdDSA" {
		t.Errorf("header = %v, want kid %q and alg EdDSA", tok.Header, toks.KeyID())
	}
	c, err := toks.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.AccountID != "acct-1" || c.Subject != "acct-1" || c.Issuer != "spillway" {
		t.Errorf("claims = %+v", c)
	}

	// Expired (beyond the leeway).
	late := NewTokens(key, nil, "spillway", time.Hour, fixedClock(now.Add(2*time.Hour)))
	if _, err := late.Verify(raw); err == nil {
		t.Error("expired token verified")
	}
	// Tampered.
	if _, err := toks.Verify(raw[:len(raw)-2] + "xx"); err == nil {
		t.Error("tampered token verified")
	}
	// Another issuer.
	other := NewTokens(key, nil, "someone-else", time.Hour, fixedClock(now))
	if _, err := other.Verify(raw); err == nil {
		t.Error("token from another issuer verified")
	}
	// alg none or HS256 are refused.
	none := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{AccountID: "x"})
	s, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := toks.Verify(s); err == nil {
		t.Error("alg none verified")
	}
}

func TestTokensRotation(t *testing.T) {
	oldKey, _ := GenerateKey()
	newKey, _ := GenerateKey()
	now := time.Now()
	oldToks := NewTokens(oldKey, nil, "spillway", time.Hour, fixedClock(now))
	raw, _, err := oldToks.Issue("acct-old")
	if err != nil {
		t.Fatal(err)
	}
	// The new signer still accepts the old key's tokens when told of it.
	rotated := NewTokens(newKey, []ed25519.PublicKey{oldKey.Public().(ed25519.PublicKey)}, "spillway", time.Hour, fixedClock(now))
	if _, err := rotated.Verify(raw); err != nil {
		t.Errorf("old token after rotation: %v", err)
	}
	// And refuses them when not.
	fresh := NewTokens(newKey, nil, "spillway", time.Hour, fixedClock(now))
	if _, err := fresh.Verify(raw); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Errorf("old token with an unknown key: err = %v", err)
	}
}

func TestLoadTokens(t *testing.T) {
	key, _ := GenerateKey()
	pemData, err := EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	cfg := TokenConfig{KeyEnv: "SPILLWAY_SIGNING_KEY", TTL: time.Hour, Issuer: "spillway"}

	if _, err := LoadTokens(cfg, false, noEnv, time.Now); err != ErrNoKey {
		t.Errorf("no key, no dev: err = %v, want ErrNoKey", err)
	}
	if _, err := LoadTokens(cfg, true, noEnv, time.Now); err != nil {
		t.Errorf("dev: %v", err)
	}
	fromFile := cfg
	fromFile.KeyFile = keyFile
	toks, err := LoadTokens(fromFile, false, noEnv, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if toks.KeyID() != KeyID(key.Public().(ed25519.PublicKey)) {
		t.Error("key from file not used")
	}
	env := func(k string) string {
		if k == "SPILLWAY_SIGNING_KEY" {
			return string(pemData)
		}
		return ""
	}
	toks, err = LoadTokens(cfg, false, env, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if toks.KeyID() != KeyID(key.Public().(ed25519.PublicKey)) {
		t.Error("key from environment not used")
	}
	bad := func(string) string { return "not a key" }
	if _, err := LoadTokens(cfg, true, bad, time.Now); err == nil || !strings.Contains(err.Error(), "$SPILLWAY_SIGNING_KEY") {
		t.Errorf("bad env key: err = %v, want one naming the variable (and no fallback to dev)", err)
	}
}
