package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SigningContext precedes the payload in what the hub's key signs, so that
// a snapshot's signature is valid for nothing else the key signs.
const SigningContext = "wanwu edge identity snapshot v1\n"

// envelope is the signed snapshot as it travels.
type envelope struct {
	Payload   []byte `json:"payload"`   // the snapshot's JSON (base64 in the envelope)
	Signature []byte `json:"signature"` // Ed25519 over SigningContext + Payload
}

// Sign validates s, encodes it and signs it with the hub's key, returning
// the envelope to hand to the edge.
func Sign(s *Snapshot, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("snapshot: sign: the key is %d bytes, not an Ed25519 private key", len(key))
	}
	if err := Validate(s); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode: %w", err)
	}
	out, err := json.Marshal(envelope{Payload: payload, Signature: ed25519.Sign(key, signed(payload))})
	if err != nil {
		return nil, fmt.Errorf("snapshot: encode: %w", err)
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(out), MaxSize)
	}
	return out, nil
}

func signed(payload []byte) []byte {
	return append([]byte(SigningContext), payload...)
}

// Verify checks a signed snapshot against the hub's public key and returns
// it: signed by hubKey over exactly these bytes, of the known format,
// well formed and consistent (Validate), for edge, and of a version not
// below notBefore (the version the edge applied last; 0 for none). The
// order of the checks and the errors are in the package documentation.
func Verify(data []byte, hubKey ed25519.PublicKey, edge string, notBefore uint64) (*Snapshot, error) {
	if len(hubKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("snapshot: verify: the hub key is %d bytes, not an Ed25519 public key", len(hubKey))
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(data), MaxSize)
	}
	var env envelope
	if err := decodeStrict(data, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if len(env.Payload) == 0 || len(env.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: envelope: needs a payload and a %d-byte signature", ErrMalformed, ed25519.SignatureSize)
	}
	if !ed25519.Verify(hubKey, signed(env.Payload), env.Signature) {
		return nil, fmt.Errorf("%w: not signed by the hub's key over this payload", ErrForged)
	}
	// Signed: from here on the payload is the hub's word, still checked
	// as input (a hub of another version, a bug).
	var head struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(env.Payload, &head); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if head.Format != FormatVersion {
		return nil, fmt.Errorf("%w: format %d, this binary reads %d", ErrFormat, head.Format, FormatVersion)
	}
	s := &Snapshot{}
	if err := decodeStrict(env.Payload, s); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if err := Validate(s); err != nil {
		return nil, err
	}
	if s.Edge != edge {
		return nil, fmt.Errorf("%w: it is for %s, this is %s", ErrWrongEdge, s.Edge, edge)
	}
	if s.Version < notBefore {
		return nil, fmt.Errorf("%w: version %d, and version %d is applied", ErrStale, s.Version, notBefore)
	}
	return s, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing members v
// does not have and anything after the value.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
