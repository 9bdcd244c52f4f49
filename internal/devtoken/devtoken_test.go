package devtoken

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/keys"
)

func lookupFor(m map[string][]crypto.PublicKey) func(string) ([]crypto.PublicKey, error) {
	return func(c string) ([]crypto.PublicKey, error) { return m[c], nil }
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, alg := range []keys.Alg{keys.P256, keys.Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			k, _ := keys.Generate(alg)
			other, _ := keys.Generate(alg)
			tok, err := Sign(k, "acme:pump-1", now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Verify(tok, lookupFor(map[string][]crypto.PublicKey{"acme:pump-1": {other.Public(), k.Public()}}), now.Add(time.Minute))
			if err != nil || got != "acme:pump-1" {
				t.Fatalf("Verify = %q, %v", got, err)
			}
			cases := []struct {
				name string
				tok  string
				keys map[string][]crypto.PublicKey
				at   time.Time
				want error
			}{
				{"wrong key", tok, map[string][]crypto.PublicKey{"acme:pump-1": {other.Public()}}, now, ErrSignature},
				{"unknown device", tok, nil, now, ErrUnknownDevice},
				{"expired", tok, map[string][]crypto.PublicKey{"acme:pump-1": {k.Public()}}, now.Add(2 * time.Hour), ErrExpired},
				{"not yet valid", tok, map[string][]crypto.PublicKey{"acme:pump-1": {k.Public()}}, now.Add(-time.Hour), ErrExpired},
				{"tampered claims", tamper(tok, 1), map[string][]crypto.PublicKey{"acme:pump-1": {k.Public()}}, now, ErrMalformed},
				{"tampered signature", tamper(tok, 2), map[string][]crypto.PublicKey{"acme:pump-1": {k.Public()}}, now, ErrSignature},
				{"two parts", strings.Join(strings.Split(tok, ".")[:2], "."), nil, now, ErrMalformed},
				{"alg none", "eyJhbGciOiJub25lIn0." + strings.Split(tok, ".")[1] + ".", nil, now, ErrMalformed},
				{"too long", strings.Repeat("a", MaxSize+1), nil, now, ErrMalformed},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if _, err := Verify(tc.tok, lookupFor(tc.keys), tc.at); !errors.Is(err, tc.want) {
						t.Errorf("Verify = %v, want %v", err, tc.want)
					}
				})
			}
		})
	}
}

// tamper flips a character in part i of the token.
func tamper(tok string, i int) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[i])
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	parts[i] = string(b)
	return strings.Join(parts, ".")
}

func TestSignRefuses(t *testing.T) {
	k, _ := keys.Generate(keys.P256)
	if _, err := Sign(k, "bad code", time.Now(), time.Hour); err == nil {
		t.Error("signed for a bad code")
	}
	if _, err := Sign(k, "acme:x", time.Now(), 25*time.Hour); err == nil {
		t.Error("signed beyond MaxLifetime")
	}
}

func FuzzVerify(f *testing.F) {
	k, _ := keys.Generate(keys.Ed25519)
	now := time.Unix(1_800_000_000, 0)
	tok, _ := Sign(k, "acme:x", now, time.Hour)
	f.Add(tok)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	lookup := lookupFor(map[string][]crypto.PublicKey{"acme:x": {k.Public()}})
	f.Fuzz(func(t *testing.T, s string) {
		code, err := Verify(s, lookup, now)
		if err == nil && s != tok {
			// Only a token signed by the key verifies; EdDSA is deterministic, so that is tok.
			t.Fatalf("forged token verified as %q: %q", code, s)
		}
	})
}

func TestExpiry(t *testing.T) {
	k, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_767_225_600, 0)
	tok, err := Sign(k, "acme:pump-1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp, err := Expiry(tok); err != nil || !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("Expiry = %v, %v; want %v", exp, err, now.Add(time.Hour))
	}
	if _, err := Expiry("not.a.token"); !errors.Is(err, ErrMalformed) {
		t.Errorf("Expiry of garbage: %v, want ErrMalformed", err)
	}
}

// TestVerifySkew: the tolerated clock difference decides a token just
// past its exp or just before its iat.
func TestVerifySkew(t *testing.T) {
	key, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lookup := func(string) ([]crypto.PublicKey, error) { return []crypto.PublicKey{key.Public()}, nil }
	expired4m, _ := Sign(key, "acme:x", now.Add(-64*time.Minute), time.Hour) // exp 4 minutes ago
	future4m, _ := Sign(key, "acme:x", now.Add(4*time.Minute), time.Hour)    // iat 4 minutes ahead
	for _, tc := range []struct {
		name  string
		token string
		skew  time.Duration
		ok    bool
	}{
		{"expired within the default skew", expired4m, Skew, true},
		{"expired beyond a 1m skew", expired4m, time.Minute, false},
		{"issued ahead within the skew", future4m, Skew, true},
		{"issued ahead beyond a 1m skew", future4m, time.Minute, false},
	} {
		_, err := VerifySkew(tc.token, lookup, now, tc.skew)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrExpired) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
