package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestAllows: every role × required role × tenant binding × target tenant.
func TestAllows(t *testing.T) {
	roles := []Role{Viewer, Operator, Admin}
	rank := map[Role]int{Viewer: 1, Operator: 2, Admin: 3}
	for _, have := range roles {
		for _, need := range roles {
			for _, bound := range []string{"", "acme"} {
				for _, target := range []string{"", "acme", "beta"} {
					name := fmt.Sprintf("%s bound to %q, %s action in %q", have, bound, need, target)
					p := Principal{Name: "t", Role: have, Tenant: bound}
					err := p.Allows(need, target)
					want := rank[have] >= rank[need] && (bound == "" || bound == target)
					if (err == nil) != want {
						t.Errorf("%s: Allows = %v, want allowed %v", name, err, want)
					}
					if err != nil && !errors.Is(err, ErrForbidden) {
						t.Errorf("%s: error %v does not wrap ErrForbidden", name, err)
					}
					if err != nil && rank[have] < rank[need] && !strings.Contains(err.Error(), string(need)) {
						t.Errorf("%s: error %q does not name the role needed", name, err)
					}
				}
			}
		}
	}
	// A role the package does not know ranks below every role.
	if err := (Principal{Role: "root"}).Allows(Viewer, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("unknown role allowed: %v", err)
	}
}

func TestSees(t *testing.T) {
	cases := []struct {
		bound, tenant string
		want          bool
	}{
		{"", "acme", true}, {"", "", true}, {"acme", "acme", true}, {"acme", "beta", false}, {"acme", "", false},
	}
	for _, tc := range cases {
		if got := (Principal{Tenant: tc.bound}).Sees(tc.tenant); got != tc.want {
			t.Errorf("bound %q sees %q = %v, want %v", tc.bound, tc.tenant, got, tc.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"viewer", "operator", "admin"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Admin", "root", "viewer "} {
		if _, err := ParseRole(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRole(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "ops@acme", "ci.bot-1_x", strings.Repeat("a", 64)} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", strings.Repeat("a", 65), "a b", "a/b", "ä", "a\nb"} {
		if err := ValidName(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalid", n, err)
		}
	}
}

func TestSecrets(t *testing.T) {
	a, b := NewSecret(Prefix), NewSecret(Prefix)
	if a == b || !strings.HasPrefix(a, Prefix) || len(a) != len(Prefix)+32 {
		t.Fatalf("secrets %q %q", a, b)
	}
	if string(Hash(a)) == string(Hash(b)) || len(Hash(a)) != 32 || string(Hash(a)) != string(Hash(a)) {
		t.Fatal("Hash is not a stable SHA-256 of the secret")
	}
}
