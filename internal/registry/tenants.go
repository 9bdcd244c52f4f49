package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/number"
)

// Audit entry kinds written by the registry.
const (
	KindTenantCreated     = "tenant.created"
	KindModelRegistered   = "model.registered"
	KindModelDeprecated   = "model.deprecated"
	KindObjectRegistered  = "object.registered"
	KindCredentialIssued  = "credential.issued"
	KindKeyRotated        = "key.rotated"
	KindKeyRevoked        = "key.revoked"
	KindObjectRevoked     = "object.revoked"
	KindObjectQuarantined = "object.quarantined"
	KindObjectReinstated  = "object.reinstated"
	KindObjectUpdated     = "object.updated"
	// KindObjectDecommissioned: identity revoked for good, status
	// decommissioned; the data stays until retention removes it.
	KindObjectDecommissioned = "object.decommissioned"
	// KindObjectDeleted: a test object revoked and removed (ctl object delete).
	KindObjectDeleted = "object.deleted"
	KindClaimCreated  = "claim.created"
	KindClaimUsed     = "claim.used"
	KindClaimRevoked  = "claim.revoked"
	KindTokenCreated  = "token.created"
	KindTokenRevoked  = "token.revoked"
)

// Tenant is a namespace of codes with its own IPv6 /48.
type Tenant struct {
	Name  string `json:"name"`
	Title string `json:"title,omitempty"`
	// Prefix is the tenant's /48: derived (ULA) unless an operator set it.
	Prefix    string    `json:"prefix"`
	PrefixSet bool      `json:"prefix_set,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateTenant registers a tenant. prefix "" derives a ULA /48 from the
// deployment id and the name; otherwise it must be a /48 the operator owns.
func (r *Registry) CreateTenant(ctx context.Context, actor, name, title, prefix string) (*Tenant, error) {
	if err := code.ValidNamespace(name); err != nil {
		return nil, invalidErr("name", err)
	}
	if name == SharedNamespace {
		return nil, invalid("name", "%q is reserved for the deployment's shared models", name)
	}
	if len(title) > 200 {
		return nil, invalid("title", "at most 200 characters")
	}
	t := &Tenant{Name: name, Title: title}
	if prefix == "" {
		t.Prefix = number.TenantPrefix(r.opts.DeploymentID, name).String()
	} else {
		p, err := number.ParseGlobalPrefix(prefix)
		if err != nil {
			return nil, invalidErr("prefix", err)
		}
		t.Prefix, t.PrefixSet = p.String(), true
	}
	err := r.write(ctx, actor, func(c *change) error {
		t.CreatedAt = c.now
		var n int
		if err := c.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tenants WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: tenant %s exists", ErrConflict, name)
		}
		var other string
		err := c.tx.QueryRowContext(ctx, `SELECT name FROM tenants WHERE prefix = ?`, t.Prefix).Scan(&other)
		if err == nil {
			if t.PrefixSet {
				return fmt.Errorf("%w: prefix %s belongs to tenant %s", ErrConflict, t.Prefix, other)
			}
			// A 40-bit collision between two derived prefixes: rare, and the operator resolves it.
			return fmt.Errorf("%w: derived prefix %s collides with tenant %s; set a prefix explicitly", ErrConflict, t.Prefix, other)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := c.tx.ExecContext(ctx, `INSERT INTO tenants(name, title, prefix, prefix_set, created_at) VALUES (?,?,?,?,?)`,
			t.Name, t.Title, t.Prefix, boolInt(t.PrefixSet), t.CreatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("registry: insert tenant: %w", err)
		}
		return c.log(KindTenantCreated, name, name, map[string]any{"prefix": t.Prefix, "prefix_set": t.PrefixSet, "title": title})
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Tenant returns one tenant.
func (r *Registry) Tenant(ctx context.Context, name string) (*Tenant, error) {
	return getTenant(ctx, r.rd, name)
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func getTenant(ctx context.Context, q queryer, name string) (*Tenant, error) {
	t := &Tenant{}
	var set int
	var created int64
	err := q.QueryRowContext(ctx, `SELECT name, title, prefix, prefix_set, created_at FROM tenants WHERE name = ?`, name).
		Scan(&t.Name, &t.Title, &t.Prefix, &set, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: tenant %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: tenant: %w", err)
	}
	t.PrefixSet, t.CreatedAt = set != 0, time.UnixMilli(created).UTC()
	return t, nil
}

// Tenants lists tenants; only is "" for all or one tenant's name.
func (r *Registry) Tenants(ctx context.Context, only string) ([]*Tenant, error) {
	q := `SELECT name FROM tenants`
	var args []any
	if only != "" {
		q += ` WHERE name = ?`
		args = append(args, only)
	}
	rows, err := r.db.R.QueryContext(ctx, q+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: tenants: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	out := make([]*Tenant, 0, len(names))
	for _, n := range names {
		t, err := r.Tenant(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// subnetFor returns the tenant's /64 for a subnet key, allocating it on first
// use. Collisions of the 16-bit derived subnet id move to the next attempt;
// the attempt is stored so the number stays recomputable.
func (c *change) subnetFor(tenant *Tenant, key string) (netip.Prefix, error) {
	prefix, err := netip.ParsePrefix(tenant.Prefix)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("registry: tenant %s has a bad prefix %q: %w", tenant.Name, tenant.Prefix, err)
	}
	var id int
	err = c.tx.QueryRowContext(c.ctx, `SELECT subnet_id FROM subnets WHERE tenant = ? AND key = ?`, tenant.Name, key).Scan(&id)
	if err == nil {
		return number.Subnet(prefix, uint16(id)), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return netip.Prefix{}, fmt.Errorf("registry: subnet: %w", err)
	}
	for attempt := 0; attempt < 1<<16; attempt++ {
		sid := number.SubnetID(key, attempt)
		var n int
		if err := c.tx.QueryRowContext(c.ctx, `SELECT COUNT(*) FROM subnets WHERE tenant = ? AND subnet_id = ?`, tenant.Name, int(sid)).Scan(&n); err != nil {
			return netip.Prefix{}, fmt.Errorf("registry: subnet: %w", err)
		}
		if n > 0 {
			continue
		}
		if _, err := c.tx.ExecContext(c.ctx, `INSERT INTO subnets(tenant, key, subnet_id, attempt) VALUES (?,?,?,?)`,
			tenant.Name, key, int(sid), attempt); err != nil {
			return netip.Prefix{}, fmt.Errorf("registry: subnet: %w", err)
		}
		return number.Subnet(prefix, sid), nil
	}
	return netip.Prefix{}, fmt.Errorf("%w: tenant %s has no free /64 left", ErrConflict, tenant.Name)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func marshalData(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage(`{}`), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("registry: audit data: %w", err)
	}
	return b, nil
}
