package registry

import (
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
)

// ClaimPrefix marks claim tokens (bootstrap secrets devices carry from the factory).
const ClaimPrefix = "wwc_"

// ClaimSpec describes a claim token and the template for objects claimed with it.
type ClaimSpec struct {
	Name    string            `json:"name,omitempty"`
	MaxUses int               `json:"max_uses"` // default 1
	TTL     time.Duration     `json:"-"`        // default 24h
	Kind    string            `json:"kind,omitempty"`
	Model   *ModelRef         `json:"model,omitempty"`
	Path    []string          `json:"path,omitempty"`
	Tags    map[string]string `json:"tags,omitempty"`
	Edge    string            `json:"edge,omitempty"`
	Network string            `json:"network,omitempty"`
}

// Claim is a stored claim token without its secret.
type Claim struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name,omitempty"`
	MaxUses   int       `json:"max_uses"`
	Uses      int       `json:"uses"`
	ExpiresAt time.Time `json:"expires_at"`
	Template  ClaimSpec `json:"template"`
	Revoked   bool      `json:"revoked,omitempty"`
	// State says whether devices can claim with the token now: "active",
	// "expired", "used_up" or "revoked" (the first that applies, in the
	// order UseClaim checks them: revoked, expired, used up).
	State string `json:"state"`
	// LastUsedAt is when a device last claimed with the token (zero: never).
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// RevokedReason is what the operator said when revoking it.
	RevokedReason string `json:"revoked_reason,omitempty"`
}

// Why a claim was refused. Each wraps ErrClaim; the API answers them all
// alike (a failed claim tells the caller nothing about which tokens exist)
// and only counts and logs which one it was (ClaimRefusal).
var (
	ErrClaimUnknown = fmt.Errorf("%w: unknown claim token", ErrClaim)
	ErrClaimExpired = fmt.Errorf("%w: claim token expired", ErrClaim)
	ErrClaimUsedUp  = fmt.Errorf("%w: claim token used up", ErrClaim)
	ErrClaimRevoked = fmt.Errorf("%w: claim token revoked", ErrClaim)
)

// ClaimRefusal names why err refused a claim, for metrics and logs:
// "unknown", "expired", "used_up", "revoked"; "" when err is not a refusal.
func ClaimRefusal(err error) string {
	switch {
	case errors.Is(err, ErrClaimUnknown):
		return "unknown"
	case errors.Is(err, ErrClaimExpired):
		return "expired"
	case errors.Is(err, ErrClaimUsedUp):
		return "used_up"
	case errors.Is(err, ErrClaimRevoked):
		return "revoked"
	case errors.Is(err, ErrClaim):
		return "refused"
	}
	return ""
}

// CreateClaim issues a claim token for tenant. The secret is returned once.
func (r *Registry) CreateClaim(ctx context.Context, actor, tenant string, spec ClaimSpec) (*Claim, string, error) {
	if spec.MaxUses == 0 {
		spec.MaxUses = 1
	}
	if spec.MaxUses < 0 || spec.MaxUses > 1_000_000 {
		return nil, "", invalid("max_uses", "must be between 1 and 1000000")
	}
	if spec.TTL == 0 {
		spec.TTL = 24 * time.Hour
	}
	if spec.TTL < 0 || spec.TTL > 366*24*time.Hour {
		return nil, "", invalid("ttl", "must be positive and at most a year")
	}
	if len(spec.Name) > 64 {
		return nil, "", invalid("name", "at most 64 characters")
	}
	// Validate the template as a registration of a placeholder code in the tenant.
	probe := RegisterRequest{Code: tenant + ":x", Kind: spec.Kind, Model: spec.Model, Path: spec.Path, Tags: spec.Tags, Edge: spec.Edge, Network: spec.Network}
	if _, err := validateRequest(&probe); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Field == "code" {
			return nil, "", invalid("tenant", "%s", fe.Reason)
		}
		return nil, "", err
	}
	spec.Kind = probe.Kind
	secret := auth.NewSecret(ClaimPrefix)
	cl := &Claim{ID: auth.NewSecret("clm_")[:16], Tenant: tenant, Name: spec.Name, MaxUses: spec.MaxUses, Template: spec, State: "active"}
	err := r.write(ctx, actor, func(c *change) error {
		if _, err := getTenant(ctx, c.tx, tenant); err != nil {
			return err
		}
		if spec.Model != nil {
			// Checked now so that a bad template fails here, not at every
			// device's claim; the claim checks again (a version may be
			// deprecated in between).
			if _, err := usableModel(ctx, c.tx, *spec.Model, tenant); err != nil {
				return err
			}
		}
		cl.ExpiresAt = c.now.Add(spec.TTL)
		tmpl, _ := json.Marshal(spec)
		if _, err := c.tx.ExecContext(ctx, `INSERT INTO claims(id, hash, tenant, name, max_uses, expires_at, template, created_at) VALUES (?,?,?,?,?,?,?,?)`,
			cl.ID, auth.Hash(secret), tenant, spec.Name, spec.MaxUses, cl.ExpiresAt.UnixMilli(), string(tmpl), c.now.UnixMilli()); err != nil {
			return fmt.Errorf("registry: insert claim: %w", err)
		}
		return c.log(KindClaimCreated, tenant, cl.ID, map[string]any{"name": spec.Name, "max_uses": spec.MaxUses, "expires_at": cl.ExpiresAt, "template": spec})
	})
	if err != nil {
		return nil, "", err
	}
	return cl, secret, nil
}

// ClaimRequest is what a device sends with its claim token: its key as a
// CSR (which proves that the device holds the private key) or as a public
// key (the forms registration accepts), not both.
type ClaimRequest struct {
	CSR       []byte
	PublicKey crypto.PublicKey
	// Local is the local part of the code the device asks for; empty derives
	// one from its key ("d-" and 20 hex digits of the key fingerprint).
	Local string
}

// UseClaim registers a device that presents a valid claim token and its key,
// as Register does (the same checks, number derivation, certificate,
// credential and audit entries), plus a claim.used entry. The same key
// cannot be claimed twice; an unknown, expired, used-up or revoked token is
// refused with an error wrapping ErrClaim (ClaimRefusal says which).
//
// The request is checked before the token is looked at, so that a malformed
// request is answered the same whether or not the token exists.
func (r *Registry) UseClaim(ctx context.Context, secret string, req ClaimRequest) (*Registration, error) {
	switch {
	case len(req.CSR) > 0 && req.PublicKey != nil:
		return nil, invalid("public_key", "give a csr or a public_key, not both")
	case len(req.CSR) == 0 && req.PublicKey == nil:
		return nil, invalid("csr", "the device's key is required: a csr or a public_key")
	}
	rk, err := resolveKey(KeySource{CSR: req.CSR, PublicKey: req.PublicKey})
	if err != nil {
		return nil, err
	}
	if req.Local == "" {
		req.Local = "d-" + fingerprint(rk.spki)[:20]
	} else if err := code.ValidLocal(req.Local); err != nil {
		return nil, invalidErr("id", err)
	}
	if !strings.HasPrefix(secret, ClaimPrefix) || len(secret) > 128 {
		return nil, ErrClaimUnknown
	}
	var claimID string
	err = r.rd.QueryRowContext(ctx, `SELECT id FROM claims WHERE hash = ?`, auth.Hash(secret)).Scan(&claimID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrClaimUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("registry: claim: %w", err)
	}
	// Expiry and the use count are checked inside the write transaction, so
	// two devices racing for the last use cannot both win.
	var reg *Registration
	err = r.write(ctx, "claim:"+claimID, func(c *change) error {
		var cl Claim
		var tmpl string
		var expires, revoked int64
		err := c.tx.QueryRowContext(ctx, `SELECT id, tenant, max_uses, uses, expires_at, template, revoked_at FROM claims WHERE id = ?`, claimID).
			Scan(&cl.ID, &cl.Tenant, &cl.MaxUses, &cl.Uses, &expires, &tmpl, &revoked)
		if err != nil {
			return fmt.Errorf("registry: claim: %w", err)
		}
		switch {
		case revoked != 0:
			return ErrClaimRevoked
		case !c.now.Before(time.UnixMilli(expires)):
			return ErrClaimExpired
		case cl.Uses >= cl.MaxUses:
			return fmt.Errorf("%w (%d of %d)", ErrClaimUsedUp, cl.Uses, cl.MaxUses)
		}
		var spec ClaimSpec
		if err := json.Unmarshal([]byte(tmpl), &spec); err != nil {
			return fmt.Errorf("registry: claim template: %w", err)
		}
		rr := RegisterRequest{Code: cl.Tenant + ":" + req.Local, Kind: spec.Kind, Model: spec.Model, Path: spec.Path, Tags: spec.Tags, Edge: spec.Edge, Network: spec.Network}
		if reg, err = c.register(rr, rk); err != nil {
			return err
		}
		if _, err := c.tx.ExecContext(ctx, `UPDATE claims SET uses = uses + 1, last_used_at = ? WHERE id = ?`, c.now.UnixMilli(), cl.ID); err != nil {
			return fmt.Errorf("registry: claim: %w", err)
		}
		return c.log(KindClaimUsed, cl.Tenant, reg.Object.Code, map[string]any{"claim": cl.ID, "use": cl.Uses + 1, "max_uses": cl.MaxUses, "did": rk.did})
	})
	if err != nil {
		return nil, err
	}
	return reg, nil
}

// Claims lists claim tokens of tenant ("" = all).
func (r *Registry) Claims(ctx context.Context, tenant string) ([]Claim, error) {
	if tenant == "" {
		return r.claims(ctx, r.db.R, "")
	}
	return r.claims(ctx, r.db.R, ` WHERE tenant = ?`, tenant)
}

// claims reads the claims a WHERE clause selects, oldest first.
func (r *Registry) claims(ctx context.Context, h *sql.DB, where string, args ...any) ([]Claim, error) {
	rows, err := h.QueryContext(ctx, `SELECT id, tenant, name, max_uses, uses, expires_at, template, revoked_at, last_used_at, revoked_reason
		FROM claims`+where+` ORDER BY created_at`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: claims: %w", err)
	}
	defer rows.Close()
	now := r.now()
	var out []Claim
	for rows.Next() {
		var cl Claim
		var tmpl string
		var expires, revoked, used int64
		if err := rows.Scan(&cl.ID, &cl.Tenant, &cl.Name, &cl.MaxUses, &cl.Uses, &expires, &tmpl, &revoked, &used, &cl.RevokedReason); err != nil {
			return nil, fmt.Errorf("registry: claims: %w", err)
		}
		cl.ExpiresAt, cl.Revoked = time.UnixMilli(expires).UTC(), revoked != 0
		if used != 0 {
			cl.LastUsedAt = time.UnixMilli(used).UTC()
		}
		switch {
		case cl.Revoked:
			cl.State = "revoked"
		case !now.Before(cl.ExpiresAt):
			cl.State = "expired"
		case cl.Uses >= cl.MaxUses:
			cl.State = "used_up"
		default:
			cl.State = "active"
		}
		_ = json.Unmarshal([]byte(tmpl), &cl.Template)
		out = append(out, cl)
	}
	return out, rows.Err()
}

// RevokeClaim ends a claim token before its expiry: devices that have not
// claimed with it yet are refused from now on; those that did keep their
// identities. scope limits it to one tenant ("" = any), as the caller's
// token does; a claim outside the scope is ErrNotFound. Revoking a revoked
// claim changes nothing and is not an error.
func (r *Registry) RevokeClaim(ctx context.Context, actor, scope, id, reason string) (*Claim, error) {
	if len(reason) > 500 {
		return nil, invalid("reason", "at most 500 characters")
	}
	err := r.write(ctx, actor, func(c *change) error {
		var tenant string
		var revoked int64
		err := c.tx.QueryRowContext(ctx, `SELECT tenant, revoked_at FROM claims WHERE id = ?`, id).Scan(&tenant, &revoked)
		if errors.Is(err, sql.ErrNoRows) || err == nil && scope != "" && tenant != scope {
			return fmt.Errorf("%w: claim %q", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("registry: claim: %w", err)
		}
		if revoked != 0 {
			return nil
		}
		if _, err := c.tx.ExecContext(ctx, `UPDATE claims SET revoked_at = ?, revoked_reason = ? WHERE id = ?`, c.now.UnixMilli(), reason, id); err != nil {
			return fmt.Errorf("registry: revoke claim: %w", err)
		}
		return c.log(KindClaimRevoked, tenant, id, map[string]any{"reason": reason})
	})
	if err != nil {
		return nil, err
	}
	cls, err := r.claims(ctx, r.db.W, ` WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(cls) != 1 {
		return nil, fmt.Errorf("%w: claim %q", ErrNotFound, id)
	}
	return &cls[0], nil
}
