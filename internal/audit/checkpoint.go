package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// SignedHead is a signed tree head: a C2SP tlog checkpoint
// (https://c2sp.org/tlog-checkpoint) inside a signed note
// (https://c2sp.org/signed-note).
type SignedHead struct {
	Origin string
	Size   uint64
	Root   []byte // RFC 6962 root hash, 32 bytes
	Note   []byte // the full signed note text
}

// checkpointBody is the note text: origin, size, root, each on its own line.
func checkpointBody(origin string, size uint64, root []byte) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root))
}

// NewVerifier returns the note verifier for heads of the log named origin,
// signed with the Ed25519 key whose public half is pub.
func NewVerifier(pub ed25519.PublicKey, origin string) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier for origin %q: %w", origin, err)
	}
	return v, nil
}

// newSigner builds a note signer from an Ed25519 key. x/mod/sumdb/note only
// constructs signers from its encoded key string, so the key is encoded the
// way note.GenerateKey does.
func newSigner(key ed25519.PrivateKey, origin string) (note.Signer, string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, "", fmt.Errorf("audit: Ed25519 private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	v, err := NewVerifier(key.Public().(ed25519.PublicKey), origin)
	if err != nil {
		return nil, "", err
	}
	const algEd25519 = 1
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", origin, v.KeyHash(),
		base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, key.Seed()...)))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("audit: signer for origin %q: %w", origin, err)
	}
	vkey, _ := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	return s, vkey, nil
}

func signHead(s note.Signer, origin string, size uint64, root []byte) (SignedHead, error) {
	msg, err := note.Sign(&note.Note{Text: checkpointBody(origin, size, root)}, s)
	if err != nil {
		return SignedHead{}, fmt.Errorf("audit: sign head: %w", err)
	}
	return SignedHead{Origin: origin, Size: size, Root: root, Note: msg}, nil
}

// ParseHead checks a signed head's signature with v and parses its checkpoint.
// A note not signed by v's key, or signed for another origin, fails with
// ErrBadSignature; a note whose text is not a checkpoint fails with
// ErrMalformedHead. Extension lines after the root are allowed and ignored,
// as the checkpoint format permits.
func ParseHead(noteText []byte, v note.Verifier) (SignedHead, error) {
	n, err := note.Open(noteText, note.VerifierList(v))
	if err != nil {
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		if errors.As(err, &inv) || errors.As(err, &unv) {
			return SignedHead{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
		return SignedHead{}, fmt.Errorf("%w: %w", ErrMalformedHead, err)
	}
	lines := strings.Split(n.Text, "\n") // Text ends in "\n", so the last element is ""
	if len(lines) < 4 {
		return SignedHead{}, fmt.Errorf("%w: %d lines, want origin, size and root", ErrMalformedHead, len(lines)-1)
	}
	origin, sizeStr, rootStr := lines[0], lines[1], lines[2]
	if origin != v.Name() {
		return SignedHead{}, fmt.Errorf("%w: head is for origin %q, verifier for %q", ErrBadSignature, origin, v.Name())
	}
	size, err := strconv.ParseUint(sizeStr, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeStr {
		return SignedHead{}, fmt.Errorf("%w: size %q is not a decimal number", ErrMalformedHead, sizeStr)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootStr)
	if err != nil || len(root) != hashSize {
		return SignedHead{}, fmt.Errorf("%w: root %q is not a base64 SHA-256 hash", ErrMalformedHead, rootStr)
	}
	return SignedHead{Origin: origin, Size: size, Root: root, Note: bytes.Clone(noteText)}, nil
}
