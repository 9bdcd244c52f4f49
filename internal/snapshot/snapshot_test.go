package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// hubKey is the fixed key the fuzz corpus in testdata/fuzz was signed with.
var hubKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func hubPub() ed25519.PublicKey { return hubKey.Public().(ed25519.PublicKey) }

const edge = "acme:edge-1"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a consistent snapshot: the edge, a gateway behind it with a
// device behind the gateway, a revoked device behind the edge, and one
// certificate replaced while its key stayed. Its keys and certificates are
// real, issued by a CA made for the test.
func fixture(tb testing.TB) *Snapshot {
	tb.Helper()
	c, _, err := ca.LoadOrCreate(tb.TempDir(), "test")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	key := func(codeStr, status string) Key {
		tb.Helper()
		k, err := keys.Generate(keys.P256)
		if err != nil {
			tb.Fatal(err)
		}
		did, _ := keys.DID(k.Public())
		n++
		cert, err := c.Issue(ca.IssueRequest{
			Code: codeStr, DID: did, PublicKey: k.Public(), Validity: 24 * time.Hour,
			Number: netip.MustParseAddr("fd00::1").Next(),
		})
		if err != nil {
			tb.Fatal(err)
		}
		out := Key{
			DID: did, Alg: string(keys.P256), Fingerprint: keys.Fingerprint(k.Public()), Status: status,
			CreatedAt: t0, CertSerial: hex.EncodeToString(cert.SerialNumber.Bytes()),
			CertPEM: string(ca.EncodeCertPEM(cert)), CertNotAfter: cert.NotAfter.UTC(), Credential: "cred." + codeStr,
		}
		if status == "revoked" {
			at := t0.Add(time.Hour)
			out.RevokedAt = &at
		}
		return out
	}
	obj := func(codeStr, kind, status, behind, number string, ks ...Key) Object {
		return Object{
			Code: codeStr, Tenant: "acme", Kind: kind, Status: status, Edge: behind,
			Number: number, SubnetKey: "edge:" + edge, CreatedAt: t0, UpdatedAt: t0, Keys: ks,
		}
	}
	dev1 := obj("acme:dev-1", "device", "active", "acme:gw-1", "fd00:1:2:3::11", key("acme:dev-1", "active"))
	dev1.Path, dev1.Tags = []string{"plant-1", "line-2"}, map[string]string{"class": "pump"}
	dev1.Model, dev1.Network = &ModelRef{"acme:pump", "1.0.0"}, "wlan"
	revoked := obj("acme:dev-2", "device", "revoked", edge, "fd00:1:2:3::12", key("acme:dev-2", "revoked"))
	revoked.StatusReason = "stolen"
	edgeObj := obj(edge, "edge", "active", "", "fd00:1:2:4::1", key(edge, "active"))
	edgeObj.SubnetKey = "site:plant-1"
	deprecated := t0.Add(time.Minute)
	return &Snapshot{
		Format: FormatVersion, Deployment: "dep-1", Edge: edge, Version: 42, IssuedAt: t0,
		CACertificate: string(c.CertPEM()),
		Revoked: []Revoked{
			{Serial: revoked.Keys[0].CertSerial, Code: revoked.Code, RevokedAt: t0.Add(time.Hour)},
			{Serial: "0badc0de", Code: dev1.Code, RevokedAt: t0.Add(2 * time.Hour)},
		},
		Tenants: []Tenant{{Name: "acme", Title: "Acme", Prefix: "fd00:1:2::/48", CreatedAt: t0}},
		Models: []Model{
			{ID: "acme:pump", Version: "1.0.0", Tenant: "acme", Doc: []byte(`{"id":"acme:pump","version":"1.0.0"}`), CreatedAt: t0,
				DeprecatedAt: &deprecated, DeprecatedReason: "use 2.0.0"},
		},
		Objects: []Object{
			edgeObj,
			obj("acme:gw-1", "gateway", "active", edge, "fd00:1:2:3::10", key("acme:gw-1", "active")),
			dev1,
			revoked,
		},
	}
}

func mustSign(tb testing.TB, s *Snapshot, key ed25519.PrivateKey) []byte {
	tb.Helper()
	b, err := Sign(s, key)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signRaw signs any payload bytes, as a hub with a bug (or another
// version) would, bypassing Sign's validation.
func signRaw(payload []byte) []byte {
	b, _ := json.Marshal(envelope{Payload: payload, Signature: ed25519.Sign(hubKey, signed(payload))})
	return b
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s := fixture(t)
	data := mustSign(t, s, hubKey)
	got, err := Verify(data, hubPub(), edge, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip changed the snapshot:\n got %+v\nwant %+v", got, s)
	}
	// The same version as the one applied is accepted (applying it again is
	// the registry's no-op), a newer one of course.
	for _, nb := range []uint64{s.Version, s.Version - 1} {
		if _, err := Verify(data, hubPub(), edge, nb); err != nil {
			t.Errorf("notBefore %d: %v", nb, err)
		}
	}
	// The model document travels byte for byte.
	if !bytes.Equal(got.Models[0].Doc, s.Models[0].Doc) {
		t.Error("model document changed")
	}
}

func TestVerifyRefuses(t *testing.T) {
	s := fixture(t)
	data := mustSign(t, s, hubKey)
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	reenvelope := func(payload, sig []byte) []byte {
		b, _ := json.Marshal(envelope{Payload: payload, Signature: sig})
		return b
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	payloadWith := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(env.Payload, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	invalid := fixture(t)
	invalid.Objects[2].Edge = "acme:elsewhere"
	invalidPayload, _ := json.Marshal(invalid)

	cases := []struct {
		name      string
		data      []byte
		edge      string
		notBefore uint64
		want      error
	}{
		{"flipped payload byte", reenvelope(flip(env.Payload, len(env.Payload)/2), env.Signature), edge, 0, ErrForged},
		{"flipped signature byte", reenvelope(env.Payload, flip(env.Signature, 10)), edge, 0, ErrForged},
		{"signed by another key", mustSign(t, s, otherKey), edge, 0, ErrForged},
		{"signed without the context", reenvelope(env.Payload, ed25519.Sign(hubKey, env.Payload)), edge, 0, ErrForged},
		{"for another edge", data, "acme:edge-2", 0, ErrWrongEdge},
		{"older than applied", data, edge, s.Version + 1, ErrStale},
		{"unknown format", signRaw(payloadWith(func(m map[string]any) { m["format"] = 2 })), edge, 0, ErrFormat},
		{"unknown member", signRaw(payloadWith(func(m map[string]any) { m["extra"] = true })), edge, 0, ErrMalformed},
		{"trailing data in the payload", signRaw(append(bytes.Clone(env.Payload), " {}"...)), edge, 0, ErrMalformed},
		{"signed but inconsistent", signRaw(invalidPayload), edge, 0, ErrInvalid},
		{"trailing data after the envelope", append(bytes.Clone(data), "{}"...), edge, 0, ErrMalformed},
		{"unknown envelope member", []byte(`{"payload":"e30=","signature":"","alg":"none"}`), edge, 0, ErrMalformed},
		{"no signature", reenvelope(env.Payload, nil), edge, 0, ErrMalformed},
		{"short signature", reenvelope(env.Payload, env.Signature[:63]), edge, 0, ErrMalformed},
		{"not JSON", []byte("garbage"), edge, 0, ErrMalformed},
		{"empty", nil, edge, 0, ErrMalformed},
		{"oversized", make([]byte, MaxSize+1), edge, 0, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.data, hubPub(), tc.edge, tc.notBefore)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, %v; want %v", got, err, tc.want)
			}
			if got != nil {
				t.Fatal("a refused snapshot was returned")
			}
		})
	}
	if _, err := Verify(data, hubPub()[:31], edge, 0); err == nil {
		t.Error("a short hub key was accepted")
	}
	if _, err := Sign(s, hubKey[:10]); err == nil {
		t.Error("Sign with a short key succeeded")
	}
}

// TestValidate: every inconsistency a signed snapshot could carry is named.
func TestValidate(t *testing.T) {
	other := fixture(t) // keys and certificates of another CA, for swaps
	cases := []struct {
		name  string
		edit  func(s *Snapshot)
		field string // in the error
		want  error
	}{
		{"format", func(s *Snapshot) { s.Format = 0 }, "format", ErrFormat},
		{"no deployment", func(s *Snapshot) { s.Deployment = "" }, "deployment", ErrInvalid},
		{"edge code", func(s *Snapshot) { s.Edge = "no code" }, "edge", ErrInvalid},
		{"version 0", func(s *Snapshot) { s.Version = 0 }, "version", ErrInvalid},
		{"no time", func(s *Snapshot) { s.IssuedAt = time.Time{} }, "issued_at", ErrInvalid},
		{"CA certificate", func(s *Snapshot) { s.CACertificate = s.Objects[0].Keys[0].CertPEM }, "ca_certificate", ErrInvalid},
		{"tenant twice", func(s *Snapshot) { s.Tenants = append(s.Tenants, s.Tenants[0]) }, "tenants[1].name", ErrInvalid},
		{"tenant prefix", func(s *Snapshot) { s.Tenants[0].Prefix = "10.0.0.0/8" }, "tenants[0].prefix", ErrInvalid},
		{"model tenant", func(s *Snapshot) { s.Models[0].Tenant = "other" }, "models[0].tenant", ErrInvalid},
		{"model without doc", func(s *Snapshot) { s.Models[0].Doc = nil }, "models[0].doc", ErrInvalid},
		{"model twice", func(s *Snapshot) { s.Models = append(s.Models, s.Models[0]) }, "models[1]", ErrInvalid},
		{"no edge object", func(s *Snapshot) { s.Objects = s.Objects[1:] }, "the edge acme:edge-1 itself", ErrInvalid},
		{"object twice", func(s *Snapshot) { s.Objects = append(s.Objects, s.Objects[2]) }, "objects[4].code", ErrInvalid},
		{"object tenant", func(s *Snapshot) { s.Objects[2].Tenant = "other" }, "objects[2].tenant", ErrInvalid},
		{"object behind another edge", func(s *Snapshot) { s.Objects[3].Edge = "acme:edge-2" }, "objects[3].edge", ErrInvalid},
		{"object behind no edge", func(s *Snapshot) { s.Objects[3].Edge = "" }, "objects[3].edge", ErrInvalid},
		{"object behind itself", func(s *Snapshot) { s.Objects[3].Edge = s.Objects[3].Code }, "objects[3].edge", ErrInvalid},
		{"unknown model", func(s *Snapshot) { s.Objects[2].Model.Version = "9.9.9" }, "objects[2].model", ErrInvalid},
		{"path", func(s *Snapshot) { s.Objects[2].Path = []string{"a b"} }, "objects[2].path", ErrInvalid},
		{"tag", func(s *Snapshot) { s.Objects[2].Tags = map[string]string{"bad key!": "x"} }, "objects[2].tags", ErrInvalid},
		{"number", func(s *Snapshot) { s.Objects[2].Number = "10.0.0.1" }, "objects[2].number", ErrInvalid},
		{"number not canonical", func(s *Snapshot) { s.Objects[2].Number = "FD00:1:2:3::11" }, "objects[2].number", ErrInvalid},
		{"number twice", func(s *Snapshot) { s.Objects[2].Number = s.Objects[1].Number }, "objects[2].number", ErrInvalid},
		{"no kind", func(s *Snapshot) { s.Objects[2].Kind = "" }, "objects[2].kind", ErrInvalid},
		{"DID", func(s *Snapshot) { s.Objects[2].Keys[0].DID = "did:web:x" }, "objects[2].keys[0].did", ErrInvalid},
		{"DID twice", func(s *Snapshot) { s.Objects[2].Keys[0].DID = s.Objects[1].Keys[0].DID }, "objects[2].keys[0].did", ErrInvalid},
		{"alg", func(s *Snapshot) { s.Objects[2].Keys[0].Alg = "ed25519" }, "objects[2].keys[0].alg", ErrInvalid},
		{"fingerprint", func(s *Snapshot) { s.Objects[2].Keys[0].Fingerprint = s.Objects[1].Keys[0].Fingerprint }, "objects[2].keys[0].fingerprint", ErrInvalid},
		{"serial form", func(s *Snapshot) { s.Objects[2].Keys[0].CertSerial = strings.ToUpper(s.Objects[2].Keys[0].CertSerial) }, "objects[2].keys[0].cert_serial", ErrInvalid},
		{"serial twice", func(s *Snapshot) { s.Objects[2].Keys[0].CertSerial = s.Objects[1].Keys[0].CertSerial }, "objects[2].keys[0].cert_serial", ErrInvalid},
		{"certificate of another object", func(s *Snapshot) {
			k := &s.Objects[2].Keys[0]
			k.CertPEM, k.CertSerial = s.Objects[1].Keys[0].CertPEM, s.Objects[1].Keys[0].CertSerial
			s.Objects[1].Keys = nil
		}, "objects[2].keys[0].cert_pem", ErrInvalid},
		{"certificate's serial", func(s *Snapshot) { s.Objects[2].Keys[0].CertSerial = "01" }, "objects[2].keys[0].cert_pem", ErrInvalid},
		{"certificate for another key", func(s *Snapshot) {
			// Same code, same serial, another key: a certificate of the
			// other fixture's dev-1.
			k := &s.Objects[2].Keys[0]
			k.CertPEM, k.CertSerial = other.Objects[2].Keys[0].CertPEM, other.Objects[2].Keys[0].CertSerial
		}, "objects[2].keys[0].cert_pem", ErrInvalid},
		{"revoked serial", func(s *Snapshot) { s.Revoked[1].Serial = "00ff" }, "revoked[1].serial", ErrInvalid},
		{"revoked twice", func(s *Snapshot) { s.Revoked = append(s.Revoked, s.Revoked[0]) }, "revoked[2].serial", ErrInvalid},
		{"revoked of no object", func(s *Snapshot) { s.Revoked[1].Code = "acme:nobody" }, "revoked[1].code", ErrInvalid},
		{"revoked of another object", func(s *Snapshot) { s.Revoked[0].Code = "acme:dev-1" }, "revoked[0].code", ErrInvalid},
		{"revoked but the key is active", func(s *Snapshot) { s.Revoked[1].Serial = s.Objects[2].Keys[0].CertSerial }, "revoked[1]", ErrInvalid},
		{"long reason", func(s *Snapshot) { s.Objects[3].StatusReason = strings.Repeat("x", 2000) }, "objects[3].status_reason", ErrInvalid},
	}
	if err := Validate(fixture(t)); err != nil {
		t.Fatalf("the fixture: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t)
			tc.edit(s)
			err := Validate(s)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v; want %v naming %q", err, tc.want, tc.field)
			}
			if _, err := Sign(s, hubKey); !errors.Is(err, tc.want) {
				t.Fatalf("Sign = %v; want %v", err, tc.want)
			}
		})
	}
	if err := Validate(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil: %v", err)
	}
}

// TestEnvelopeForm pins what travels: a JSON object with the payload and
// the signature in standard base64, the signature over the context and the
// payload, so that other implementations can check it (docs/PROTOCOL.md).
func TestEnvelopeForm(t *testing.T) {
	data := mustSign(t, fixture(t), hubKey)
	var raw map[string]string
	if err := json.Unmarshal(data, &raw); err != nil || len(raw) != 2 {
		t.Fatalf("envelope %s: %v", data[:min(len(data), 80)], err)
	}
	payload, err := base64.StdEncoding.DecodeString(raw["payload"])
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(raw["signature"])
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(hubPub(), append([]byte("wanwu edge identity snapshot v1\n"), payload...), sig) {
		t.Fatal("the signature is not over the context and the payload")
	}
	var head struct {
		Format  int    `json:"format"`
		Edge    string `json:"edge"`
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(payload, &head); err != nil || head != (struct {
		Format  int    `json:"format"`
		Edge    string `json:"edge"`
		Version uint64 `json:"version"`
	}{1, edge, 42}) {
		t.Fatalf("payload head %+v, %v", head, err)
	}
}

// FuzzVerify: whatever the bytes, Verify returns a snapshot only when the
// hub key signed exactly its payload and it is consistent, and otherwise
// an error that wraps one of the package's sentinels. An accepted snapshot
// signs and verifies again to the same value.
func FuzzVerify(f *testing.F) {
	s := fixture(f)
	data := mustSign(f, s, hubKey)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte(`{"payload":"e30=","signature":"` + strings.Repeat("A", 86) + `=="}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add(signRaw([]byte(`{"format":1}`)))
	f.Add(signRaw([]byte(`{"format":2}`)))
	sentinels := []error{ErrTooLarge, ErrMalformed, ErrForged, ErrFormat, ErrInvalid, ErrWrongEdge, ErrStale}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Verify(b, hubPub(), edge, 1)
		if err != nil {
			if got != nil {
				t.Fatal("a snapshot returned with an error")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		var env envelope
		if json.Unmarshal(b, &env) != nil || !ed25519.Verify(hubPub(), signed(env.Payload), env.Signature) {
			t.Fatal("Verify accepted bytes the hub key did not sign")
		}
		if err := Validate(got); err != nil || got.Edge != edge || got.Version < 1 {
			t.Fatalf("accepted an invalid snapshot: %v", err)
		}
		again, err := Verify(mustSign(t, got, hubKey), hubPub(), edge, 1)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("an accepted snapshot does not round-trip: %v", err)
		}
	})
}

// FuzzSignedPayload fuzzes what FuzzVerify's mutations rarely reach, the
// payload behind a good signature: whatever the hub (a buggy or newer one)
// signed, Verify accepts only a consistent snapshot and otherwise names a
// sentinel, and never panics.
func FuzzSignedPayload(f *testing.F) {
	s := fixture(f)
	payload, err := json.Marshal(s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(payload)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"edge":"acme:edge-1","version":1,"objects":[{"code":"acme:edge-1","keys":[{"did":"did:key:z"}]}]}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`[]`))
	sentinels := []error{ErrMalformed, ErrFormat, ErrInvalid, ErrWrongEdge, ErrStale}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := Verify(signRaw(payload), hubPub(), edge, 1)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if err := Validate(got); err != nil || got.Edge != edge || got.Object(edge) == nil {
			t.Fatalf("accepted an invalid snapshot: %v", err)
		}
		again, err := Verify(mustSign(t, got, hubKey), hubPub(), edge, 1)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("an accepted snapshot does not round-trip: %v", err)
		}
	})
}
