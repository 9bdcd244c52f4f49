package registry

// An object's network: the profile (package netprofile) of the link it is
// on, which the hub reads to hold downlink for a sleeping device and to
// count its bytes against a daily budget.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// ValidNetwork checks a network profile name: "" (not set) or one of
// netprofile.Names(). The error is a FieldError for "network" that names
// the valid ones.
func ValidNetwork(name string) error {
	if name == "" {
		return nil
	}
	if _, ok := netprofile.Lookup(name); ok {
		return nil
	}
	return invalid("network", "%q is not a network profile; want one of %s (or none)", short(name), strings.Join(netprofile.Names(), ", "))
}

func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Network returns the network profile name of an object ("" when not
// set) and its tenant, with one indexed read: what the hub's byte
// accounting and downlink timing look up per device, without the keys a
// full Object carries.
func (r *Registry) Network(ctx context.Context, codeStr string) (network, tenant string, err error) {
	err = r.rd.QueryRowContext(ctx, `SELECT network, tenant FROM objects WHERE code = ?`, codeStr).Scan(&network, &tenant)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("%w: object %q", ErrNotFound, codeStr)
	}
	if err != nil {
		return "", "", fmt.Errorf("registry: network: %w", err)
	}
	return network, tenant, nil
}

// NetworkCount is how many objects a network profile has.
type NetworkCount struct {
	Network string // "" for objects without one
	Objects int
}

// CountByNetwork counts the objects of a tenant ("" = every tenant) per
// network profile, leaving out deleted ones, in name order ("" first).
func (r *Registry) CountByNetwork(ctx context.Context, tenant string) ([]NetworkCount, error) {
	q := `SELECT network, COUNT(*) FROM objects WHERE status != ?`
	args := []any{StatusDeleted}
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	rows, err := r.rd.QueryContext(ctx, q+` GROUP BY network ORDER BY network`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: count by network: %w", err)
	}
	defer rows.Close()
	var out []NetworkCount
	for rows.Next() {
		var c NetworkCount
		if err := rows.Scan(&c.Network, &c.Objects); err != nil {
			return nil, fmt.Errorf("registry: count by network: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: count by network: %w", err)
	}
	return out, nil
}
