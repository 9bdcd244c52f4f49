package number

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// rfc8032Key1 is the public key of RFC 8032 §7.1 test 1, used by the
// README's worked example so that readers can reproduce it.
const rfc8032Key1 = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := hex.DecodeString(rfc8032Key1)
	spki, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(pub))
	if err != nil {
		t.Fatal(err)
	}

	prefix := TenantPrefix("wanwu-demo", "acme")
	subnet := Subnet(prefix, SubnetID("acme:plant-1", 0))
	iid := InterfaceID(spki, 0)
	if IsReservedIID(iid) {
		t.Fatal("example interface id is reserved; pick another example")
	}
	addr := Address(subnet, iid)
	asset := Address(subnet, InterfaceIDFromCode("acme:pump-house", 0))

	want := []string{
		"`" + hex.EncodeToString(spki[:12]) + "`",
		"`" + prefix.String() + "`",
		"`" + subnet.String() + "`",
		fmt.Sprintf("`%04x`", SubnetID("acme:plant-1", 0)),
		"**`" + addr.String() + "`**",
		"`" + asset.String() + "`",
	}
	for _, w := range want {
		if !strings.Contains(string(readme), w) {
			t.Errorf("README.md does not contain %s; update the worked example", w)
		}
	}
}

func TestTenantPrefix(t *testing.T) {
	p := TenantPrefix("wanwu-demo", "acme")
	if p.String() != "fd33:da2a:df1e::/48" {
		t.Errorf("TenantPrefix = %s", p)
	}
	tests := []struct{ dep, ns string }{
		{"wanwu-demo", "acme"},
		{"wanwu-demo", "acme2"},
		{"other", "acme"},
		// The NUL separator keeps these two apart.
		{"ab", "c"},
		{"a", "bc"},
	}
	seen := map[netip.Prefix]string{}
	for _, tt := range tests {
		p := TenantPrefix(tt.dep, tt.ns)
		if p.Bits() != 48 || p.Addr().As16()[0] != 0xfd || p.Masked() != p {
			t.Errorf("TenantPrefix(%q, %q) = %s, want an fd00::/8 /48", tt.dep, tt.ns, p)
		}
		if prev, dup := seen[p]; dup {
			t.Errorf("TenantPrefix(%q, %q) = %s, same as %s", tt.dep, tt.ns, p, prev)
		}
		seen[p] = tt.dep + "|" + tt.ns
		if _, err := ParseGlobalPrefix(p.String()); err != nil {
			t.Errorf("a derived prefix must also be acceptable as configured: %v", err)
		}
	}
}

func TestParseGlobalPrefix(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"2001:db8:1234::/48", true},
		{"2a01:4f8:abcd::/48", true},
		{"fd12:3456:789a::/48", true},
		{"fc00:1::/48", true},
		{"2001:db8:1234::/56", false},
		{"2001:db8::/32", false},
		{"2001:db8:1234:1::/48", false}, // host bits
		{"10.0.0.0/8", false},
		{"::ffff:10.0.0.0/120", false},
		{"::ffff:0:0/48", false},
		{"ff02:1:2::/48", false},
		{"fe80::/48", false},
		{"::/48", false},
		{"::1/128", false},
		{"4000::/48", false},
		{"2001:db8:1234::", false},
		{"nonsense", false},
		{"", false},
	}
	for _, tt := range tests {
		p, err := ParseGlobalPrefix(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseGlobalPrefix(%q) = %v, %v; want ok=%v", tt.in, p, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrPrefix) {
			t.Errorf("ParseGlobalPrefix(%q) error %v does not wrap ErrPrefix", tt.in, err)
		}
	}
}

func TestSubnet(t *testing.T) {
	p := netip.MustParsePrefix("2001:db8:1234::/48")
	tests := []struct {
		prefix netip.Prefix
		id     uint16
		want   string
	}{
		{p, 0, "2001:db8:1234::/64"},
		{p, 0x41a6, "2001:db8:1234:41a6::/64"},
		{p, 0xffff, "2001:db8:1234:ffff::/64"},
		{netip.PrefixFrom(netip.MustParseAddr("2001:db8:1234:5678::1"), 48), 1, "2001:db8:1234:1::/64"},
		{netip.MustParsePrefix("2001:db8::/32"), 1, "invalid Prefix"},
		{netip.MustParsePrefix("10.0.0.0/8"), 1, "invalid Prefix"},
		{netip.Prefix{}, 1, "invalid Prefix"},
	}
	for _, tt := range tests {
		if got := Subnet(tt.prefix, tt.id).String(); got != tt.want {
			t.Errorf("Subnet(%s, %04x) = %s, want %s", tt.prefix, tt.id, got, tt.want)
		}
	}
	if a, b := SubnetID("acme:plant-1", 0), SubnetID("acme:plant-1", 1); a == b {
		t.Errorf("attempts 0 and 1 give the same subnet id %04x", a)
	}
	if SubnetID("acme:plant-1", 0) != 0x41a6 {
		t.Errorf("SubnetID changed: %04x", SubnetID("acme:plant-1", 0))
	}
}

func TestInterfaceID(t *testing.T) {
	for attempt := range 1000 {
		for _, id := range [][8]byte{
			InterfaceID([]byte{byte(attempt)}, attempt),
			InterfaceIDFromCode(fmt.Sprintf("acme:d%d", attempt), 0),
		} {
			if id[0]&0x02 != 0 {
				t.Fatalf("u bit set in %x", id)
			}
		}
	}
	spki := []byte("not really DER but any bytes hash")
	if InterfaceID(spki, 0) == InterfaceID(spki, 1) {
		t.Error("attempts 0 and 1 give the same interface id")
	}
	// The two derivations are domain separated: a code that happens to
	// equal someone's key bytes does not get their interface id.
	if InterfaceID([]byte("acme:x"), 0) == InterfaceIDFromCode("acme:x", 0) {
		t.Error("key and code derivations collide")
	}
}

func TestIsReservedIID(t *testing.T) {
	tests := []struct {
		iid  string
		want bool
	}{
		{"0000000000000000", true},
		{"0000000000000001", false},
		{"fdffffffffffff7f", false},
		{"fdffffffffffff80", true},
		{"fdffffffffffffff", true},
		{"fe00000000000000", false},
		{"ffffffffffffffff", false},
		{"02005efffdffffff", false},
		{"02005efffe000000", true},
		{"02005efffe005213", true},
		{"02005efffeffffff", true},
		{"02005eff00000000", false},
		{"38e18884397f547c", false},
	}
	for _, tt := range tests {
		var iid [8]byte
		b, _ := hex.DecodeString(tt.iid)
		copy(iid[:], b)
		if got := IsReservedIID(iid); got != tt.want {
			t.Errorf("IsReservedIID(%s) = %v, want %v", tt.iid, got, tt.want)
		}
	}
}

func TestAddress(t *testing.T) {
	iid := [8]byte{0x38, 0xe1, 0x88, 0x84, 0x39, 0x7f, 0x54, 0x7c}
	tests := []struct {
		subnet netip.Prefix
		want   string
	}{
		{netip.MustParsePrefix("fd33:da2a:df1e:41a6::/64"), "fd33:da2a:df1e:41a6:38e1:8884:397f:547c"},
		{netip.PrefixFrom(netip.MustParseAddr("2001:db8:1:2:ffff::1"), 64), "2001:db8:1:2:38e1:8884:397f:547c"},
		{netip.MustParsePrefix("2001:db8::/48"), "invalid IP"},
		{netip.MustParsePrefix("10.0.0.0/24"), "invalid IP"},
		{netip.Prefix{}, "invalid IP"},
	}
	for _, tt := range tests {
		if got := Address(tt.subnet, iid).String(); got != tt.want {
			t.Errorf("Address(%s) = %s, want %s", tt.subnet, got, tt.want)
		}
	}
}

// FuzzParseGlobalPrefix checks that an accepted prefix is always a masked
// unicast IPv6 /48 that the rest of the package can build addresses in.
func FuzzParseGlobalPrefix(f *testing.F) {
	for _, s := range []string{"2001:db8:1234::/48", "fd00::/48", "::ffff:1.2.3.4/48", "fe80::%eth0/48", "2001:db8::/32"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseGlobalPrefix(s)
		if err != nil {
			if !errors.Is(err, ErrPrefix) {
				t.Fatalf("error %v does not wrap ErrPrefix", err)
			}
			return
		}
		if p.Bits() != 48 || !p.Addr().Is6() || p.Addr().Is4In6() || p.Masked() != p {
			t.Fatalf("accepted %q as %s", s, p)
		}
		a := Address(Subnet(p, 0xbeef), InterfaceIDFromCode("acme:x", 0))
		if !a.IsValid() || !p.Contains(a) {
			t.Fatalf("address %s not inside accepted prefix %s", a, p)
		}
	})
}
