package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Test vectors from the did:key spec (https://w3c-ccg.github.io/did-key-spec/).
const (
	specEd25519DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
	specP256DID    = "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169"
)

func TestBase58(t *testing.T) {
	tests := []struct {
		raw string
		enc string
	}{
		{"", ""},
		{"\x00", "1"},
		{"\x00\x00", "11"},
		{"Hello World!", "2NEpo7TZRRrLZSi2U"},
		{"The quick brown fox jumps over the lazy dog.", "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"},
		{"\x00\x00\x28\x7f\xb4\xcd", "11233QC4"},
	}
	for _, tt := range tests {
		if got := base58Encode([]byte(tt.raw)); got != tt.enc {
			t.Errorf("base58Encode(%q) = %q, want %q", tt.raw, got, tt.enc)
		}
		got, err := base58Decode(tt.enc)
		if err != nil || string(got) != tt.raw {
			t.Errorf("base58Decode(%q) = %q, %v; want %q", tt.enc, got, err, tt.raw)
		}
	}
	for _, bad := range []string{"0", "O", "I", "l", "abc+", "é"} {
		if _, err := base58Decode(bad); err == nil {
			t.Errorf("base58Decode(%q) accepted", bad)
		}
	}
}

func TestParseAlg(t *testing.T) {
	tests := []struct {
		in   string
		want Alg
		ok   bool
	}{
		{"", P256, true},
		{"p256", P256, true},
		{"P256", P256, true},
		{"ecdsa-p256", P256, true},
		{"ec", P256, true},
		{" ed25519 ", Ed25519, true},
		{"rsa", "", false},
		{"secp256k1", "", false},
	}
	for _, tt := range tests {
		got, err := ParseAlg(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAlg(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("ParseAlg(%q) error %v does not wrap ErrUnsupportedKey", tt.in, err)
		}
	}
}

func TestAlgOf(t *testing.T) {
	p256 := mustGenerate(t, P256)
	ed := mustGenerate(t, Ed25519)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	// Y with the wrong parity is off the curve.
	offCurve := &ecdsa.PublicKey{Curve: elliptic.P256(), X: p256.Public().(*ecdsa.PublicKey).X, Y: bigPlusOne(p256.Public().(*ecdsa.PublicKey).Y)}
	notAPoint := ed25519.PublicKey(mustHex(t, "0200000000000000000000000000000000000000000000000000000000000000"))
	nonCanonical := ed25519.PublicKey(mustHex(t, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"))

	tests := []struct {
		name string
		pub  crypto.PublicKey
		want Alg
		err  error
	}{
		{"p256", p256.Public(), P256, nil},
		{"ed25519", ed.Public(), Ed25519, nil},
		{"p384", p384.Public(), "", ErrUnsupportedKey},
		{"rsa", rsaKey.Public(), "", ErrUnsupportedKey},
		{"nil", nil, "", ErrInvalidKey},
		{"short ed25519", ed25519.PublicKey(make([]byte, 31)), "", ErrInvalidKey},
		{"ed25519 not on curve", notAPoint, "", ErrInvalidKey},
		{"ed25519 y >= p", nonCanonical, "", ErrInvalidKey},
		{"p256 off curve", offCurve, "", ErrInvalidKey},
		{"nil ecdsa", (*ecdsa.PublicKey)(nil), "", ErrInvalidKey},
	}
	for _, tt := range tests {
		got, err := AlgOf(tt.pub)
		if got != tt.want || (tt.err == nil) != (err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
			t.Errorf("%s: AlgOf = %q, %v; want %q, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestValidEd25519PointAcceptsRealKeys(t *testing.T) {
	// Every generated key is a valid point; a bug in the field arithmetic
	// would show as a fraction of these rejected.
	for i := range 200 {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		if !validEd25519Point(pub) {
			t.Fatalf("key %d (%x) rejected", i, []byte(pub))
		}
	}
	// The identity point (x=0, y=1) is valid; with the sign bit set it is
	// the non-canonical "-0".
	id := make([]byte, 32)
	id[0] = 1
	if !validEd25519Point(id) {
		t.Error("identity rejected")
	}
	id[31] |= 0x80
	if validEd25519Point(id) {
		t.Error("negative zero x accepted")
	}
}

func TestSpecDIDVectors(t *testing.T) {
	tests := []struct {
		did string
		alg Alg
	}{
		{specEd25519DID, Ed25519},
		{specP256DID, P256},
	}
	for _, tt := range tests {
		pub, err := ParseDID(tt.did)
		if err != nil {
			t.Fatalf("ParseDID(%s): %v", tt.did, err)
		}
		if alg, _ := AlgOf(pub); alg != tt.alg {
			t.Errorf("ParseDID(%s) alg %q, want %q", tt.did, alg, tt.alg)
		}
		got, err := DID(pub)
		if err != nil || got != tt.did {
			t.Errorf("DID(ParseDID(%s)) = %q, %v", tt.did, got, err)
		}
		frag := tt.did + "#" + strings.TrimPrefix(tt.did, "did:key:")
		if pub2, err := ParseDID(frag); err != nil || !pub2.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("ParseDID(%s) = %v", frag, err)
		}
	}
}

func TestDIDRoundTrip(t *testing.T) {
	for _, alg := range []Alg{P256, Ed25519} {
		for range 20 {
			k := mustGenerate(t, alg)
			did, err := DID(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			prefix := map[Alg]string{P256: "did:key:zDn", Ed25519: "did:key:z6Mk"}[alg]
			if !strings.HasPrefix(did, prefix) {
				t.Errorf("%s DID %s lacks prefix %s", alg, did, prefix)
			}
			pub, err := ParseDID(did)
			if err != nil {
				t.Fatal(err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatalf("%s: ParseDID(DID(k)) differs", alg)
			}
		}
	}
}

func TestParseDIDErrors(t *testing.T) {
	// A valid P-256 encoding with its compressed x replaced by p (not a
	// field element) must fail point validation, not panic.
	badPoint := "did:key:z" + base58Encode(append([]byte{0x80, 0x24, 0x02}, bytes.Repeat([]byte{0xff}, 32)...))
	secp256k1 := "did:key:z" + base58Encode(append([]byte{0xe7, 0x01, 0x02}, make([]byte, 32)...))
	shortEd := "did:key:z" + base58Encode(append([]byte{0xed, 0x01}, make([]byte, 31)...))
	tests := []struct {
		in   string
		also error
	}{
		{"", nil},
		{"did:web:example.com", nil},
		{"did:key:", nil},
		{"did:key:z", nil},
		{"did:key:f0123", nil},
		{"did:key:z0OIl", nil},
		{"did:key:z" + strings.Repeat("2", 200), nil},
		{badPoint, ErrInvalidKey},
		{secp256k1, ErrUnsupportedKey},
		{shortEd, ErrInvalidKey},
	}
	for _, tt := range tests {
		_, err := ParseDID(tt.in)
		if !errors.Is(err, ErrInvalidDID) {
			t.Errorf("ParseDID(%q) = %v, want ErrInvalidDID", tt.in, err)
		}
		if tt.also != nil && !errors.Is(err, tt.also) {
			t.Errorf("ParseDID(%q) = %v, want it to wrap %v too", tt.in, err, tt.also)
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	for _, alg := range []Alg{P256, Ed25519} {
		k := mustGenerate(t, alg)
		pub := k.Public()
		der, err := SPKI(pub)
		if err != nil {
			t.Fatal(err)
		}
		pemKey, err := MarshalPublicKeyPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		did, _ := DID(pub)
		forms := map[string]string{
			"did":        did,
			"pem":        string(pemKey),
			"pem spaced": "\n  " + string(pemKey) + "\n\n",
			"std":        base64.StdEncoding.EncodeToString(der),
			"raw std":    base64.RawStdEncoding.EncodeToString(der),
			"url":        base64.URLEncoding.EncodeToString(der),
			"raw url":    base64.RawURLEncoding.EncodeToString(der),
		}
		for name, s := range forms {
			got, err := ParsePublicKey(s)
			if err != nil {
				t.Errorf("%s %s: %v", alg, name, err)
				continue
			}
			if Fingerprint(got) != Fingerprint(pub) {
				t.Errorf("%s %s: different key back", alg, name)
			}
		}
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	p256 := mustGenerate(t, P256)
	p256DER, _ := SPKI(p256.Public())
	privPEM, _ := MarshalPrivateKeyPEM(p256)
	bad := []struct {
		name, in string
		err      error
	}{
		{"empty", "  ", ErrInvalidKey},
		{"rsa", base64.StdEncoding.EncodeToString(rsaDER), ErrUnsupportedKey},
		{"rsa pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})), ErrUnsupportedKey},
		{"private key pem", string(privPEM), ErrInvalidKey},
		{"two pem blocks", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p256DER})) + string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p256DER})), ErrInvalidKey},
		{"truncated der", base64.StdEncoding.EncodeToString(p256DER[:len(p256DER)-1]), ErrInvalidKey},
		{"garbage", "not a key!", ErrInvalidKey},
		{"bad did", "did:key:zzz", ErrInvalidDID},
		{"huge", strings.Repeat("A", 17<<10), ErrInvalidKey},
	}
	for _, tt := range bad {
		if _, err := ParsePublicKey(tt.in); !errors.Is(err, tt.err) {
			t.Errorf("%s: ParsePublicKey = %v, want %v", tt.name, err, tt.err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	k := mustGenerate(t, P256)
	der, _ := SPKI(k.Public())
	sum := sha256.Sum256(der)
	if got, want := Fingerprint(k.Public()), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	if got := Fingerprint(rsaKey.Public()); got != "" {
		t.Errorf("Fingerprint(rsa) = %q, want empty", got)
	}
}

func TestPrivateKeyPEM(t *testing.T) {
	for _, alg := range []Alg{P256, Ed25519} {
		k := mustGenerate(t, alg)
		b, err := MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----")) {
			t.Errorf("%s: not a PKCS#8 PEM block: %s", alg, b)
		}
		got, err := ParsePrivateKeyPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		if Fingerprint(got.Public()) != Fingerprint(k.Public()) {
			t.Errorf("%s: private key round trip changed the key", alg)
		}
	}
	// *ed25519.PrivateKey is a crypto.Signer too and must not trip x509.
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := MarshalPrivateKeyPEM(&edPriv); err != nil {
		t.Errorf("MarshalPrivateKeyPEM(*ed25519.PrivateKey): %v", err)
	}

	ec := mustGenerate(t, P256).(*ecdsa.PrivateKey)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	if _, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err != nil {
		t.Errorf("SEC 1 key: %v", err)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := MarshalPrivateKeyPEM(rsaKey); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("MarshalPrivateKeyPEM(rsa) = %v", err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	bad := map[string][]byte{
		"rsa":       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}),
		"empty":     nil,
		"wrong":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"garbage":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}),
		"encrypted": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: sec1}),
	}
	for name, b := range bad {
		if _, err := ParsePrivateKeyPEM(b); err == nil {
			t.Errorf("%s: ParsePrivateKeyPEM accepted", name)
		}
	}
}

func TestParseCSR(t *testing.T) {
	for _, alg := range []Alg{P256, Ed25519} {
		k := mustGenerate(t, alg)
		der := makeCSR(t, k)
		forms := map[string][]byte{
			"der":     der,
			"pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			"new pem": pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der}),
			"base64":  []byte(base64.StdEncoding.EncodeToString(der) + "\n"),
			"url64":   []byte(base64.RawURLEncoding.EncodeToString(der)),
		}
		for name, b := range forms {
			csr, err := ParseCSR(b)
			if err != nil {
				t.Errorf("%s %s: %v", alg, name, err)
				continue
			}
			if csr.Subject.CommonName != "acme:pump-1" || Fingerprint(csr.PublicKey) != Fingerprint(k.Public()) {
				t.Errorf("%s %s: wrong CSR content", alg, name)
			}
		}
	}

	k := mustGenerate(t, P256)
	der := makeCSR(t, k)
	tampered := bytes.Clone(der)
	// The subject CN sits well inside the signed part; flipping a letter of
	// it keeps the DER valid but breaks the signature.
	i := bytes.Index(tampered, []byte("pump-1"))
	tampered[i] = 'P'
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsaCSR := makeCSR(t, rsaKey)
	bad := map[string][]byte{
		"empty":     nil,
		"tampered":  tampered,
		"rsa":       rsaCSR,
		"too large": bytes.Repeat([]byte("A"), MaxCSRSize+1),
		"cert pem":  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"garbage":   []byte("hello"),
		"trailing":  append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), "junk"...),
		"truncated": der[:len(der)-3],
	}
	for name, b := range bad {
		_, err := ParseCSR(b)
		if !errors.Is(err, ErrInvalidCSR) {
			t.Errorf("%s: ParseCSR = %v, want ErrInvalidCSR", name, err)
		}
	}
	if _, err := ParseCSR(rsaCSR); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("rsa CSR error %v should also wrap ErrUnsupportedKey", err)
	}
}

func TestLoadOrCreateEd25519(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hub.key")
	k1, created, err := LoadOrCreateEd25519(path)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateEd25519(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second call: created=%v err=%v same=%v", created, err, k1.Equal(k2))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// A P-256 key at the path is an error, never silently replaced.
	p := filepath.Join(dir, "p256.key")
	b, _ := MarshalPrivateKeyPEM(mustGenerate(t, P256))
	os.WriteFile(p, b, 0o600)
	if _, _, err := LoadOrCreateEd25519(p); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-256 file: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("nope"), 0o600)
	if _, _, err := LoadOrCreateEd25519(garbage); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("garbage file: %v", err)
	}
	if _, _, err := LoadOrCreateEd25519(filepath.Join(dir, "missing", "x.key")); err == nil {
		t.Error("missing directory: no error")
	}
}

func TestLoadOrCreateEd25519Race(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.key")
	const n = 8
	var wg sync.WaitGroup
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { keys[i], _, errs[i] = LoadOrCreateEd25519(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatalf("goroutine %d got a different key", i)
		}
	}
}

func TestWriteNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := WriteNewFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteNewFile(path, []byte("two"), 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want fs.ErrExist", err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "one" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("content %q mode %v", b, fi.Mode().Perm())
	}
}

func mustGenerate(t testing.TB, alg Alg) crypto.Signer {
	t.Helper()
	k, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func makeCSR(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "acme:pump-1"},
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func bigPlusOne(x *big.Int) *big.Int { return new(big.Int).Add(x, big.NewInt(1)) }
