package registry

import (
	"context"
	"errors"

	"github.com/wanwu-iot/wanwu/internal/auth"
)

// CreateToken creates an API token and records who created it. The secret is
// returned once. A replica creates and revokes tokens too: they are the
// node's own, for its own API, and no snapshot carries them.
func (r *Registry) CreateToken(ctx context.Context, actor, name string, role auth.Role, tenant string) (auth.Token, string, error) {
	var tok auth.Token
	var secret string
	err := r.commit(ctx, actor, func(c *change) error {
		if tenant != "" {
			if _, err := getTenant(ctx, c.tx, tenant); err != nil {
				return err
			}
		}
		var err error
		if tok, secret, err = auth.Create(ctx, c.tx, name, role, tenant, c.now); err != nil {
			return err
		}
		return c.log(KindTokenCreated, tenant, name, map[string]any{"id": tok.ID, "role": role})
	})
	return tok, secret, err
}

// RevokeToken revokes an API token by name; only tokens of tenant may be
// revoked when tenant is set.
func (r *Registry) RevokeToken(ctx context.Context, actor, name, tenant string) (auth.Token, error) {
	var tok auth.Token
	err := r.commit(ctx, actor, func(c *change) error {
		var err error
		if tok, err = auth.Revoke(ctx, c.tx, name, c.now); err != nil {
			return err
		}
		if tenant != "" && tok.Tenant != tenant {
			return auth.ErrNotFound
		}
		return c.log(KindTokenRevoked, tok.Tenant, name, map[string]any{"id": tok.ID})
	})
	return tok, err
}

// Tokens lists API tokens of tenant ("" = all).
func (r *Registry) Tokens(ctx context.Context, tenant string) ([]auth.Token, error) {
	return auth.List(ctx, r.db.R, tenant)
}

// Authenticate resolves an API token secret.
func (r *Registry) Authenticate(ctx context.Context, secret string) (auth.Principal, error) {
	return auth.Authenticate(ctx, r.db.R, secret)
}

// TokenCount reports how many tokens exist.
func (r *Registry) TokenCount(ctx context.Context) (int, error) { return auth.Count(ctx, r.db.W) }

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
