// Package devtoken implements device tokens: short-lived compact JWS that a
// device signs with its own private key to prove, as an MQTT password or an
// HTTP bearer token, that it holds the key registered for its code.
//
// A token is not a shared secret: the hub never stores one, and a leaked token
// expires within a day. P-256 keys sign ES256 (RFC 7518 §3.4, r||s), Ed25519
// keys sign EdDSA (RFC 8037). Claims: sub (the code), aud ("wanwu"), iat, exp.
package devtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
)

// Token parameters.
const (
	Audience    = "wanwu"
	MaxLifetime = 24 * time.Hour
	// MaxSize bounds what Verify reads: a token is a few hundred bytes.
	MaxSize = 2048
	// Skew is the clock difference tolerated between device and hub.
	Skew = 5 * time.Minute
)

// Errors; every failure of Verify wraps one of them.
var (
	// ErrMalformed: not a compact JWS with the expected header and claims.
	ErrMalformed = errors.New("malformed device token")
	// ErrSignature: no registered key of the device verifies the signature.
	ErrSignature = errors.New("device token signature invalid")
	// ErrExpired: outside its validity, or valid for longer than MaxLifetime.
	ErrExpired = errors.New("device token expired or not yet valid")
	// ErrUnknownDevice: the lookup found no key for the code.
	ErrUnknownDevice = errors.New("unknown device")
)

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
}

type claims struct {
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// Strict decoding: one token has one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Sign makes a token for code valid from now for ttl (at most MaxLifetime).
func Sign(key crypto.Signer, codeStr string, now time.Time, ttl time.Duration) (string, error) {
	if _, err := code.Parse(codeStr); err != nil {
		return "", fmt.Errorf("devtoken: %w", err)
	}
	if ttl <= 0 || ttl > MaxLifetime {
		return "", fmt.Errorf("devtoken: lifetime %v must be in (0, %v]", ttl, MaxLifetime)
	}
	var alg string
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		alg = "ES256"
	case ed25519.PublicKey:
		alg = "EdDSA"
	default:
		return "", fmt.Errorf("devtoken: unsupported key type %T", key.Public())
	}
	h, _ := json.Marshal(header{Alg: alg, Typ: "JWT"})
	c, _ := json.Marshal(claims{Sub: codeStr, Aud: Audience, Iat: now.Unix(), Exp: now.Add(ttl).Unix()})
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(signing))
	case *ecdsa.PrivateKey:
		digest := sha256.Sum256([]byte(signing))
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			return "", fmt.Errorf("devtoken: sign: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	default:
		// A signer without an exportable key (a secure element): ask it.
		var err error
		if alg == "EdDSA" {
			sig, err = key.Sign(rand.Reader, []byte(signing), crypto.Hash(0))
		} else {
			digest := sha256.Sum256([]byte(signing))
			var der []byte
			if der, err = key.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
				sig, err = derToRS(der)
			}
		}
		if err != nil {
			return "", fmt.Errorf("devtoken: sign: %w", err)
		}
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

// Subject returns the code a token claims, without verifying it, so that the
// caller can look up the keys to verify with.
func Subject(token string) (string, error) {
	_, c, _, _, err := split(token)
	if err != nil {
		return "", err
	}
	return c.Sub, nil
}

// Expiry returns when a token expires, without verifying it: for callers
// that verified it already and keep the result no longer than the token.
func Expiry(token string) (time.Time, error) {
	_, c, _, _, err := split(token)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(c.Exp, 0), nil
}

func split(token string) (header, claims, string, []byte, error) {
	var h header
	var c claims
	if len(token) > MaxSize {
		return h, c, "", nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(token), MaxSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, c, "", nil, fmt.Errorf("%w: want three dot-separated parts", ErrMalformed)
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return h, c, "", nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if err := strictJSON(hb, &h); err != nil {
		return h, c, "", nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if h.Alg != "ES256" && h.Alg != "EdDSA" {
		return h, c, "", nil, fmt.Errorf("%w: alg %q (want ES256 or EdDSA)", ErrMalformed, h.Alg)
	}
	cb, err := b64.DecodeString(parts[1])
	if err != nil {
		return h, c, "", nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := strictJSON(cb, &c); err != nil {
		return h, c, "", nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if _, err := code.Parse(c.Sub); err != nil {
		return h, c, "", nil, fmt.Errorf("%w: sub: %v", ErrMalformed, err)
	}
	if c.Aud != Audience {
		return h, c, "", nil, fmt.Errorf("%w: aud %q (want %q)", ErrMalformed, c.Aud, Audience)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return h, c, "", nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	return h, c, parts[0] + "." + parts[1], sig, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Verify checks a token against the keys the device may use (its active key
// and any rotated-out key still in its overlap) and the time window, and
// returns the code it proves.
func Verify(token string, keys func(code string) ([]crypto.PublicKey, error), now time.Time) (string, error) {
	return VerifySkew(token, keys, now, Skew)
}

// VerifySkew is Verify with another tolerated clock difference: a token is
// accepted from skew before its iat until skew after its exp.
func VerifySkew(token string, keys func(code string) ([]crypto.PublicKey, error), now time.Time, skew time.Duration) (string, error) {
	h, c, signing, sig, err := split(token)
	if err != nil {
		return "", err
	}
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	switch {
	case c.Exp <= c.Iat:
		return "", fmt.Errorf("%w: exp is not after iat", ErrExpired)
	case exp.Sub(iat) > MaxLifetime:
		return "", fmt.Errorf("%w: lifetime %v over %v", ErrExpired, exp.Sub(iat), MaxLifetime)
	case now.Add(skew).Before(iat):
		return "", fmt.Errorf("%w: issued in the future", ErrExpired)
	case !now.Before(exp.Add(skew)):
		return "", fmt.Errorf("%w: expired at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	pubs, err := keys(c.Sub)
	if err != nil {
		return "", err
	}
	if len(pubs) == 0 {
		return "", fmt.Errorf("%w: %s", ErrUnknownDevice, c.Sub)
	}
	for _, pub := range pubs {
		if verifySig(h.Alg, pub, []byte(signing), sig) {
			return c.Sub, nil
		}
	}
	return "", fmt.Errorf("%w for %s", ErrSignature, c.Sub)
}

func verifySig(alg string, pub crypto.PublicKey, signing, sig []byte) bool {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(sig) == ed25519.SignatureSize && ed25519.Verify(k, signing, sig)
	case *ecdsa.PublicKey:
		if alg != "ES256" || len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256(signing)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, digest[:], r, s)
	}
	return false
}

// derToRS converts an ASN.1 ECDSA signature to JWS's fixed r||s form.
func derToRS(der []byte) ([]byte, error) {
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	v.R.FillBytes(out[:32])
	v.S.FillBytes(out[32:])
	return out, nil
}
