package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
)

// did:key (https://w3c-ccg.github.io/did-key-spec/) encodes a public key as
// multibase base58btc ('z') of a multicodec varint followed by the key bytes.
// The varints below are the unsigned-varint encodings of ed25519-pub (0xed)
// and p256-pub (0x1200).
const didKeyPrefix = "did:key:"

var (
	codecEd25519 = []byte{0xed, 0x01}
	codecP256    = []byte{0x80, 0x24}
)

// maxDIDID bounds the method-specific id before base58 decoding, whose cost
// is quadratic; the longest valid one (a P-256 key) is about 50 characters.
const maxDIDID = 128

// DID returns the did:key DID of pub. P-256 keys are encoded as 33-byte
// compressed points, as the did:key spec requires.
func DID(pub crypto.PublicKey) (string, error) {
	alg, err := AlgOf(pub)
	if err != nil {
		return "", err
	}
	var raw []byte
	switch alg {
	case Ed25519:
		raw = append(append(raw, codecEd25519...), pub.(ed25519.PublicKey)...)
	case P256:
		u, err := pub.(*ecdsa.PublicKey).Bytes() // 0x04 || X || Y
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		raw = append(append(raw, codecP256...), 0x02|u[64]&1)
		raw = append(raw, u[1:33]...)
	}
	return didKeyPrefix + "z" + base58Encode(raw), nil
}

// ParseDID returns the public key named by a did:key DID. A DID URL such as
// "did:key:z6Mk...#z6Mk..." is accepted too, its fragment ignored, because
// verification methods are commonly referred to that way.
func ParseDID(did string) (crypto.PublicKey, error) {
	s := did
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	id, ok := strings.CutPrefix(s, didKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with %q", ErrInvalidDID, short(did), didKeyPrefix)
	}
	if len(id) > maxDIDID {
		return nil, fmt.Errorf("%w: method-specific id is %d bytes, longer than %d", ErrInvalidDID, len(id), maxDIDID)
	}
	enc, ok := strings.CutPrefix(id, "z")
	if !ok || enc == "" {
		return nil, fmt.Errorf("%w: want multibase base58btc ('z') encoding", ErrInvalidDID)
	}
	raw, err := base58Decode(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDID, err)
	}
	switch {
	case bytes.HasPrefix(raw, codecEd25519):
		key := raw[len(codecEd25519):]
		if len(key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: %w: Ed25519 key of %d bytes", ErrInvalidDID, ErrInvalidKey, len(key))
		}
		pub := ed25519.PublicKey(bytes.Clone(key))
		if _, err := AlgOf(pub); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidDID, err)
		}
		return pub, nil
	case bytes.HasPrefix(raw, codecP256):
		pub, err := decompressP256(raw[len(codecP256):])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidDID, err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("%w: %w: multicodec is not ed25519-pub or p256-pub", ErrInvalidDID, ErrUnsupportedKey)
}

func decompressP256(b []byte) (*ecdsa.PublicKey, error) {
	if len(b) != 33 || (b[0] != 2 && b[0] != 3) {
		return nil, fmt.Errorf("%w: P-256 key must be a 33-byte compressed point", ErrInvalidKey)
	}
	// UnmarshalCompressed checks the point is on the curve.
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), b)
	if x == nil {
		return nil, fmt.Errorf("%w: not a P-256 point", ErrInvalidKey)
	}
	u := make([]byte, 65)
	u[0] = 4
	x.FillBytes(u[1:33])
	y.FillBytes(u[33:])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), u)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return pub, nil
}

// maxPublicKeyText bounds ParsePublicKey's input: a PEM P-256 key is under
// 200 bytes, so anything near this is not a key.
const maxPublicKeyText = 16 << 10

// ParsePublicKey parses a public key as people paste it: a did:key DID, a
// PEM "PUBLIC KEY" block, or base64 (standard or URL alphabet, padded or
// not) of PKIX DER. Only supported algorithms are returned.
func ParsePublicKey(s string) (crypto.PublicKey, error) {
	if len(s) > maxPublicKeyText {
		return nil, fmt.Errorf("%w: %d bytes is too long for a public key", ErrInvalidKey, len(s))
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	case strings.HasPrefix(s, "did:"):
		return ParseDID(s)
	case strings.HasPrefix(s, "-----BEGIN"):
		block, rest := pem.Decode([]byte(s))
		if block == nil {
			return nil, fmt.Errorf("%w: malformed PEM", ErrInvalidKey)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: data after the PEM block", ErrInvalidKey)
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: PEM block %q, want \"PUBLIC KEY\"", ErrInvalidKey, block.Type)
		}
		return parseSPKI(block.Bytes)
	}
	der, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not a did:key, PEM or base64: %w", ErrInvalidKey, err)
	}
	return parseSPKI(der)
}

func parseSPKI(der []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		// x509 reports unknown algorithms (e.g. X25519, brainpool) as errors
		// rather than values; they are still "unsupported", not "invalid",
		// but the distinction is not worth parsing the error string for.
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if _, err := AlgOf(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// decodeBase64 accepts every common spelling of base64, since keys arrive
// from tools that disagree on alphabet and padding.
func decodeBase64(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Ed25519 field arithmetic for validEd25519Point. math/big is slow but this
// runs once per key parsed, and it avoids depending on a curve library for
// one check.
var (
	edP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// edD = -121665/121666 mod p
	edD = func() *big.Int {
		d := new(big.Int).ModInverse(big.NewInt(121666), edP)
		d.Mul(d, big.NewInt(-121665))
		return d.Mod(d, edP)
	}()
)

// validEd25519Point reports whether k is the canonical encoding of a point on
// edwards25519 (RFC 8032 §5.1.3). crypto/ed25519 accepts any 32 bytes as a
// public key and merely fails every verification; rejecting them when the key
// is registered gives the operator an error at the right moment.
func validEd25519Point(k []byte) bool {
	le := bytes.Clone(k)
	sign := le[31] >> 7
	le[31] &= 0x7f
	for i, j := 0, len(le)-1; i < j; i, j = i+1, j-1 {
		le[i], le[j] = le[j], le[i]
	}
	y := new(big.Int).SetBytes(le)
	if y.Cmp(edP) >= 0 {
		return false
	}
	y2 := new(big.Int).Mul(y, y)
	y2.Mod(y2, edP)
	u := new(big.Int).Sub(y2, big.NewInt(1))
	u.Mod(u, edP)
	v := new(big.Int).Mul(edD, y2)
	v.Add(v, big.NewInt(1))
	v.Mod(v, edP)
	x2 := new(big.Int).ModInverse(v, edP) // v is never 0: d is not a square
	x2.Mul(x2, u)
	x2.Mod(x2, edP)
	if x2.Sign() == 0 {
		return sign == 0
	}
	return big.Jacobi(x2, edP) == 1
}
