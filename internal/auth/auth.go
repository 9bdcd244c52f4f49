// Package auth owns operator access to the hub: API tokens, their roles and
// what each role may do.
//
// A token is shown once when it is created and stored only as its SHA-256
// hash, so a copy of the database does not hand out access. Roles are
// ordered: viewer reads, operator also changes objects, models and claims,
// admin also manages tenants and tokens. A token bound to a tenant sees only
// that tenant; a token with no tenant spans the deployment.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a token may do.
type Role string

// Roles, from least to most privileged.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Admin    Role = "admin"
)

// ParseRole accepts the three role names.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case Viewer, Operator, Admin:
		return Role(s), nil
	}
	return "", fmt.Errorf("%w: role %q (want admin, operator or viewer)", ErrInvalid, s)
}

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Errors returned by this package.
var (
	// ErrUnauthenticated: no token, or a token that is unknown or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the token is valid but its role or tenant does not allow the action.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: a malformed token request.
	ErrInvalid = errors.New("invalid token request")
	// ErrNotFound: no token with that name.
	ErrNotFound = errors.New("token not found")
	// ErrExists: a token with that name exists.
	ErrExists = errors.New("token exists")
)

// Principal is the authenticated caller of an API request.
type Principal struct {
	ID     string
	Name   string
	Role   Role
	Tenant string // "" = every tenant
}

// Allows reports whether p may act with at least role min inside tenant
// ("" means a deployment-wide action, which only unbound tokens may do).
func (p Principal) Allows(min Role, tenant string) error {
	if p.Role.rank() < min.rank() {
		return fmt.Errorf("%w: token %q has role %s, this needs %s", ErrForbidden, p.Name, p.Role, min)
	}
	if p.Tenant != "" && p.Tenant != tenant {
		if tenant == "" {
			return fmt.Errorf("%w: token %q is bound to tenant %s; this action spans tenants", ErrForbidden, p.Name, p.Tenant)
		}
		return fmt.Errorf("%w: token %q is bound to tenant %s", ErrForbidden, p.Name, p.Tenant)
	}
	return nil
}

// Sees reports whether p may read objects of tenant.
func (p Principal) Sees(tenant string) bool { return p.Tenant == "" || p.Tenant == tenant }

// Token is a stored token without its secret.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Tenant    string    `json:"tenant,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Prefix marks API tokens so that they are recognisable in a leaked file or log.
const Prefix = "wwt_"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a fresh random secret with the given prefix.
func NewSecret(prefix string) string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("auth: crypto/rand failed: %v", err))
	}
	return prefix + strings.ToLower(b32.EncodeToString(b[:]))
}

// Hash is the stored form of a secret.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ValidName checks a token name: 1–64 of [A-Za-z0-9._@-].
func ValidName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%w: name must be 1–64 characters", ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return fmt.Errorf("%w: name %q: character %q at %d is not allowed (use letters, digits, . _ - @)", ErrInvalid, name, c, i)
		}
	}
	return nil
}

// Create stores a new token inside tx and returns its secret, shown only now.
func Create(ctx context.Context, tx *sql.Tx, name string, role Role, tenant string, now time.Time) (Token, string, error) {
	if err := ValidName(name); err != nil {
		return Token{}, "", err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Token{}, "", err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE name = ?`, name).Scan(&n); err != nil {
		return Token{}, "", fmt.Errorf("auth: %w", err)
	}
	if n > 0 {
		return Token{}, "", fmt.Errorf("%w: %q", ErrExists, name)
	}
	secret := NewSecret(Prefix)
	t := Token{ID: NewSecret("tok_")[:20], Name: name, Role: role, Tenant: tenant, CreatedAt: now.UTC().Truncate(time.Millisecond)}
	_, err := tx.ExecContext(ctx, `INSERT INTO tokens(id, name, role, tenant, hash, created_at) VALUES (?,?,?,?,?,?)`,
		t.ID, t.Name, string(t.Role), t.Tenant, Hash(secret), t.CreatedAt.UnixMilli())
	if err != nil {
		return Token{}, "", fmt.Errorf("auth: store token: %w", err)
	}
	return t, secret, nil
}

// Authenticate maps a presented secret to its principal.
func Authenticate(ctx context.Context, db *sql.DB, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 128 {
		return Principal{}, fmt.Errorf("%w: not a wanwu API token", ErrUnauthenticated)
	}
	h := Hash(secret)
	var p Principal
	var role string
	var stored []byte
	var revoked int64
	err := db.QueryRowContext(ctx, `SELECT id, name, role, tenant, hash, revoked_at FROM tokens WHERE hash = ?`, h).
		Scan(&p.ID, &p.Name, &role, &p.Tenant, &stored, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: %w", err)
	}
	// The lookup is by hash already; the constant-time compare keeps it honest if the query changes.
	if subtle.ConstantTimeCompare(stored, h) != 1 {
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if revoked != 0 {
		return Principal{}, fmt.Errorf("%w: token %q was revoked", ErrUnauthenticated, p.Name)
	}
	p.Role = Role(role)
	return p, nil
}

// List returns the tokens visible to a caller bound to tenant ("" = all).
func List(ctx context.Context, db *sql.DB, tenant string) ([]Token, error) {
	q := `SELECT id, name, role, tenant, created_at, revoked_at FROM tokens`
	var args []any
	if tenant != "" {
		q += ` WHERE tenant = ?`
		args = append(args, tenant)
	}
	q += ` ORDER BY created_at, name`
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("auth: list: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var role string
		var created, revoked int64
		if err := rows.Scan(&t.ID, &t.Name, &role, &t.Tenant, &created, &revoked); err != nil {
			return nil, fmt.Errorf("auth: list: %w", err)
		}
		t.Role, t.CreatedAt, t.Revoked = Role(role), time.UnixMilli(created).UTC(), revoked != 0
		out = append(out, t)
	}
	return out, rows.Err()
}

// Revoke marks a token revoked inside tx and returns it.
func Revoke(ctx context.Context, tx *sql.Tx, name string, now time.Time) (Token, error) {
	var t Token
	var role string
	var created, revoked int64
	err := tx.QueryRowContext(ctx, `SELECT id, name, role, tenant, created_at, revoked_at FROM tokens WHERE name = ?`, name).
		Scan(&t.ID, &t.Name, &role, &t.Tenant, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return Token{}, fmt.Errorf("auth: %w", err)
	}
	t.Role, t.CreatedAt, t.Revoked = Role(role), time.UnixMilli(created).UTC(), true
	if revoked == 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ?`, now.UnixMilli(), t.ID); err != nil {
			return Token{}, fmt.Errorf("auth: revoke: %w", err)
		}
	}
	return t, nil
}

// Count returns how many tokens exist (the hub creates the first admin when there are none).
func Count(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("auth: count: %w", err)
	}
	return n, nil
}
