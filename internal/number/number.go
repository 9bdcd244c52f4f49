// Package number derives an object's "number": the IPv6 address that, with
// its code, identifies it (docs/ARCHITECTURE.md, "Identity in numbers").
//
// An address is built from three parts, each a pure function of inputs that
// the owner of the data already has, so that anyone can recompute a number
// and check it (README.md in this directory shows how, with a worked example):
//
//   - a /48 per tenant: a ULA prefix in the RFC 4193 layout (fd00::/8 plus a
//     40-bit global id) hashed from the deployment id and the tenant
//     namespace, or a global prefix the operator sets;
//   - a /64 per site or edge: a 16-bit subnet id hashed from the subnet key;
//   - a 64-bit interface id hashed from the object's public key (SPKI DER),
//     or from its code for objects without a key (assets).
//
// Hashes are SHA-256 over a versioned, NUL-separated domain string, so the
// derivations cannot collide with each other or with future versions. Hashes
// can collide within a tenant; the attempt counter resolves that: the
// registry tries attempt 0, 1, 2, ... until the result is free, and stores
// the attempt so the number stays stable.
package number

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// ErrPrefix means an operator-supplied prefix is unusable; the wrapping error
// says why.
var ErrPrefix = errors.New("invalid global prefix")

// Domain-separation strings. Changing one changes every number derived with
// it, so they carry a version and are never edited, only superseded.
const (
	domainULA     = "wanwu/ula/v1\x00"
	domainSubnet  = "wanwu/subnet/v1\x00"
	domainIID     = "wanwu/iid/v1\x00"
	domainIIDCode = "wanwu/iid-code/v1\x00"
)

// TenantPrefix returns the tenant's ULA /48: fd followed by the first 5
// bytes of SHA-256("wanwu/ula/v1\x00" + deploymentID + "\x00" + namespace).
// RFC 4193 asks for a random global id; a hash keyed by the deployment is as
// unlikely to collide with a neighbour's, and has the advantage of being
// recomputable.
func TenantPrefix(deploymentID, namespace string) netip.Prefix {
	h := sha256.New()
	h.Write([]byte(domainULA))
	h.Write([]byte(deploymentID))
	h.Write([]byte{0})
	h.Write([]byte(namespace))
	sum := h.Sum(nil)
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], sum[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// ParseGlobalPrefix parses a prefix set by an operator. It must be an IPv6
// /48 in global unicast space (2000::/3) or ULA space (fc00::/7), written
// without host bits, since those would be silently discarded otherwise.
func ParseGlobalPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %w", ErrPrefix, err)
	}
	a := p.Addr()
	switch {
	case a.Is4():
		return netip.Prefix{}, fmt.Errorf("%w: %s is IPv4", ErrPrefix, p)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("%w: %s is IPv4-mapped", ErrPrefix, p)
	case p.Bits() != 48:
		return netip.Prefix{}, fmt.Errorf("%w: %s is a /%d, want a /48", ErrPrefix, p, p.Bits())
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("%w: %s has bits set beyond /48 (did you mean %s?)", ErrPrefix, p, p.Masked())
	case a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLoopback(), a.IsUnspecified():
		return netip.Prefix{}, fmt.Errorf("%w: %s is not unicast", ErrPrefix, p)
	}
	b := a.As16()
	global := b[0]&0xe0 == 0x20 // 2000::/3
	ula := b[0]&0xfe == 0xfc    // fc00::/7
	if !global && !ula {
		return netip.Prefix{}, fmt.Errorf("%w: %s is neither global unicast (2000::/3) nor ULA (fc00::/7)", ErrPrefix, p)
	}
	return p, nil
}

// SubnetID returns the 16-bit subnet id for a site or edge: the first two
// bytes, big endian, of SHA-256("wanwu/subnet/v1\x00" + subnetKey + "\x00" +
// decimal(attempt)).
func SubnetID(subnetKey string, attempt int) uint16 {
	sum := hash(domainSubnet, []byte(subnetKey), attempt)
	return binary.BigEndian.Uint16(sum[:2])
}

// Subnet returns the /64 with the given subnet id inside a /48. It returns
// the zero Prefix if prefix48 is not an IPv6 /48, so that a caller that
// skipped validation gets an obviously invalid result rather than a panic or
// an address in someone else's network.
func Subnet(prefix48 netip.Prefix, id uint16) netip.Prefix {
	if !prefix48.IsValid() || prefix48.Bits() != 48 || !prefix48.Addr().Is6() || prefix48.Addr().Is4In6() {
		return netip.Prefix{}
	}
	a := prefix48.Masked().Addr().WithZone("").As16()
	binary.BigEndian.PutUint16(a[6:8], id)
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// InterfaceID returns the interface id for a key: the first 8 bytes of
// SHA-256("wanwu/iid/v1\x00" + spkiDER + "\x00" + decimal(attempt)) with the
// RFC 4291 "u" bit (0x02 of byte 0) cleared, marking it as not derived from
// a globally unique EUI-64. The caller must skip attempts for which
// IsReservedIID is true.
func InterfaceID(spkiDER []byte, attempt int) [8]byte {
	return iid(domainIID, spkiDER, attempt)
}

// InterfaceIDFromCode is InterfaceID for objects without a key, such as
// assets, derived from the object's code under its own domain string.
func InterfaceIDFromCode(code string, attempt int) [8]byte {
	return iid(domainIIDCode, []byte(code), attempt)
}

func iid(domain string, input []byte, attempt int) [8]byte {
	sum := hash(domain, input, attempt)
	var id [8]byte
	copy(id[:], sum[:8])
	id[0] &^= 0x02
	return id
}

func hash(domain string, input []byte, attempt int) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write(input)
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, int64(attempt), 10))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// IsReservedIID reports whether iid is reserved by RFC 5453 and so must not
// be assigned to an interface: the subnet-router anycast id (all zeros), the
// ids of the IANA Ethernet block 0200:5eff:fe00:0–0200:5eff:feff:ffff (which
// a derived id, its "u" bit cleared, never hits), and the reserved subnet
// anycast ids fdff:ffff:ffff:ff80–fdff:ffff:ffff:ffff (RFC 2526).
func IsReservedIID(iid [8]byte) bool {
	v := binary.BigEndian.Uint64(iid[:])
	switch {
	case v == 0:
		return true
	case v >= 0x0200_5eff_fe00_0000 && v <= 0x0200_5eff_feff_ffff:
		return true
	case v >= 0xfdff_ffff_ffff_ff80 && v <= 0xfdff_ffff_ffff_ffff:
		return true
	}
	return false
}

// Address returns the address with interface id iid in subnet, or the zero
// Addr if subnet is not an IPv6 /64.
func Address(subnet netip.Prefix, iid [8]byte) netip.Addr {
	if !subnet.IsValid() || subnet.Bits() != 64 || !subnet.Addr().Is6() || subnet.Addr().Is4In6() {
		return netip.Addr{}
	}
	a := subnet.Masked().Addr().WithZone("").As16()
	copy(a[8:], iid[:])
	return netip.AddrFrom16(a)
}
