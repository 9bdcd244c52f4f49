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

// SharedNamespace is the namespace of the deployment's standard models
// ("std:pump"): only an admin registers them, and every tenant's objects may
// use them. No tenant may be called so (CreateTenant refuses it), so a
// model id's namespace always says whose the model is.
const SharedNamespace = "std"

// ModelInfo summarises a registered model version.
type ModelInfo struct {
	ID        string    `json:"id"`
	Version   string    `json:"version"`
	Title     string    `json:"title,omitempty"`
	Tenant    string    `json:"tenant"`
	Shared    bool      `json:"shared,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// Deprecated versions are refused for new registrations, imports,
	// claims and model upgrades; objects already on them keep working.
	Deprecated       bool       `json:"deprecated,omitempty"`
	DeprecatedAt     *time.Time `json:"deprecated_at,omitempty"`
	DeprecatedReason string     `json:"deprecated_reason,omitempty"`
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
		if c.Namespace != SharedNamespace {
			if _, err := getTenant(ctx, ch.tx, c.Namespace); err != nil {
				return fmt.Errorf("%w (the model id's namespace must be a tenant, or %s for a shared model)", err, SharedNamespace)
			}
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
		return ch.log(KindModelRegistered, auditTenant(c.Namespace), m.Key(), map[string]any{"title": m.Title, "sha256": sha256Hex(canon)})
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

// Models lists model versions visible to tenant ("" = all): its own and the
// shared ones.
func (r *Registry) Models(ctx context.Context, tenant string) ([]ModelInfo, error) {
	q := `SELECT id, version, tenant, doc, created_at, deprecated_at, deprecated_reason FROM models`
	var args []any
	if tenant != "" {
		q += ` WHERE tenant = ? OR tenant = ?`
		args = append(args, tenant, SharedNamespace)
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
		var created, deprecated int64
		if err := rows.Scan(&mi.ID, &mi.Version, &mi.Tenant, &doc, &created, &deprecated, &mi.DeprecatedReason); err != nil {
			return nil, err
		}
		mi.CreatedAt = time.UnixMilli(created).UTC()
		mi.Shared = mi.Tenant == SharedNamespace
		if deprecated != 0 {
			at := time.UnixMilli(deprecated).UTC()
			mi.Deprecated, mi.DeprecatedAt = true, &at
		}
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

// auditTenant is the tenant an audit entry about namespace ns belongs to:
// none for the shared namespace (deployment-wide entries).
func auditTenant(ns string) string {
	if ns == SharedNamespace {
		return ""
	}
	return ns
}

// DeprecateModel marks a model version deprecated: it stays readable and
// objects on it keep working, but new registrations, imports, claims and
// model upgrades refuse it. allow checks the tenant the model belongs to
// (SharedNamespace for a shared one). Deprecating is final.
func (r *Registry) DeprecateModel(ctx context.Context, actor, id, version, reason string, allow func(tenant string) error) (*ModelInfo, error) {
	c, err := code.Parse(id)
	if err != nil {
		return nil, invalidErr("id", err)
	}
	if version == "" || version == "latest" {
		return nil, invalid("version", "name the version to deprecate")
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, invalid("reason", "say why the version is deprecated (users see it when it is refused)")
	}
	if len(reason) > 500 {
		return nil, invalid("reason", "at most 500 characters")
	}
	if allow != nil {
		if err := allow(c.Namespace); err != nil {
			return nil, err
		}
	}
	err = r.write(ctx, actor, func(ch *change) error {
		var deprecated int64
		err := ch.tx.QueryRowContext(ctx, `SELECT deprecated_at FROM models WHERE id = ? AND version = ?`, id, version).Scan(&deprecated)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: model %s@%s", ErrNotFound, id, version)
		}
		if err != nil {
			return fmt.Errorf("registry: deprecate: %w", err)
		}
		if deprecated != 0 {
			return fmt.Errorf("%w: model %s@%s is already deprecated", ErrConflict, id, version)
		}
		if _, err := ch.tx.ExecContext(ctx, `UPDATE models SET deprecated_at = ?, deprecated_reason = ? WHERE id = ? AND version = ?`,
			ch.now.UnixMilli(), reason, id, version); err != nil {
			return fmt.Errorf("registry: deprecate: %w", err)
		}
		var inUse int
		if err := ch.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM objects WHERE model_id = ? AND model_version = ? AND status NOT IN ('decommissioned', 'deleted')`,
			id, version).Scan(&inUse); err != nil {
			return fmt.Errorf("registry: deprecate: %w", err)
		}
		return ch.log(KindModelDeprecated, auditTenant(c.Namespace), id+"@"+version, map[string]any{"reason": reason, "objects_on_it": inUse})
	})
	if err != nil {
		return nil, err
	}
	ms, err := r.Models(ctx, "")
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].ID == id && ms[i].Version == version {
			return &ms[i], nil
		}
	}
	return nil, fmt.Errorf("%w: model %s@%s", ErrNotFound, id, version)
}

// usableModel checks that an object of tenant may take the model ref on a
// new registration, import, claim or model upgrade, and returns it with
// "latest" (or no version) pinned to the highest version not deprecated.
// The model must be the tenant's own or a shared one, and not deprecated.
func usableModel(ctx context.Context, q queryer, ref ModelRef, tenant string) (ModelRef, error) {
	if ref.ID == "" {
		return ref, invalid("model", "needs an id")
	}
	mc, err := code.Parse(ref.ID)
	if err != nil {
		return ref, invalidErr("model", err)
	}
	if mc.Namespace != tenant && mc.Namespace != SharedNamespace {
		return ref, invalid("model", "model %s belongs to another tenant (objects may use their tenant's models and the shared %s: models)", ref.ID, SharedNamespace)
	}
	rows, err := q.QueryContext(ctx, `SELECT version, deprecated_at, deprecated_reason FROM models WHERE id = ?`, ref.ID)
	if err != nil {
		return ref, fmt.Errorf("registry: model: %w", err)
	}
	type ver struct {
		deprecated bool
		reason     string
	}
	vers := map[string]ver{}
	var all []string
	for rows.Next() {
		var v string
		var at int64
		var reason string
		if err := rows.Scan(&v, &at, &reason); err != nil {
			rows.Close()
			return ref, fmt.Errorf("registry: model: %w", err)
		}
		vers[v] = ver{at != 0, reason}
		all = append(all, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return ref, fmt.Errorf("registry: model: %w", err)
	}
	sortSemver(all)
	newest := "" // the highest version not deprecated
	for _, v := range all {
		if !vers[v].deprecated {
			newest = v
		}
	}
	if ref.Version == "" || ref.Version == "latest" {
		if len(all) == 0 {
			return ref, fmt.Errorf("model: %w: model %s", ErrNotFound, ref.ID)
		}
		if newest == "" {
			return ref, invalid("model", "every version of %s is deprecated", ref.ID)
		}
		return ModelRef{ID: ref.ID, Version: newest}, nil
	}
	v, ok := vers[ref.Version]
	if !ok {
		return ref, fmt.Errorf("model: %w: model %s@%s", ErrNotFound, ref.ID, ref.Version)
	}
	if v.deprecated {
		msg := fmt.Sprintf("%s@%s is deprecated (%s)", ref.ID, ref.Version, v.reason)
		if newest != "" && compareSemver(newest, ref.Version) > 0 {
			msg += fmt.Sprintf("; use %s@%s", ref.ID, newest)
		} else {
			msg += "; no newer version is registered"
		}
		return ref, &FieldError{Field: "model", Reason: msg}
	}
	return ref, nil
}
