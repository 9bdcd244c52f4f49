package loadgen

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxSourceAddrs bounds what ParseAddrs expands a range to.
const MaxSourceAddrs = 4096

// ParseAddrs parses a list of source addresses: comma-separated IPv4 or IPv6
// addresses and inclusive ranges FIRST-LAST, e.g. "127.0.0.2-127.0.0.9,127.0.1.1".
func ParseAddrs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		first, last, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(first))
		if err != nil {
			return nil, fmt.Errorf("%w: source address %q: %w", ErrOptions, part, err)
		}
		b := a
		if isRange {
			if b, err = netip.ParseAddr(strings.TrimSpace(last)); err != nil {
				return nil, fmt.Errorf("%w: source address range %q: %w", ErrOptions, part, err)
			}
			if a.Is4() != b.Is4() || b.Less(a) {
				return nil, fmt.Errorf("%w: source address range %q: want FIRST-LAST of one family, FIRST ≤ LAST", ErrOptions, part)
			}
		}
		for ip := a; ; ip = ip.Next() {
			if len(out) >= MaxSourceAddrs {
				return nil, fmt.Errorf("%w: more than %d source addresses", ErrOptions, MaxSourceAddrs)
			}
			out = append(out, ip.String())
			if ip == b {
				break
			}
		}
	}
	return out, nil
}
