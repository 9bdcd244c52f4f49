package registry

import (
	"context"
	"fmt"
)

// ObjectCount is how many objects share a tenant, kind, status, network
// profile and edge.
type ObjectCount struct {
	Tenant  string
	Kind    string
	Status  string
	Network string // "" for objects without one
	Edge    string // the edge the objects are behind, "" for none
	Objects int
}

// CountObjects counts the objects of a tenant ("" = every tenant) by
// tenant, kind, status, network profile and edge in one query, leaving out
// deleted ones, ordered by those five: what an overview of a fleet shows
// without listing it.
func (r *Registry) CountObjects(ctx context.Context, tenant string) ([]ObjectCount, error) {
	q := `SELECT tenant, kind, status, network, edge, COUNT(*) FROM objects WHERE status != ?`
	args := []any{StatusDeleted}
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	rows, err := r.rd.QueryContext(ctx, q+` GROUP BY tenant, kind, status, network, edge ORDER BY tenant, kind, status, network, edge`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: count objects: %w", err)
	}
	defer rows.Close()
	var out []ObjectCount
	for rows.Next() {
		var c ObjectCount
		if err := rows.Scan(&c.Tenant, &c.Kind, &c.Status, &c.Network, &c.Edge, &c.Objects); err != nil {
			return nil, fmt.Errorf("registry: count objects: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: count objects: %w", err)
	}
	return out, nil
}

// PathCount is how many objects of a tenant stand at one place of its
// hierarchy ("" for those not placed).
type PathCount struct {
	Tenant  string
	Path    string // segments joined by "/"
	Objects int
}

// CountPaths counts the objects of a tenant ("" = every tenant) by tenant
// and path, leaving out deleted ones, ordered by both: one row per place
// in the hierarchy that holds objects, not per object.
func (r *Registry) CountPaths(ctx context.Context, tenant string) ([]PathCount, error) {
	q := `SELECT tenant, path, COUNT(*) FROM objects WHERE status != ?`
	args := []any{StatusDeleted}
	if tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, tenant)
	}
	rows, err := r.rd.QueryContext(ctx, q+` GROUP BY tenant, path ORDER BY tenant, path`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: count paths: %w", err)
	}
	defer rows.Close()
	var out []PathCount
	for rows.Next() {
		var c PathCount
		if err := rows.Scan(&c.Tenant, &c.Path, &c.Objects); err != nil {
			return nil, fmt.Errorf("registry: count paths: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: count paths: %w", err)
	}
	return out, nil
}
