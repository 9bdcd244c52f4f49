package registry

import (
	"crypto"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// TestFailedDeviceAuthDoesTheSameWork: a forged token for an unknown code
// or a revoked device costs what one for a known device with a wrong key
// costs, one signature check each, so response time does not tell an
// unauthenticated caller which codes exist. Without the decoy check an
// unknown code skipped the signature check. The test counts the checks
// rather than timing them: a clock on a shared machine is noise.
func TestFailedDeviceAuthDoesTheSameWork(t *testing.T) {
	// Every case verifies one signature, whatever it ends as: that, not a
	// clock on a shared machine, is what the test holds. The medians are
	// logged for whoever looks.
	verified := 0
	inner := verifyToken
	defer func() { verifyToken = inner }()
	verifyToken = func(tok string, lookup func(string) ([]crypto.PublicKey, error), now time.Time, skew time.Duration) (string, error) {
		verified++
		return inner(tok, lookup, now, skew)
	}
	e := newTestEnv(t, t.TempDir(), nil)
	e.mustTenant("acme", "")
	e.mustRegister(RegisterRequest{Code: "acme:known"})
	e.mustRegister(RegisterRequest{Code: "acme:gone"})
	if _, err := e.reg.Revoke(e.ctx, "admin", "acme:gone", "test"); err != nil {
		t.Fatal(err)
	}
	forger, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, code string
		status     string // admission status, "" for ErrDeviceAuth
	}{
		{"known device, wrong key", "acme:known", ""},
		{"unknown code", "acme:nobody", StatusUnknown},
		{"revoked device", "acme:gone", StatusRevoked},
	}
	const rounds = 50
	took := make([][]time.Duration, len(cases))
	for i := range rounds {
		for j, tc := range cases {
			tok, err := devtoken.Sign(forger, tc.code, e.clock.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			verified = 0
			start := time.Now()
			adm, err := e.reg.AuthenticateDevice(e.ctx, nil, "", tok)
			took[j] = append(took[j], time.Since(start))
			if verified != 1 {
				t.Fatalf("%s: %d signature checks, want 1 as for every failed authentication", tc.name, verified)
			}
			if i == 0 {
				if tc.status == "" && !errors.Is(err, ErrDeviceAuth) || tc.status != "" && (err != nil || adm.Status != tc.status) {
					t.Fatalf("%s: %+v, %v; want status %q", tc.name, adm, err, tc.status)
				}
			}
		}
	}
	median := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	ref := median(took[0])
	for j, tc := range cases {
		m := median(took[j])
		t.Logf("%s: median %v (a known device with a wrong key: %v)", tc.name, m, ref)
	}
}
