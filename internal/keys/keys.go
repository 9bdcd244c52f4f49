// Package keys handles the key pairs of devices and hubs: generating them,
// naming them as did:key DIDs, encoding them (PKIX, PKCS#8, PEM, base64),
// fingerprinting them, and parsing the certificate signing requests devices
// send when they claim an identity.
//
// Only two algorithms exist in wanwu: ECDSA on P-256, the default because the
// secure elements fitted to devices support it, and Ed25519. Everything else
// (RSA, other curves) is rejected with ErrUnsupportedKey at the edge of the
// system, so code further in never has to consider it.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Alg names a key algorithm.
type Alg string

// The supported algorithms.
const (
	P256    Alg = "ecdsa-p256"
	Ed25519 Alg = "ed25519"
)

var (
	// ErrUnsupportedKey means the key is of an algorithm wanwu does not use
	// (RSA, a curve other than P-256, ...).
	ErrUnsupportedKey = errors.New("unsupported key algorithm")
	// ErrInvalidKey means the key is of a supported algorithm but malformed:
	// bad encoding, wrong length, or not a point on the curve.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidCSR means a certificate signing request was rejected; the
	// wrapping error gives the reason.
	ErrInvalidCSR = errors.New("invalid certificate signing request")
	// ErrInvalidDID means a string is not a did:key DID of a supported key.
	ErrInvalidDID = errors.New("invalid did:key")
)

// ParseAlg parses an algorithm name as operators type it. The empty string
// means the default, P256.
func ParseAlg(s string) (Alg, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "p256", "p-256", "ecdsa-p256", "ec", "ecdsa":
		return P256, nil
	case "ed25519":
		return Ed25519, nil
	}
	return "", fmt.Errorf("%w: %q (want p256 or ed25519)", ErrUnsupportedKey, s)
}

// Generate creates a new key pair with the system's random source.
func Generate(alg Alg) (crypto.Signer, error) {
	switch alg {
	case P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedKey, alg)
}

// AlgOf returns the algorithm of pub, checking on the way that pub is a
// usable key: an ECDSA key must be a valid P-256 point and an Ed25519 key a
// canonically encoded curve point.
func AlgOf(pub crypto.PublicKey) (Alg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return "", fmt.Errorf("%w: nil ECDSA key", ErrInvalidKey)
		}
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		// Bytes re-validates the point, which catches keys assembled by hand
		// from X and Y.
		if _, err := k.Bytes(); err != nil {
			return "", fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		return P256, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: Ed25519 key of %d bytes", ErrInvalidKey, len(k))
		}
		if !validEd25519Point(k) {
			return "", fmt.Errorf("%w: Ed25519 key is not a point on the curve", ErrInvalidKey)
		}
		return Ed25519, nil
	case nil:
		return "", fmt.Errorf("%w: no key", ErrInvalidKey)
	}
	return "", fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// SPKI returns the PKIX (SubjectPublicKeyInfo) DER encoding of pub, the
// form certificates, fingerprints and IPv6 interface ids are computed from.
func SPKI(pub crypto.PublicKey) ([]byte, error) {
	if _, err := AlgOf(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return der, nil
}

// MarshalPublicKeyPEM returns pub as a PEM "PUBLIC KEY" block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := SPKI(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Fingerprint returns the lowercase hex SHA-256 of pub's SPKI DER, the same
// value `openssl pkey -pubin -outform DER | sha256sum` prints. It returns ""
// for a key SPKI rejects, so that a fingerprint never silently stands for an
// unusable key.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := SPKI(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// MarshalPrivateKeyPEM returns k as a PKCS#8 PEM "PRIVATE KEY" block.
func MarshalPrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	if p, ok := k.(*ed25519.PrivateKey); ok && p != nil {
		// x509 only knows the value type.
		k = *p
	}
	if k == nil {
		return nil, fmt.Errorf("%w: no key", ErrInvalidKey)
	}
	if _, err := AlgOf(k.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM parses a PEM "PRIVATE KEY" (PKCS#8) block, or an "EC
// PRIVATE KEY" (SEC 1) block as older OpenSSL writes, holding a supported key.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrInvalidKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrInvalidKey)
	}
	if len(block.Headers) != 0 {
		// Headers mean a legacy encrypted key, which this package cannot
		// decrypt; saying so beats a confusing ASN.1 error.
		return nil, fmt.Errorf("%w: PEM headers (encrypted key?) are not supported", ErrInvalidKey)
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q, want \"PRIVATE KEY\"", ErrInvalidKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
	}
	if _, err := AlgOf(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}
