package registry

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// ModelInfo summarises a registered model version.
type ModelInfo struct {
	ID        string    `json:"id"`
	Version   string    `json:"version"`
	Title     string    `json:"title,omitempty"`
	Tenant    string    `json:"tenant"`
	CreatedAt time.Time `json:"created_at"`
}

// RegisterModel stores a model version. Versions are immutable: registering
// the same document again is a no-op (created=false), a different document
// under an existing id@version is a conflict. allow checks the tenant the
// model's id belongs to.
func (r *Registry) RegisterModel(ctx context.Context, actor string, doc []byte, allow func(tenant string) error) (*thingmodel.Model, bool, error) {
	m, err := thingmodel.Parse(doc)
	if err != nil {
		return nil, false, err
	}
	// A vendor mapping must compile now, not fail on every message later.
	if err := ingest.CheckMapping(m); err != nil {
		return nil, false, err
	}
	c, err := code.Parse(m.ID)
	if err != nil {
		return nil, false, invalidErr("id", err)
	}
	if allow != nil {
		if err := allow(c.Namespace); err != nil {
			return nil, false, err
		}
	}
	canon, err := m.JSON()
	if err != nil {
		return nil, false, fmt.Errorf("registry: model: %w", err)
	}
	created := false
	err = r.write(ctx, actor, func(ch *change) error {
		if _, err := getTenant(ctx, ch.tx, c.Namespace); err != nil {
			return fmt.Errorf("%w (the model id's namespace must be a tenant)", err)
		}
		var stored []byte
		err := ch.tx.QueryRowContext(ctx, `SELECT doc FROM models WHERE id = ? AND version = ?`, m.ID, m.Version).Scan(&stored)
		if err == nil {
			if bytes.Equal(stored, canon) {
				return nil
			}
			return fmt.Errorf("%w: model %s is registered with different content; versions are immutable, register a new version", ErrConflict, m.Key())
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("registry: model: %w", err)
		}
		if _, err := ch.tx.ExecContext(ctx, `INSERT INTO models(id, version, tenant, doc, created_at) VALUES (?,?,?,?,?)`,
			m.ID, m.Version, c.Namespace, canon, ch.now.UnixMilli()); err != nil {
			return fmt.Errorf("registry: insert model: %w", err)
		}
		created = true
		return ch.log(KindModelRegistered, c.Namespace, m.Key(), map[string]any{"title": m.Title, "sha256": sha256Hex(canon)})
	})
	if err != nil {
		return nil, false, err
	}
	return m, created, nil
}

// Model returns a model version; version "" or "latest" picks the highest.
func (r *Registry) Model(ctx context.Context, id, version string) (*thingmodel.Model, error) {
	return getModel(ctx, r.rd, id, version)
}

func getModel(ctx context.Context, q queryer, id, version string) (*thingmodel.Model, error) {
	if version == "" || version == "latest" {
		versions, err := modelVersions(ctx, q, id)
		if err != nil {
			return nil, err
		}
		if len(versions) == 0 {
			return nil, fmt.Errorf("%w: model %s", ErrNotFound, id)
		}
		version = versions[len(versions)-1]
	}
	var doc []byte
	err := q.QueryRowContext(ctx, `SELECT doc FROM models WHERE id = ? AND version = ?`, id, version).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: model %s@%s", ErrNotFound, id, version)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: model: %w", err)
	}
	m, err := thingmodel.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("registry: stored model %s@%s no longer parses: %w", id, version, err)
	}
	return m, nil
}

// modelVersion checks that a model version exists without decoding it and
// returns the version; "" or "latest" picks the highest.
func modelVersion(ctx context.Context, q queryer, id, version string) (string, error) {
	if version == "" || version == "latest" {
		versions, err := modelVersions(ctx, q, id)
		if err != nil {
			return "", err
		}
		if len(versions) == 0 {
			return "", fmt.Errorf("%w: model %s", ErrNotFound, id)
		}
		return versions[len(versions)-1], nil
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM models WHERE id = ? AND version = ?`, id, version).Scan(&n); err != nil {
		return "", fmt.Errorf("registry: model: %w", err)
	}
	if n == 0 {
		return "", fmt.Errorf("%w: model %s@%s", ErrNotFound, id, version)
	}
	return version, nil
}

// modelVersions returns the versions of a model in ascending semver order.
func modelVersions(ctx context.Context, q queryer, id string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT version FROM models WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("registry: model versions: %w", err)
	}
	defer rows.Close()
	var vs []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	sortSemver(vs)
	return vs, rows.Err()
}

// Models lists model versions visible to tenant ("" = all).
func (r *Registry) Models(ctx context.Context, tenant string) ([]ModelInfo, error) {
	q := `SELECT id, version, tenant, doc, created_at FROM models`
	var args []any
	if tenant != "" {
		q += ` WHERE tenant = ?`
		args = append(args, tenant)
	}
	rows, err := r.db.R.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: models: %w", err)
	}
	defer rows.Close()
	var out []ModelInfo
	for rows.Next() {
		var mi ModelInfo
		var doc []byte
		var created int64
		if err := rows.Scan(&mi.ID, &mi.Version, &mi.Tenant, &doc, &created); err != nil {
			return nil, err
		}
		mi.CreatedAt = time.UnixMilli(created).UTC()
		if m, err := thingmodel.Parse(doc); err == nil {
			mi.Title = m.Title
		}
		out = append(out, mi)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Group by id, versions ascending by semver.
	sortModelInfos(out)
	return out, nil
}

func sortModelInfos(ms []ModelInfo) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && lessModel(ms[j], ms[j-1]); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func lessModel(a, b ModelInfo) bool {
	if a.ID != b.ID {
		return a.ID < b.ID
	}
	return compareSemver(a.Version, b.Version) < 0
}

func sortSemver(vs []string) {
	for i := 1; i < len(vs); i++ {
		for j := i; j > 0 && compareSemver(vs[j], vs[j-1]) < 0; j-- {
			vs[j], vs[j-1] = vs[j-1], vs[j]
		}
	}
}

// compareSemver orders MAJOR.MINOR.PATCH[-pre] by Semantic Versioning 2.0.0
// §11: a pre-release sorts before its release, and pre-release identifiers
// compare numerically when both are numeric (beta.2 < beta.11), numeric
// before alphanumeric, otherwise in ASCII order, a shorter list first when
// one is a prefix of the other.
func compareSemver(a, b string) int {
	ac, apre, _ := strings.Cut(a, "-")
	bc, bpre, _ := strings.Cut(b, "-")
	ap, bp := strings.Split(ac, "."), strings.Split(bc, ".")
	for i := 0; i < 3; i++ {
		var x, y int
		if i < len(ap) {
			x, _ = strconv.Atoi(ap[i])
		}
		if i < len(bp) {
			y, _ = strconv.Atoi(bp[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case apre == bpre:
		return 0
	case apre == "":
		return 1
	case bpre == "":
		return -1
	}
	as, bs := strings.Split(apre, "."), strings.Split(bpre, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := comparePreID(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(as), len(bs))
}

func comparePreID(a, b string) int {
	an, aerr := strconv.ParseUint(a, 10, 64)
	bn, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		return cmp.Compare(an, bn)
	case aerr == nil:
		return -1
	case berr == nil:
		return 1
	}
	return strings.Compare(a, b)
}
