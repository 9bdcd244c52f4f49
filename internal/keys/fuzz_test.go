package keys

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// FuzzParseDID checks that ParseDID never panics and that every accepted
// DID names a supported key whose DID is the input (less any fragment), so
// one key cannot hide behind several spellings.
func FuzzParseDID(f *testing.F) {
	for _, s := range []string{
		specEd25519DID, specP256DID, specP256DID + "#frag", "did:key:", "did:key:z",
		"did:key:z1111", "did:web:x", "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2160",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParseDID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDID) {
				t.Fatalf("ParseDID(%q) error %v does not wrap ErrInvalidDID", s, err)
			}
			return
		}
		if _, err := AlgOf(pub); err != nil {
			t.Fatalf("ParseDID(%q) returned an unusable key: %v", s, err)
		}
		did, err := DID(pub)
		if err != nil {
			t.Fatalf("DID of parsed %q: %v", s, err)
		}
		base, _, _ := strings.Cut(s, "#")
		if did != base {
			t.Fatalf("ParseDID(%q) round-trips to %q", s, did)
		}
	})
}

// FuzzParsePublicKey checks that ParsePublicKey never panics and that an
// accepted key survives SPKI, PEM and did:key encodings unchanged.
func FuzzParsePublicKey(f *testing.F) {
	for _, alg := range []Alg{P256, Ed25519} {
		k := mustGenerate(f, alg)
		der, _ := SPKI(k.Public())
		p, _ := MarshalPublicKeyPEM(k.Public())
		did, _ := DID(k.Public())
		f.Add(string(p))
		f.Add(base64.StdEncoding.EncodeToString(der))
		f.Add(base64.RawURLEncoding.EncodeToString(der))
		f.Add(did)
	}
	f.Add(specP256DID)
	f.Add("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n")
	f.Add("MCowBQYDK2VwAyEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		fp := Fingerprint(pub)
		if fp == "" {
			t.Fatalf("ParsePublicKey(%q) returned a key with no fingerprint", s)
		}
		der, err := SPKI(pub)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePublicKey(base64.StdEncoding.EncodeToString(der))
		if err != nil || Fingerprint(back) != fp {
			t.Fatalf("SPKI round trip of %q: %v", s, err)
		}
		p, err := MarshalPublicKeyPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParsePublicKey(string(p)); err != nil || Fingerprint(back) != fp {
			t.Fatalf("PEM round trip of %q: %v", s, err)
		}
		did, err := DID(pub)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParseDID(did); err != nil || Fingerprint(back) != fp {
			t.Fatalf("DID round trip of %q: %v", s, err)
		}
	})
}

// FuzzParseCSR checks that ParseCSR never panics, that whatever it accepts
// carries a supported key and a valid self-signature, and that the accepted
// request re-parses from its own DER.
func FuzzParseCSR(f *testing.F) {
	for _, alg := range []Alg{P256, Ed25519} {
		der := makeCSR(f, mustGenerate(f, alg))
		f.Add(der)
		f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		f.Add([]byte(base64.StdEncoding.EncodeToString(der)))
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCSR) {
				t.Fatalf("error %v does not wrap ErrInvalidCSR", err)
			}
			return
		}
		if _, err := AlgOf(csr.PublicKey); err != nil {
			t.Fatalf("accepted CSR with key %T: %v", csr.PublicKey, err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR with a bad signature: %v", err)
		}
		again, err := ParseCSR(csr.Raw)
		if err != nil {
			t.Fatalf("accepted CSR does not re-parse from its DER: %v", err)
		}
		if !bytes.Equal(again.Raw, csr.Raw) || Fingerprint(again.PublicKey) != Fingerprint(csr.PublicKey) {
			t.Fatal("CSR changed on re-parse")
		}
		if _, err := x509.ParseCertificateRequest(csr.Raw); err != nil {
			t.Fatal(err)
		}
	})
}
