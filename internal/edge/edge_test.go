package edge

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/api"
)

// TestVerifyDownlink: the edge acts only on a downlink its hub signed over
// these exact bytes.
func TestVerifyDownlink(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	e := &Edge{}
	body := []byte(`{"commands":[],"twins":[]}`)
	sign := func(k ed25519.PrivateKey, b []byte) string {
		return base64.StdEncoding.EncodeToString(ed25519.Sign(k, append([]byte(api.DownlinkSigningContext), b...)))
	}
	if err := e.verifyDownlink(sign(priv, body), body); err == nil {
		t.Fatal("verified before the hub's key is known")
	}
	e.hubKey.Store(&pub)
	for _, tc := range []struct {
		name string
		sig  string
		body []byte
		ok   bool
	}{
		{"the hub's", sign(priv, body), body, true},
		{"another key's", sign(other, body), body, false},
		{"a changed body", sign(priv, body), []byte(`{"commands":[{}],"twins":[]}`), false},
		{"no signature", "", body, false},
		{"without the context", base64.StdEncoding.EncodeToString(ed25519.Sign(priv, body)), body, false},
	} {
		err := e.verifyDownlink(tc.sig, tc.body)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
