// Package psk derives the DTLS pre-shared keys of CoAP devices from one
// master key, so that nothing is stored per device.
//
// A device's PSK is
//
//	HMAC-SHA256(master, "wanwu-psk-v1" 0x00 code 0x00 fingerprint)[:16]
//
// where fingerprint is the fingerprint of the device's active key in the
// registry. Rotating the device's key therefore changes its PSK, and
// revoking the key (which makes the device inadmissible) needs no PSK
// bookkeeping at all. The master key is 32 random bytes in a 0600 file of
// the hub's data directory; losing it changes every device's PSK.
package psk

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

// PSKSize is the length of a derived PSK in bytes (128 bits, what the
// TLS_PSK_WITH_AES_128_CCM_8 suites of RFC 7925 use).
const PSKSize = 16

// label separates this derivation from any other use of the master key.
const label = "wanwu-psk-v1"

// ErrBadKeyFile is returned for a master key file that is not 64 hex digits.
var ErrBadKeyFile = errors.New("psk: master key file is not 32 bytes of hex")

// Deriver derives device PSKs from a master key. It is safe for concurrent use.
type Deriver struct {
	master []byte
}

// New returns a Deriver for a 32-byte master key.
func New(master []byte) (*Deriver, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("psk: master key is %d bytes, want %d", len(master), KeySize)
	}
	return &Deriver{master: append([]byte(nil), master...)}, nil
}

// LoadOrCreate loads the master key stored as hex at path or, if there is
// no file, generates one and writes it with mode 0600. Creation is atomic
// (keys.WriteNewFile): two processes racing end up with the same key.
func LoadOrCreate(path string) (*Deriver, error) {
	d, err := load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return d, err
	}
	master := make([]byte, KeySize)
	if _, err := rand.Read(master); err != nil {
		return nil, fmt.Errorf("psk: generate master key: %w", err)
	}
	if err := keys.WriteNewFile(path, []byte(hex.EncodeToString(master)+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return load(path)
		}
		return nil, fmt.Errorf("psk: write master key: %w", err)
	}
	return New(master)
}

func load(path string) (*Deriver, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	master, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(master) != KeySize {
		return nil, fmt.Errorf("%w: %s", ErrBadKeyFile, path)
	}
	return New(master)
}

// Derive returns the 16-byte PSK of the device code whose active key has
// the given fingerprint.
func (d *Deriver) Derive(code, keyFingerprint string) []byte {
	m := hmac.New(sha256.New, d.master)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(code))
	m.Write([]byte{0})
	m.Write([]byte(keyFingerprint))
	return m.Sum(nil)[:PSKSize]
}

// KeySeparator separates a device code from a key id in a PSK identity.
// It cannot occur in a code.
const KeySeparator = "~"

// KeyIDLen is how many hex digits of a key's fingerprint name it in a PSK
// identity.
const KeyIDLen = 16

// Identity is the PSK identity that names one key of a device:
// "<code>~<first 16 hex digits of the key's fingerprint>". It stays valid
// for as long as that key does, across rotations of other keys.
func Identity(code, keyFingerprint string) string {
	return code + KeySeparator + keyFingerprint[:min(KeyIDLen, len(keyFingerprint))]
}

// ParseIdentity splits a PSK identity into the device code and the key id
// ("" for a bare code, which names the device's oldest valid key: during a
// rotation's overlap, the retiring one).
func ParseIdentity(identity string) (code, keyID string) {
	code, keyID, _ = strings.Cut(identity, KeySeparator)
	return code, keyID
}

// Select picks the fingerprint a key id names among a device's valid keys,
// oldest first: the oldest for "", else the one whose fingerprint starts
// with the id (at least 8 hex digits). ok is false when none does.
func Select(fingerprints []string, keyID string) (fp string, ok bool) {
	if len(fingerprints) == 0 {
		return "", false
	}
	if keyID == "" {
		return fingerprints[0], true
	}
	if len(keyID) < 8 {
		return "", false
	}
	for _, f := range fingerprints {
		if strings.HasPrefix(f, strings.ToLower(keyID)) {
			return f, true
		}
	}
	return "", false
}
