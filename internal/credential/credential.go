// Package credential issues and verifies the signed device credential: a
// compact JWS in the VC-JWT style that binds a device's code, DID, number,
// model and tenant, signed with the hub's Ed25519 key. Any party holding the
// hub's public key can check it offline, without asking the hub.
//
// The token is header.payload.signature, each base64url without padding:
//
//	header:  {"alg":"EdDSA","typ":"vc+jwt","kid":"did:key:<hub key>"}
//	payload: {"iss":"did:key:<hub key>","sub":"did:key:<device key>","jti":..,
//	          "iat":..,"nbf":..,"exp":..,
//	          "vc":{"@context":["https://www.w3.org/ns/credentials/v2"],
//	                "type":["VerifiableCredential","WanwuDeviceCredential"],
//	                "credentialSubject":{"id":"did:key:<device key>","code":"acme:pump-1",
//	                  "number":"fd..","tenant":"acme","kind":"device",
//	                  "model":{"id":"acme:pump","version":"1.0.0"}}}}
//
// Verification is strict on purpose: JOSE's flexibility (alg "none", keys
// named in headers, lenient encodings) is the usual source of JWT forgeries,
// so Verify accepts exactly one algorithm, one key and one encoding.
package credential

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// Sentinel errors; every error from Verify and Decode wraps exactly one of
// them and adds the offending field.
var (
	// ErrMalformed means the token is not a well-formed wanwu credential:
	// bad encoding, wrong header, missing or invalid field.
	ErrMalformed = errors.New("malformed credential")
	// ErrSignature means the signature does not verify with the hub key.
	ErrSignature = errors.New("credential signature invalid")
	// ErrExpired means the credential's exp is past.
	ErrExpired = errors.New("credential expired")
	// ErrNotYetValid means the credential's nbf is in the future.
	ErrNotYetValid = errors.New("credential not yet valid")
	// ErrIssuer means the credential names an issuer other than the hub key
	// it is verified with.
	ErrIssuer = errors.New("credential issuer mismatch")
)

// MaxSize bounds a token. A real one is under 1 KiB; the bound keeps a
// hostile token from costing more than a glance.
const MaxSize = 16 << 10

// Skew is the clock difference tolerated at both ends of the validity
// window, since devices often run on clocks set by a flaky NTP.
const Skew = 2 * time.Minute

// Values fixed by the format.
const (
	Alg            = "EdDSA"
	Typ            = "vc+jwt"
	ContextV2      = "https://www.w3.org/ns/credentials/v2"
	TypeVC         = "VerifiableCredential"
	TypeCredential = "WanwuDeviceCredential"
)

// Claims is the content of a credential.
type Claims struct {
	ID      string // jti; Issue generates one when empty
	Issuer  string // did:key of the hub signing key; Issue fills it when empty
	Subject string // did:key of the device key

	Code, Number, Tenant, Kind, ModelID, ModelVersion string

	IssuedAt, NotBefore, ExpiresAt time.Time // whole seconds on the wire
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid"`
}

type payload struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Jti string `json:"jti"`
	Iat int64  `json:"iat"`
	Nbf int64  `json:"nbf"`
	Exp int64  `json:"exp"`
	VC  vc     `json:"vc"`
}

type vc struct {
	Context           []string `json:"@context"`
	Type              []string `json:"type"`
	CredentialSubject subject  `json:"credentialSubject"`
}

type subject struct {
	ID     string `json:"id"`
	Code   string `json:"code"`
	Number string `json:"number,omitempty"`
	Tenant string `json:"tenant"`
	Kind   string `json:"kind,omitempty"`
	Model  *model `json:"model,omitempty"`
}

type model struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

var b64 = base64.RawURLEncoding.Strict()

// Issue signs c with key and returns the token. Issuer is set from key when
// empty and must match it otherwise; ID defaults to a random value,
// IssuedAt to now and NotBefore to IssuedAt. Code, Subject, Tenant and
// ExpiresAt are required, and the result is checked exactly as Verify would,
// so Issue never produces a credential its own verifier rejects.
func Issue(key ed25519.PrivateKey, c Claims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("credential: issue: hub key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	iss, err := keys.DID(pub)
	if err != nil {
		return "", fmt.Errorf("credential: issue: hub key: %w", err)
	}
	if c.Issuer == "" {
		c.Issuer = iss
	} else if c.Issuer != iss {
		return "", fmt.Errorf("%w: iss %q is not the signing key %s", ErrIssuer, c.Issuer, iss)
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.ExpiresAt.IsZero() {
		return "", fmt.Errorf("%w: exp: required", ErrMalformed)
	}
	p := payload{
		Iss: c.Issuer,
		Sub: c.Subject,
		Jti: c.ID,
		Iat: c.IssuedAt.Unix(),
		Nbf: c.NotBefore.Unix(),
		Exp: c.ExpiresAt.Unix(),
		VC: vc{
			Context: []string{ContextV2},
			Type:    []string{TypeVC, TypeCredential},
			CredentialSubject: subject{
				ID:     c.Subject,
				Code:   c.Code,
				Number: c.Number,
				Tenant: c.Tenant,
				Kind:   c.Kind,
			},
		},
	}
	if c.ModelID != "" || c.ModelVersion != "" {
		p.VC.CredentialSubject.Model = &model{ID: c.ModelID, Version: c.ModelVersion}
	}
	if err := check(&p); err != nil {
		return "", err
	}
	h, err := json.Marshal(header{Alg: Alg, Typ: Typ, Kid: iss})
	if err != nil {
		return "", fmt.Errorf("credential: issue: %w", err)
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("credential: issue: %w", err)
	}
	signingInput := b64.EncodeToString(h) + "." + b64.EncodeToString(body)
	sig := ed25519.Sign(key, []byte(signingInput))
	tok := signingInput + "." + b64.EncodeToString(sig)
	if len(tok) > MaxSize {
		return "", fmt.Errorf("%w: token is %d bytes, more than %d", ErrMalformed, len(tok), MaxSize)
	}
	return tok, nil
}

// Verify checks token against the hub's public key at time now and returns
// its claims. It checks, in order: the structure (three base64url parts, at
// most MaxSize bytes), the header (alg exactly "EdDSA", typ "vc+jwt" if
// present, kid the did:key of hubKey), the signature, the payload (required
// fields, iss equal to kid, a valid code and DIDs), and the validity window
// with Skew at both ends.
func Verify(token string, hubKey ed25519.PublicKey, now time.Time) (Claims, error) {
	if len(hubKey) != ed25519.PublicKeySize {
		return Claims{}, fmt.Errorf("credential: verify: hub key is %d bytes, want %d", len(hubKey), ed25519.PublicKeySize)
	}
	hubDID, err := keys.DID(hubKey)
	if err != nil {
		return Claims{}, fmt.Errorf("credential: verify: hub key: %w", err)
	}
	h, body, sig, err := split(token)
	if err != nil {
		return Claims{}, err
	}
	if h.Kid != hubDID {
		return Claims{}, fmt.Errorf("%w: kid %q is not the hub key %s", ErrIssuer, short(h.Kid), hubDID)
	}
	signingInput := token[:strings.LastIndexByte(token, '.')]
	if !ed25519.Verify(hubKey, []byte(signingInput), sig) {
		return Claims{}, fmt.Errorf("%w: signature does not verify with %s", ErrSignature, hubDID)
	}
	// Only now, with the bytes known to come from the hub, is the payload
	// parsed.
	p, err := parsePayload(body)
	if err != nil {
		return Claims{}, err
	}
	if p.Iss != h.Kid {
		return Claims{}, fmt.Errorf("%w: iss %q differs from kid", ErrIssuer, short(p.Iss))
	}
	if err := check(p); err != nil {
		return Claims{}, err
	}
	c := claims(p)
	if now.Before(c.NotBefore.Add(-Skew)) {
		return Claims{}, fmt.Errorf("%w: nbf %s is after now %s", ErrNotYetValid, c.NotBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(c.ExpiresAt.Add(Skew)) {
		return Claims{}, fmt.Errorf("%w: exp %s is before now %s", ErrExpired, c.ExpiresAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// Decode returns a token's claims without checking the signature, the
// issuer, the field rules or the time window: it is for showing a token to a
// person, never for deciding anything.
func Decode(token string) (Claims, error) {
	_, body, _, err := split(token)
	if err != nil {
		return Claims{}, err
	}
	p, err := parsePayload(body)
	if err != nil {
		return Claims{}, err
	}
	return claims(p), nil
}

// split checks the token's structure and header and returns its parts.
func split(token string) (header, []byte, []byte, error) {
	if len(token) > MaxSize {
		return header{}, nil, nil, fmt.Errorf("%w: token is %d bytes, more than %d", ErrMalformed, len(token), MaxSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return header{}, nil, nil, fmt.Errorf("%w: %d parts, want 3", ErrMalformed, len(parts))
	}
	var raw [3][]byte
	for i, name := range []string{"header", "payload", "signature"} {
		b, err := b64.DecodeString(parts[i])
		if err != nil {
			return header{}, nil, nil, fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
		}
		raw[i] = b
	}
	var h header
	if err := strictUnmarshal(raw[0], &h); err != nil {
		return header{}, nil, nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Alg != Alg {
		return header{}, nil, nil, fmt.Errorf("%w: header alg %q, want %q", ErrMalformed, short(h.Alg), Alg)
	}
	if h.Typ != "" && h.Typ != Typ {
		return header{}, nil, nil, fmt.Errorf("%w: header typ %q, want %q", ErrMalformed, short(h.Typ), Typ)
	}
	if len(raw[2]) != ed25519.SignatureSize {
		return header{}, nil, nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrMalformed, len(raw[2]), ed25519.SignatureSize)
	}
	return h, raw[1], raw[2], nil
}

// strictUnmarshal rejects unknown fields and trailing data: a header field
// this code does not understand, such as "crit" or "jwk", might be one the
// signer meant to be enforced.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func parsePayload(body []byte) (*payload, error) {
	var p payload
	// Unknown payload fields are tolerated, unlike in the header: a newer
	// hub may add claims, and they are covered by the signature anyway.
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: payload: data after the JSON object", ErrMalformed)
	}
	return &p, nil
}

// check applies the field rules shared by Issue and Verify.
func check(p *payload) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
	}
	s := &p.VC.CredentialSubject
	switch {
	case p.Iss == "":
		return bad("iss", "required")
	case p.Sub == "":
		return bad("sub", "required")
	case p.Jti == "":
		return bad("jti", "required")
	case p.Exp == 0:
		return bad("exp", "required")
	case p.Iat > p.Exp:
		return bad("iat", "after exp")
	case p.Nbf > p.Exp:
		return bad("nbf", "after exp")
	case s.Code == "":
		return bad("vc.credentialSubject.code", "required")
	case s.Tenant == "":
		return bad("vc.credentialSubject.tenant", "required")
	case s.ID != p.Sub:
		return bad("vc.credentialSubject.id", "%q differs from sub", short(s.ID))
	case !contains(p.VC.Context, ContextV2):
		return bad("vc.@context", "missing %q", ContextV2)
	case !contains(p.VC.Type, TypeVC) || !contains(p.VC.Type, TypeCredential):
		return bad("vc.type", "want %q and %q", TypeVC, TypeCredential)
	}
	if _, err := keys.ParseDID(p.Iss); err != nil {
		return bad("iss", "%v", err)
	}
	if _, err := keys.ParseDID(p.Sub); err != nil {
		return bad("sub", "%v", err)
	}
	if _, err := code.Parse(s.Code); err != nil {
		return bad("vc.credentialSubject.code", "%v", err)
	}
	if s.Number != "" {
		if a, err := netip.ParseAddr(s.Number); err != nil || !a.Is6() || a.Zone() != "" {
			return bad("vc.credentialSubject.number", "%q is not an IPv6 address", short(s.Number))
		}
	}
	if s.Model != nil {
		if _, err := code.Parse(s.Model.ID); err != nil {
			return bad("vc.credentialSubject.model.id", "%v", err)
		}
		if s.Model.Version == "" {
			return bad("vc.credentialSubject.model.version", "required with model.id")
		}
	}
	return nil
}

func claims(p *payload) Claims {
	s := p.VC.CredentialSubject
	c := Claims{
		ID:        p.Jti,
		Issuer:    p.Iss,
		Subject:   p.Sub,
		Code:      s.Code,
		Number:    s.Number,
		Tenant:    s.Tenant,
		Kind:      s.Kind,
		IssuedAt:  unix(p.Iat),
		NotBefore: unix(p.Nbf),
		ExpiresAt: unix(p.Exp),
	}
	if s.Model != nil {
		c.ModelID, c.ModelVersion = s.Model.ID, s.Model.Version
	}
	return c
}

// unix maps the JSON zero (an absent claim) to the zero Time, so that a
// missing nbf reads as "unset" rather than 1970.
func unix(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
