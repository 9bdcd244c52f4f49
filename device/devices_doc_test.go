package device_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/wanwu-iot/wanwu/device"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/senml"
)

// The worked example of docs/DEVICES.md: the RFC 8032 test key (§7.1,
// test 1), device acme:pump-0001, a token made at 1700000000 for one hour.
const (
	docSeed   = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	docPublic = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	docCode   = "acme:pump-0001"
	docIat    = 1700000000
)

// TestDevicesDoc keeps docs/DEVICES.md true: every byte string its worked
// examples state is computed here and must appear in the document, and
// each is checked against the hub's own code (the token verifies, the
// SenML and CBOR decode to the record, the SPKI parses to the key).
func TestDevicesDoc(t *testing.T) {
	docBytes, err := os.ReadFile("../docs/DEVICES.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(docBytes)
	b64 := base64.RawURLEncoding
	seed, _ := hex.DecodeString(docSeed)
	key := ed25519.NewKeyFromSeed(seed)
	if hex.EncodeToString(key.Public().(ed25519.PublicKey)) != docPublic {
		t.Fatal("the seed does not give the RFC 8032 public key")
	}
	id := &device.Identity{Code: docCode, Key: key}
	tok, err := id.Token(time.Unix(docIat, 0), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	header := `{"alg":"EdDSA","typ":"JWT"}`
	claims := `{"sub":"acme:pump-0001","aud":"wanwu","iat":1700000000,"exp":1700003600}`
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	sig := ed25519.Sign(key, []byte(input))
	if tok != input+"."+b64.EncodeToString(sig) {
		t.Fatalf("the token is not header.claims.signature as the document builds it:\n%s", tok)
	}
	sub, err := devtoken.Verify(tok, func(string) ([]crypto.PublicKey, error) { return []crypto.PublicKey{key.Public()}, nil }, time.Unix(docIat+10, 0))
	if err != nil || sub != docCode {
		t.Errorf("the hub's check of the token: %q, %v", sub, err)
	}
	// ES256 signs SHA-256 of its own signing input (its header differs).
	es256 := `{"alg":"ES256","typ":"JWT"}`
	es256Input := b64.EncodeToString([]byte(es256)) + "." + b64.EncodeToString([]byte(claims))
	digest := sha256.Sum256([]byte(es256Input))

	// SPKI: a fixed DER prefix before the raw public key.
	spkiEd := "302a300506032b6570032100" + docPublic
	der, _ := hex.DecodeString(spkiEd)
	if k, err := keys.ParsePublicKey(base64.StdEncoding.EncodeToString(der)); err != nil || !k.(ed25519.PublicKey).Equal(key.Public()) {
		t.Errorf("the Ed25519 SPKI of the document: %v", err)
	}
	did, _ := keys.DID(key.Public())
	// P-256: the same with its own prefix before 04 || X || Y.
	const p256Prefix = "3059301306072a8648ce3d020106082a8648ce3d030107034200"
	pk, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	point, _ := pk.Public().(*ecdsa.PublicKey).Bytes()
	der, _ = hex.DecodeString(p256Prefix + hex.EncodeToString(point))
	if k, err := keys.ParsePublicKey(base64.StdEncoding.EncodeToString(der)); err != nil || !k.(*ecdsa.PublicKey).Equal(pk.Public()) {
		t.Errorf("the P-256 SPKI of the document: %v", err)
	}

	senmlJSON, _ := device.EncodeSenML(docCode, time.Unix(docIat, 0), device.Record{Name: "temperature", Unit: "Cel", Value: 21.5})
	minimal := `[{"n":"temperature","v":21.5}]`
	cborHex := "81a2006b74656d70657261747572650" + "2f94d60"
	cbor, _ := hex.DecodeString(cborHex)
	for name, got := range map[string]func() (senml.Pack, error){
		"SDK JSON": func() (senml.Pack, error) { return senml.DecodeJSON(senmlJSON, senml.Limits{}) },
		"minimal":  func() (senml.Pack, error) { return senml.DecodeJSON([]byte(minimal), senml.Limits{}) },
		"CBOR":     func() (senml.Pack, error) { return senml.DecodeCBOR(cbor, senml.Limits{}) },
	} {
		p, err := got()
		if err != nil || len(p) != 1 || p[0].Name != "temperature" || p[0].Value == nil || *p[0].Value != 21.5 {
			t.Errorf("%s: %+v, %v", name, p, err)
		}
	}

	// The CoAP datagram of a confirmable POST /t of the minimal SenML with
	// Content-Format 110, message id 0x1234, no token (RFC 7252 §3).
	msg := message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 0x1234, Payload: []byte(minimal),
		Options: message.Options{{ID: message.URIPath, Value: []byte("t")}, {ID: message.ContentFormat, Value: []byte{110}}}}
	buf := make([]byte, 256)
	n, err := coder.DefaultCoder.Encode(msg, buf)
	if err != nil {
		t.Fatal(err)
	}
	coapHex := hex.EncodeToString(buf[:n-len(minimal)])

	for what, want := range map[string]string{
		"CoAP datagram head":     spaced(coapHex),
		"ES256 signing input":    es256Input,
		"header":                 header,
		"header, base64url":      b64.EncodeToString([]byte(header)),
		"claims":                 claims,
		"claims, base64url":      b64.EncodeToString([]byte(claims)),
		"signing input":          input,
		"signature, hex":         hex.EncodeToString(sig),
		"signature, base64url":   b64.EncodeToString(sig),
		"token":                  tok,
		"ES256 header":           es256,
		"ES256 header, b64":      b64.EncodeToString([]byte(es256)),
		"SHA-256 of the input":   hex.EncodeToString(digest[:]),
		"seed":                   docSeed,
		"public key":             docPublic,
		"Ed25519 SPKI":           spkiEd,
		"did:key":                did,
		"SenML as the SDK sends": string(senmlJSON),
		"minimal SenML":          minimal,
		"minimal SenML's size":   fmt.Sprintf("(%d bytes)", len(minimal)),
		"SenML CBOR's size":      fmt.Sprintf("%d bytes:", len(cbor)),
		"SenML CBOR":             spaced(cborHex),
		"P-256 SPKI prefix":      p256Prefix,
		"telemetry topic":        "wanwu/v1/acme/pump-0001/telemetry",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/DEVICES.md lacks the %s: %s", what, want)
		}
	}
}

// spaced writes hex digits in pairs: "40020a" → "40 02 0a".
func spaced(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}
