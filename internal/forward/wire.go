package forward

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// The edge↔hub link is HTTP/2 over TLS with the edge's client certificate
// (PROTOCOL.md, "Edge link"):
//
//	GET  /api/v1/edge/forward?epoch=E   → State: what the hub holds of each class
//	POST /api/v1/edge/forward           Uplink (CBOR) → Ack: the class's new high-water mark
//
// An uplink carries consecutive outbox messages of one class with their
// sequences; (edge, epoch, class, sequence) is the idempotency key: the hub
// stores what is above its high-water mark and answers with the mark.

// Uplink is one forwarding request.
type Uplink struct {
	// Epoch names the edge's outboxes: a new data directory, or outboxes
	// whose sequences started again, are a new epoch with marks of their own.
	Epoch string   `cbor:"1,keyasint"`
	Class uint8    `cbor:"2,keyasint"`
	Seqs  []uint64 `cbor:"3,keyasint"` // ascending
	Data  [][]byte `cbor:"4,keyasint"` // outbox messages (framed ingest batches)
	// Status is the edge's state for the hub's `ctl edge show` (JSON), sent
	// now and then.
	Status []byte `cbor:"5,keyasint,omitempty"`
}

// Ack answers an uplink: the hub holds the class through HWM.
type Ack struct {
	HWM uint64 `json:"hwm"`
}

// State is what the hub holds of an edge's epoch, per class.
type State struct {
	Epoch string             `json:"epoch"`
	HWM   [NumClasses]uint64 `json:"hwm"`
}

// Limits of an uplink.
const (
	MaxUplinkBytes    = 16 << 20
	MaxUplinkMessages = 4096
	maxEpochLen       = 64
)

var uplinkDecMode, _ = cbor.DecOptions{
	MaxArrayElements: MaxUplinkMessages + 16, MaxMapPairs: 16, MaxNestedLevels: 4,
	DupMapKey: cbor.DupMapKeyEnforcedAPF, ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
}.DecMode()

// ErrUplink is wrapped by the errors DecodeUplink returns.
var ErrUplink = errors.New("forward: malformed uplink")

// EncodeUplink encodes an uplink.
func EncodeUplink(u *Uplink) ([]byte, error) { return cbor.Marshal(u) }

// DecodeUplink decodes and checks an uplink.
func DecodeUplink(b []byte) (*Uplink, error) {
	if len(b) > MaxUplinkBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrUplink, len(b), MaxUplinkBytes)
	}
	var u Uplink
	if err := uplinkDecMode.Unmarshal(b, &u); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUplink, err)
	}
	switch {
	case u.Epoch == "" || len(u.Epoch) > maxEpochLen:
		return nil, fmt.Errorf("%w: epoch must be 1 to %d bytes", ErrUplink, maxEpochLen)
	case u.Class >= NumClasses:
		return nil, fmt.Errorf("%w: class %d", ErrUplink, u.Class)
	case len(u.Seqs) != len(u.Data):
		return nil, fmt.Errorf("%w: %d sequences for %d messages", ErrUplink, len(u.Seqs), len(u.Data))
	case len(u.Seqs) > MaxUplinkMessages:
		return nil, fmt.Errorf("%w: %d messages, at most %d", ErrUplink, len(u.Seqs), MaxUplinkMessages)
	}
	for i, s := range u.Seqs {
		if s == 0 || i > 0 && s <= u.Seqs[i-1] {
			return nil, fmt.Errorf("%w: sequences must ascend from 1", ErrUplink)
		}
	}
	return &u, nil
}

// signed is a record with its signature: {"gap": {...}, "sig": "..."}.
type signed struct {
	Gap json.RawMessage `json:"gap"`
	Sig string          `json:"sig,omitempty"`
}

// SignRecord wraps a gap record's JSON with the signature of key over its
// exact bytes (ECDSA P-256 over SHA-256, ASN.1; Ed25519 over the bytes);
// a nil key leaves it unsigned.
func SignRecord(body []byte, key crypto.Signer) ([]byte, error) {
	s := signed{Gap: body}
	if key != nil {
		var sig []byte
		var err error
		switch key.Public().(type) {
		case ed25519.PublicKey:
			sig, err = key.Sign(rand.Reader, body, crypto.Hash(0))
		default:
			d := sha256.Sum256(body)
			sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
		}
		if err != nil {
			return nil, fmt.Errorf("forward: sign gap record: %w", err)
		}
		s.Sig = base64.RawURLEncoding.EncodeToString(sig)
	}
	return json.Marshal(s)
}

// ErrSignature is returned for a record whose signature is missing or does
// not verify.
var ErrSignature = errors.New("forward: record signature does not verify")

// VerifyRecord checks a signed record against the edge's public key and
// returns the record's JSON.
func VerifyRecord(data []byte, pub crypto.PublicKey) ([]byte, error) {
	var s signed
	if err := json.Unmarshal(data, &s); err != nil || len(s.Gap) == 0 {
		return nil, fmt.Errorf("%w: not a signed record", ErrSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s.Sig)
	if err != nil || len(sig) == 0 {
		return s.Gap, fmt.Errorf("%w: no signature", ErrSignature)
	}
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, s.Gap, sig)
	case *ecdsa.PublicKey:
		d := sha256.Sum256(s.Gap)
		ok = ecdsa.VerifyASN1(k, d[:], sig)
	}
	if !ok {
		return s.Gap, ErrSignature
	}
	return s.Gap, nil
}
