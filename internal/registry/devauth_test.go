package registry

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// TestAuthenticateDeviceTiming: a forged token for an unknown code or a
// revoked device costs about as much as one for a known device with a wrong
// key (a signature check each), so response time does not tell an
// unauthenticated caller which codes exist. Medians of interleaved calls,
// with a wide margin: without the decoy check an unknown code skipped the
// signature check and answered in a fraction of the time.
func TestAuthenticateDeviceTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
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
	const rounds = 300
	took := make([][]time.Duration, len(cases))
	for i := range rounds {
		for j, tc := range cases {
			tok, err := devtoken.Sign(forger, tc.code, e.clock.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			adm, err := e.reg.AuthenticateDevice(e.ctx, nil, "", tok)
			took[j] = append(took[j], time.Since(start))
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
		t.Logf("%s: median %v", tc.name, m)
		if j > 0 && m < ref/2 {
			t.Errorf("%s answers in %v, a known device with a wrong key in %v: timing tells them apart", tc.name, m, ref)
		}
	}
}
