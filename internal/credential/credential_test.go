package credential

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixedKey makes tokens reproducible across runs, which the fuzz corpus
// files rely on.
func fixedKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte("wanwu credential test seed 32 b."))
}

func deviceDID(t testing.TB) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	did, err := keys.DID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return did
}

func baseClaims(sub string) Claims {
	return Claims{
		ID:           "cred-1",
		Subject:      sub,
		Code:         "acme:pump-1",
		Number:       "fd33:da2a:df1e:41a6:38e1:8884:397f:547c",
		Tenant:       "acme",
		Kind:         "device",
		ModelID:      "acme:pump",
		ModelVersion: "1.0.0",
		IssuedAt:     t0,
		NotBefore:    t0,
		ExpiresAt:    t0.Add(365 * 24 * time.Hour),
	}
}

func TestRoundTrip(t *testing.T) {
	key := fixedKey()
	hub := key.Public().(ed25519.PublicKey)
	sub := deviceDID(t)
	c := baseClaims(sub)
	tok, err := Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(tok, hub, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c.Issuer, _ = keys.DID(hub)
	if got != c {
		t.Fatalf("Verify = %+v\nwant     %+v", got, c)
	}
	dec, err := Decode(tok)
	if err != nil || dec != c {
		t.Fatalf("Decode = %+v, %v", dec, err)
	}

	// The wire format is the documented one.
	parts := strings.Split(tok, ".")
	var h map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	json.Unmarshal(hb, &h)
	if h["alg"] != "EdDSA" || h["typ"] != "vc+jwt" || h["kid"] != c.Issuer || len(h) != 3 {
		t.Errorf("header %s", hb)
	}
	pb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	for _, want := range []string{
		`"iss":"` + c.Issuer + `"`, `"sub":"` + sub + `"`, `"jti":"cred-1"`,
		`"@context":["https://www.w3.org/ns/credentials/v2"]`,
		`"type":["VerifiableCredential","WanwuDeviceCredential"]`,
		`"credentialSubject":{"id":"` + sub + `","code":"acme:pump-1","number":"fd33:da2a:df1e:41a6:38e1:8884:397f:547c","tenant":"acme","kind":"device","model":{"id":"acme:pump","version":"1.0.0"}}`,
	} {
		if !strings.Contains(string(pb), want) {
			t.Errorf("payload %s lacks %s", pb, want)
		}
	}
}

func TestIssueDefaults(t *testing.T) {
	key := fixedKey()
	c := Claims{Subject: deviceDID(t), Code: "acme:x", Tenant: "acme", ExpiresAt: time.Now().Add(time.Hour)}
	tok, err := Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(tok, key.Public().(ed25519.PublicKey), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "" || got.IssuedAt.IsZero() || !got.NotBefore.Equal(got.IssuedAt) || got.ModelID != "" || got.Number != "" {
		t.Errorf("defaults not applied: %+v", got)
	}
	tok2, _ := Issue(key, c)
	if got2, _ := Decode(tok2); got2.ID == got.ID {
		t.Error("two credentials got the same generated id")
	}
	if strings.Contains(tok, "model") || strings.Contains(tok, "number") {
		// Base64 would hide them; decode to be sure.
		pb, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if strings.Contains(string(pb), `"model"`) || strings.Contains(string(pb), `"number"`) {
			t.Errorf("empty optional fields serialized: %s", pb)
		}
	}
}

func TestIssueRejects(t *testing.T) {
	key := fixedKey()
	sub := deviceDID(t)
	otherIss := deviceDID(t)
	tests := []struct {
		name string
		mod  func(*Claims)
		err  error
	}{
		{"no code", func(c *Claims) { c.Code = "" }, ErrMalformed},
		{"bad code", func(c *Claims) { c.Code = "acme:a/b" }, ErrMalformed},
		{"no subject", func(c *Claims) { c.Subject = "" }, ErrMalformed},
		{"bad subject", func(c *Claims) { c.Subject = "did:web:x" }, ErrMalformed},
		{"no tenant", func(c *Claims) { c.Tenant = "" }, ErrMalformed},
		{"no exp", func(c *Claims) { c.ExpiresAt = time.Time{} }, ErrMalformed},
		{"exp before iat", func(c *Claims) { c.ExpiresAt = c.IssuedAt.Add(-time.Second) }, ErrMalformed},
		{"bad number", func(c *Claims) { c.Number = "10.0.0.1" }, ErrMalformed},
		{"bad model", func(c *Claims) { c.ModelID = "pump" }, ErrMalformed},
		{"model without version", func(c *Claims) { c.ModelVersion = "" }, ErrMalformed},
		{"foreign issuer", func(c *Claims) { c.Issuer = otherIss }, ErrIssuer},
	}
	for _, tt := range tests {
		c := baseClaims(sub)
		tt.mod(&c)
		if _, err := Issue(key, c); !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
	}
	if _, err := Issue(ed25519.PrivateKey{1, 2, 3}, baseClaims(sub)); err == nil {
		t.Error("short key accepted")
	}
}

// resign builds a token with arbitrary header and payload JSON, signed by
// key, to reach the checks after the signature.
func resign(key ed25519.PrivateKey, header, payload string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(in)))
}

func TestVerifyRejects(t *testing.T) {
	key := fixedKey()
	hub := key.Public().(ed25519.PublicKey)
	hubDID, _ := keys.DID(hub)
	sub := deviceDID(t)
	tok, err := Issue(key, baseClaims(sub))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	payloadJSON, _ := base64.RawURLEncoding.DecodeString(parts[1])
	now := t0.Add(time.Hour)

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherTok, _ := Issue(otherKey, baseClaims(sub))

	// Tampering with one payload byte (a digit of the code) keeps the
	// payload valid JSON but must break the signature.
	tampered := bytes.Clone(payloadJSON)
	i := strings.Index(string(tampered), "pump-1")
	tampered[i+5] = '2'
	tamperedTok := parts[0] + "." + base64.RawURLEncoding.EncodeToString(tampered) + "." + parts[2]

	hdr := func(alg string) string {
		return `{"alg":"` + alg + `","typ":"vc+jwt","kid":"` + hubDID + `"}`
	}
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(hdr("none"))) + "." + parts[1] + "."
	payloadWith := func(old, new string) string { return strings.Replace(string(payloadJSON), old, new, 1) }
	// A valid token whose encoding uses "-" or "_", so that its standard-
	// alphabet spelling differs: the keys are random, and about one token
	// in fifteen has neither. Spaces in the header vary the signature.
	urlTok := tok
	for pad := ""; !strings.ContainsAny(urlTok, "-_"); pad += " " {
		urlTok = resign(key, `{"alg":"EdDSA",`+pad+`"typ":"vc+jwt","kid":"`+hubDID+`"}`, string(payloadJSON))
	}
	if _, err := Verify(urlTok, hub, now); err != nil {
		t.Fatalf("the token for the alphabet check does not verify: %v", err)
	}

	tests := []struct {
		name string
		tok  string
		now  time.Time
		err  error
		msg  string
	}{
		{"tampered payload", tamperedTok, now, ErrSignature, ""},
		{"alg none", noneTok, now, ErrMalformed, "alg"},
		{"alg none with sig", base64.RawURLEncoding.EncodeToString([]byte(hdr("none"))) + "." + parts[1] + "." + parts[2], now, ErrMalformed, "alg"},
		{"alg HS256", resign(key, hdr("HS256"), string(payloadJSON)), now, ErrMalformed, "alg"},
		{"alg lowercase", resign(key, hdr("eddsa"), string(payloadJSON)), now, ErrMalformed, "alg"},
		{"signed by another key", otherTok, now, ErrIssuer, "kid"},
		{"kid of hub, signed by another", resign(otherKey, hdr("EdDSA"), string(payloadJSON)), now, ErrSignature, ""},
		{"expired", tok, t0.Add(366 * 24 * time.Hour), ErrExpired, "exp"},
		{"not yet valid", tok, t0.Add(-time.Hour), ErrNotYetValid, "nbf"},
		{"two parts", parts[0] + "." + parts[1], now, ErrMalformed, "parts"},
		{"four parts", tok + ".x", now, ErrMalformed, "parts"},
		{"padding", tok + "=", now, ErrMalformed, "signature"},
		{"std alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(urlTok), now, nil, ""},
		{"too large", tok + strings.Repeat("A", MaxSize), now, ErrMalformed, "bytes"},
		{"empty", "", now, ErrMalformed, "parts"},
		{"unknown header field", resign(key, `{"alg":"EdDSA","typ":"vc+jwt","kid":"`+hubDID+`","crit":["x"]}`, string(payloadJSON)), now, ErrMalformed, "header"},
		{"wrong typ", resign(key, `{"alg":"EdDSA","typ":"JWT","kid":"`+hubDID+`"}`, string(payloadJSON)), now, ErrMalformed, "typ"},
		{"iss differs from kid", resign(key, hdr("EdDSA"), payloadWith(`"iss":"`+hubDID, `"iss":"`+sub)), now, ErrIssuer, "iss"},
		{"missing code", resign(key, hdr("EdDSA"), payloadWith(`"code":"acme:pump-1"`, `"code":""`)), now, ErrMalformed, "code"},
		{"invalid code", resign(key, hdr("EdDSA"), payloadWith(`"code":"acme:pump-1"`, `"code":"acme:pump.1"`)), now, ErrMalformed, "code"},
		{"subject id mismatch", resign(key, hdr("EdDSA"), payloadWith(`"credentialSubject":{"id":"`+sub, `"credentialSubject":{"id":"did:key:zX`)), now, ErrMalformed, "credentialSubject.id"},
		{"bad sub did", resign(key, hdr("EdDSA"), strings.ReplaceAll(string(payloadJSON), sub, "did:key:zzz")), now, ErrMalformed, "sub"},
		{"wrong type", resign(key, hdr("EdDSA"), payloadWith(`"WanwuDeviceCredential"`, `"OtherCredential"`)), now, ErrMalformed, "vc.type"},
		{"no context", resign(key, hdr("EdDSA"), payloadWith(ContextV2, "https://example.com")), now, ErrMalformed, "@context"},
		{"exp as string", resign(key, hdr("EdDSA"), payloadWith(`"exp":`, `"exp":"1",x:`)), now, ErrMalformed, "payload"},
		{"trailing payload", resign(key, hdr("EdDSA"), string(payloadJSON)+"{}"), now, ErrMalformed, "payload"},
		{"not json", resign(key, hdr("EdDSA"), "hello"), now, ErrMalformed, "payload"},
	}
	for _, tt := range tests {
		_, err := Verify(tt.tok, hub, tt.now)
		if tt.err == nil {
			if err == nil {
				t.Errorf("%s: accepted", tt.name)
			}
			continue
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: error %q does not name %q", tt.name, err, tt.msg)
		}
	}
}

func TestVerifySkew(t *testing.T) {
	key := fixedKey()
	hub := key.Public().(ed25519.PublicKey)
	c := baseClaims(deviceDID(t))
	tok, _ := Issue(key, c)
	tests := []struct {
		now  time.Time
		want error
	}{
		{c.NotBefore.Add(-Skew), nil},
		{c.NotBefore.Add(-Skew - time.Second), ErrNotYetValid},
		{c.ExpiresAt.Add(Skew - time.Second), nil},
		{c.ExpiresAt.Add(Skew), ErrExpired},
	}
	for _, tt := range tests {
		_, err := Verify(tok, hub, tt.now)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("now %v: err = %v, want %v", tt.now, err, tt.want)
		}
	}
}

func TestDecodeDoesNotVerify(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	c := baseClaims(deviceDID(t))
	c.ExpiresAt = t0.Add(time.Minute)
	tok, err := Issue(other, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(tok)
	if err != nil || got.Code != "acme:pump-1" {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	if _, err := Decode("a.b"); !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode(a.b) = %v", err)
	}
}

// FuzzVerify checks that Verify never panics and that nothing verifies
// unless the fixed test key signed it; the fuzzer cannot forge Ed25519, so
// any success on mutated input would mean Verify accepted bytes the
// signature did not cover.
func FuzzVerify(f *testing.F) {
	key := fixedKey()
	hub := key.Public().(ed25519.PublicKey)
	sub, _ := keys.DID(ed25519.NewKeyFromSeed(make([]byte, 32)).Public())
	tok, err := Issue(key, baseClaims(sub))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(tok[:len(tok)-1])
	f.Add(strings.Replace(tok, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Verify(s, hub, t0.Add(time.Hour))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrIssuer) &&
				!errors.Is(err, ErrExpired) && !errors.Is(err, ErrNotYetValid) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			Decode(s)
			return
		}
		parts := strings.Split(s, ".")
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || !ed25519.Verify(hub, []byte(parts[0]+"."+parts[1]), sig) {
			t.Fatalf("Verify accepted %q, which the key did not sign", s)
		}
		if c.Code == "" || c.Subject == "" || c.Tenant == "" {
			t.Fatalf("accepted claims lack required fields: %+v", c)
		}
		if d, err := Decode(s); err != nil || d != c {
			t.Fatalf("Decode disagrees with Verify: %+v, %v", d, err)
		}
	})
}
