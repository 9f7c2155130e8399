package login

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrNoKey reports that no signing key was configured.
var ErrNoKey = errors.New("no signing key: set token.key_file or the key environment variable, or run with --dev for an ephemeral key")

// Claims are a session token's claims.
type Claims struct {
	AccountID string `json:"account_id"`
	jwt.RegisteredClaims
}

// Tokens signs and verifies session tokens. Tokens are EdDSA (Ed25519) JWTs
// whose header names the signing key ("kid"), so a verifier can hold old
// keys beside the current one while keys rotate. Safe for concurrent use.
type Tokens struct {
	signKey ed25519.PrivateKey
	kid     string
	verify  map[string]ed25519.PublicKey // by kid
	issuer  string
	ttl     time.Duration
	now     func() time.Time
	parser  *jwt.Parser
}

// NewTokens returns a Tokens signing with key and accepting tokens signed by
// key or any of previous.
func NewTokens(key ed25519.PrivateKey, previous []ed25519.PublicKey, issuer string, ttl time.Duration, now func() time.Time) *Tokens {
	t := &Tokens{
		signKey: key,
		kid:     KeyID(key.Public().(ed25519.PublicKey)),
		verify:  make(map[string]ed25519.PublicKey, 1+len(previous)),
		issuer:  issuer,
		ttl:     ttl,
		now:     now,
	}
	t.verify[t.kid] = key.Public().(ed25519.PublicKey)
	for _, p := range previous {
		t.verify[KeyID(p)] = p
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
		jwt.WithLeeway(5*time.Second),
	)
	return t
}

// KeyID is a key's stable identifier: the first 12 bytes of the SHA-256 of
// the public key, base64url-encoded.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// KeyID returns the identifier of the current signing key.
func (t *Tokens) KeyID() string { return t.kid }

// Issue returns a signed token for accountID and its expiry.
func (t *Tokens) Issue(accountID string) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl).Truncate(time.Second)
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", time.Time{}, fmt.Errorf("token id: %w", err)
	}
	claims := Claims{
		AccountID: accountID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   accountID,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        base64.RawURLEncoding.EncodeToString(id),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = t.kid
	s, err := tok.SignedString(t.signKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token's signature, issuer and lifetime and returns its
// claims.
func (t *Tokens) Verify(raw string) (*Claims, error) {
	var c Claims
	_, err := t.parser.ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		key, ok := t.verify[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	return &c, nil
}

// GenerateKey returns a new random Ed25519 private key, for --dev.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return priv, nil
}

// EncodePrivateKey returns key as a PKCS #8 PEM block.
func EncodePrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey parses a PEM-encoded PKCS #8 Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	key, err := jwt.ParseEdPrivateKeyFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse Ed25519 private key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("parse Ed25519 private key: not an Ed25519 key")
	}
	return priv, nil
}

// parseAnyKey parses a PEM Ed25519 key, private or public, and returns its
// public half.
func parseAnyKey(data []byte) (ed25519.PublicKey, error) {
	if priv, err := ParsePrivateKey(data); err == nil {
		return priv.Public().(ed25519.PublicKey), nil
	}
	key, err := jwt.ParseEdPublicKeyFromPEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse Ed25519 key: %w", err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("parse Ed25519 key: not an Ed25519 key")
	}
	return pub, nil
}

// LoadTokens builds Tokens from cfg. With dev set and no key configured it
// generates an ephemeral key; without dev and without a key it returns
// ErrNoKey. getenv is os.Getenv outside tests.
func LoadTokens(cfg TokenConfig, dev bool, getenv func(string) string, now func() time.Time) (*Tokens, error) {
	key, err := loadSigningKey(cfg, getenv)
	if err != nil {
		return nil, err
	}
	if key == nil {
		if !dev {
			return nil, ErrNoKey
		}
		if key, err = GenerateKey(); err != nil {
			return nil, err
		}
	}
	return newTokensFromConfig(cfg, key, now)
}

// reloadTokens is LoadTokens for a running instance: the key files are
// read again (a rotated key, a new verify key), and when no key is
// configured the current signing key is kept (a dev instance's ephemeral
// key must not change under the tokens it issued).
func reloadTokens(cfg TokenConfig, current *Tokens, getenv func(string) string, now func() time.Time) (*Tokens, error) {
	key, err := loadSigningKey(cfg, getenv)
	if err != nil {
		return nil, err
	}
	if key == nil {
		key = current.signKey
	}
	return newTokensFromConfig(cfg, key, now)
}

// loadSigningKey reads the configured signing key: nil if none is
// configured.
func loadSigningKey(cfg TokenConfig, getenv func(string) string) (ed25519.PrivateKey, error) {
	var pemData []byte
	switch {
	case cfg.KeyFile != "":
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("token.key_file: %w", err)
		}
		pemData = b
	case getenv(cfg.KeyEnv) != "":
		pemData = []byte(getenv(cfg.KeyEnv))
	default:
		return nil, nil
	}
	key, err := ParsePrivateKey(pemData)
	if err != nil {
		src := "token.key_file " + cfg.KeyFile
		if cfg.KeyFile == "" {
			src = "$" + cfg.KeyEnv
		}
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return key, nil
}

func newTokensFromConfig(cfg TokenConfig, key ed25519.PrivateKey, now func() time.Time) (*Tokens, error) {
	var prev []ed25519.PublicKey
	for i, f := range cfg.VerifyKeyFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token.verify_key_files[%d]: %w", i, err)
		}
		p, err := parseAnyKey(b)
		if err != nil {
			return nil, fmt.Errorf("token.verify_key_files[%d]: %w", i, err)
		}
		prev = append(prev, p)
	}
	return NewTokens(key, prev, cfg.Issuer, cfg.TTL, now), nil
}
