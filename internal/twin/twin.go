package twin

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/store"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Errors returned by the service; API handlers map them to HTTP statuses
// (404, 409, 413, 400).
var (
	// ErrNotFound: Options.Model says the device does not exist.
	ErrNotFound = errors.New("twin: no such device")
	// ErrConflict: SetDesired's ifVersion is not the current version; the
	// error is a *ConflictError carrying the current one.
	ErrConflict = errors.New("twin: version conflict")
	// ErrTooLarge: a patch or a merged section exceeds Limits.MaxDocBytes;
	// the message names the limit and the size.
	ErrTooLarge = errors.New("twin: document too large")
	// ErrInvalid: the patch is not a JSON object, nests too deeply, or sets
	// a property the model does not declare, a read-only property (desired),
	// or a value outside its schema (a *FieldError names it), or the code
	// is malformed.
	ErrInvalid = errors.New("twin: invalid document")
)

// ConflictError refuses a SetDesired whose ifVersion is stale.
type ConflictError struct {
	Current   int64 // the twin's desired version now
	IfVersion int64 // the version the update expected
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: the update expected desired version %d, the current version is %d",
		ErrConflict, e.IfVersion, e.Current)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Limits bound a twin's sections.
type Limits struct {
	// MaxDocBytes bounds each section (desired, reported) as compact JSON
	// after the merge; a patch may be up to 4 × this as sent. Default 8192.
	MaxDocBytes int
	// MaxDepth bounds how deeply a section or a patch nests objects and
	// arrays; the section object itself is level 1. Default 8.
	MaxDepth int
}

// Default limits.
const (
	DefaultMaxDocBytes = 8192
	DefaultMaxDepth    = 8
)

// Change says what a committed write changed; Options.OnChange receives it.
type Change struct {
	Code, Tenant    string
	Desired         bool  // the desired section changed (else reported did)
	Version         int64 // desired version after the change
	ReportedVersion int64 // reported version after the change
}

// Options configure a Service.
type Options struct {
	DB *store.DB
	// Audit receives a "twin.desired" entry (subject: the device code; data:
	// version, previous version, the patch's SHA-256 and its top-level
	// member names) in the transaction of every desired change. Reports are
	// not audited.
	Audit *audit.Log
	// OnAudit, when set, is called after a commit that appended an audit entry.
	OnAudit func()
	// Model returns the thing model of a device: (nil, nil) means the device
	// has none and patches are not checked against a schema; an error
	// wrapping ErrNotFound means there is no such device. Nil: no checks.
	Model func(ctx context.Context, code string) (*thingmodel.Model, error)
	// Now is the clock (tests move it).
	Now func() time.Time
	// OnChange, when set, is called after every commit that changed a twin,
	// in the writer's goroutine and never under a lock of this package.
	OnChange func(Change)
	Limits   Limits
}

// FieldMeta says when a leaf of a section last changed, and at which version
// of that section.
type FieldMeta struct {
	Updated time.Time `json:"updated"`
	Version int64     `json:"version"`
}

// Metadata holds FieldMeta per leaf, keyed by dotted path ("config.limits.rpm").
type Metadata struct {
	Desired  map[string]FieldMeta `json:"desired"`
	Reported map[string]FieldMeta `json:"reported"`
}

// Twin is one device's twin. Maps are never nil in what the Service returns.
type Twin struct {
	Code     string         `json:"code"`
	Tenant   string         `json:"tenant"`
	Desired  map[string]any `json:"desired"`
	Reported map[string]any `json:"reported"`
	// Version counts desired changes; 0 = never set.
	Version int64 `json:"version"`
	// ReportedVersion counts reports that changed reported; 0 = never reported.
	ReportedVersion int64     `json:"reported_version"`
	Metadata        Metadata  `json:"metadata"`
	UpdatedAt       time.Time `json:"updated_at"` // last change of either section; zero if never written
}

// Delta returns the desired leaves whose value differs from reported,
// recursing into objects present in both (numbers compare by value); an
// empty map if reported matches everything desired. It shares nothing with t.
func (t *Twin) Delta() map[string]any {
	return delta(t.Desired, t.Reported)
}

// Service stores and updates twins.
type Service struct {
	opts Options
	db   *store.DB
}

// migrations are the package's schema steps in the metadata database,
// oldest first (store.Migrate); append, never edit a released step.
var migrations = []store.Migration{
	{
		// Releases before schema versions ran these statements at every open;
		// being IF NOT EXISTS, they adopt such a database as it is.
		Name:       "twins",
		Statements: schemaV1,
	},
}

// schemaV1 holds the package's tables. desired and reported are compact JSON
// objects (json_extract works on them); the meta columns map dotted leaf
// paths to FieldMeta; updated_at is Unix ms.
var schemaV1 = []string{
	`CREATE TABLE IF NOT EXISTS twins (
		code             TEXT PRIMARY KEY,
		tenant           TEXT NOT NULL,
		desired          TEXT NOT NULL DEFAULT '{}',
		reported         TEXT NOT NULL DEFAULT '{}',
		desired_meta     TEXT NOT NULL DEFAULT '{}',
		reported_meta    TEXT NOT NULL DEFAULT '{}',
		version          INTEGER NOT NULL DEFAULT 0,
		reported_version INTEGER NOT NULL DEFAULT 0,
		updated_at       INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS twins_by_tenant ON twins(tenant)`,
}

// Open checks the options, brings the twins table to its schema version and returns
// the service.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("twin: DB and Audit are required")
	}
	if o.Limits.MaxDocBytes < 0 || o.Limits.MaxDepth < 0 {
		return nil, errors.New("twin: limits must not be negative")
	}
	if o.Limits.MaxDocBytes == 0 {
		o.Limits.MaxDocBytes = DefaultMaxDocBytes
	}
	if o.Limits.MaxDepth == 0 {
		o.Limits.MaxDepth = DefaultMaxDepth
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "twin", migrations); err != nil {
		return nil, fmt.Errorf("twin: %w", err)
	}
	return &Service{opts: o, db: o.DB}, nil
}

// Limits returns the limits in force (defaults filled in).
func (s *Service) Limits() Limits { return s.opts.Limits }

func (s *Service) now() time.Time { return s.opts.Now().UTC().Truncate(time.Millisecond) }

// parseCode checks the code's grammar and returns its tenant.
func parseCode(c string) (string, error) {
	pc, err := code.Parse(c)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return pc.Namespace, nil
}

// model looks the device up; a nil model means no schema checks.
func (s *Service) model(ctx context.Context, c string) (*thingmodel.Model, error) {
	if s.opts.Model == nil {
		return nil, nil
	}
	m, err := s.opts.Model(ctx, c)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, c)
		}
		return nil, fmt.Errorf("twin: %s: model: %w", c, err)
	}
	return m, nil
}

func emptyTwin(c, tenant string) *Twin {
	return &Twin{
		Code: c, Tenant: tenant,
		Desired: map[string]any{}, Reported: map[string]any{},
		Metadata: Metadata{Desired: map[string]FieldMeta{}, Reported: map[string]FieldMeta{}},
	}
}

const selectTwin = `SELECT code, tenant, desired, reported, desired_meta, reported_meta,
	version, reported_version, updated_at FROM twins`

type scanner interface{ Scan(dest ...any) error }

func scanTwin(r scanner) (*Twin, error) {
	var (
		t                      Twin
		des, rep, dmeta, rmeta string
		updated                int64
	)
	if err := r.Scan(&t.Code, &t.Tenant, &des, &rep, &dmeta, &rmeta, &t.Version, &t.ReportedVersion, &updated); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		raw string
		dst any
	}{{des, &t.Desired}, {rep, &t.Reported}, {dmeta, &t.Metadata.Desired}, {rmeta, &t.Metadata.Reported}} {
		if err := json.Unmarshal([]byte(f.raw), f.dst); err != nil {
			return nil, fmt.Errorf("twin: %s: stored document: %w", t.Code, err)
		}
	}
	if t.Desired == nil {
		t.Desired = map[string]any{}
	}
	if t.Reported == nil {
		t.Reported = map[string]any{}
	}
	if t.Metadata.Desired == nil {
		t.Metadata.Desired = map[string]FieldMeta{}
	}
	if t.Metadata.Reported == nil {
		t.Metadata.Reported = map[string]FieldMeta{}
	}
	if updated != 0 {
		t.UpdatedAt = time.UnixMilli(updated).UTC()
	}
	return &t, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// load reads one twin; a device without a row gets an empty twin.
func load(ctx context.Context, q querier, c, tenant string) (*Twin, error) {
	t, err := scanTwin(q.QueryRowContext(ctx, selectTwin+` WHERE code = ?`, c))
	if errors.Is(err, sql.ErrNoRows) {
		return emptyTwin(c, tenant), nil
	}
	if err != nil {
		return nil, fmt.Errorf("twin: read %s: %w", c, err)
	}
	return t, nil
}

// Get returns a device's twin; a device whose twin was never written gets an
// empty one with versions 0. The device must exist for Options.Model.
func (s *Service) Get(ctx context.Context, c string) (*Twin, error) {
	tenant, err := parseCode(c)
	if err != nil {
		return nil, err
	}
	if _, err := s.model(ctx, c); err != nil {
		return nil, err
	}
	return load(ctx, s.db.R, c, tenant)
}

// listChunk bounds the codes per query (SQLite's variable limit is far above).
const listChunk = 500

// List returns the twins of codes, in that order; codes without a stored
// twin get empty twins. It does not consult Options.Model: callers list codes
// they took from the registry.
func (s *Service) List(ctx context.Context, codes []string) ([]*Twin, error) {
	tenants := make([]string, len(codes))
	for i, c := range codes {
		t, err := parseCode(c)
		if err != nil {
			return nil, err
		}
		tenants[i] = t
	}
	found := make(map[string]*Twin, len(codes))
	for start := 0; start < len(codes); start += listChunk {
		chunk := codes[start:min(start+listChunk, len(codes))]
		args := make([]any, len(chunk))
		for i, c := range chunk {
			args[i] = c
		}
		q := selectTwin + ` WHERE code IN (?` + strings.Repeat(`,?`, len(chunk)-1) + `)`
		rows, err := s.db.R.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("twin: list: %w", err)
		}
		for rows.Next() {
			t, err := scanTwin(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("twin: list: %w", err)
			}
			found[t.Code] = t
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("twin: list: %w", err)
		}
	}
	out := make([]*Twin, len(codes))
	handed := make(map[string]bool, len(found))
	for i, c := range codes {
		t, ok := found[c]
		switch {
		case !ok:
			t = emptyTwin(c, tenants[i])
		case handed[c]: // a repeated code gets its own copy
			t = copyTwin(t)
		}
		handed[c] = true
		out[i] = t
	}
	return out, nil
}

// copyTwin deep-copies a twin.
func copyTwin(t *Twin) *Twin {
	c := *t
	c.Desired = clone(t.Desired).(map[string]any)
	c.Reported = clone(t.Reported).(map[string]any)
	c.Metadata.Desired = maps.Clone(t.Metadata.Desired)
	c.Metadata.Reported = maps.Clone(t.Metadata.Reported)
	return &c
}

// Report merges a device's RFC 7386 patch into the reported section. With a
// model, every member it sets must be a declared property with a fitting
// value. A patch that changes nothing returns the twin without writing.
func (s *Service) Report(ctx context.Context, c string, patch []byte) (*Twin, error) {
	return s.update(ctx, "", c, false, patch, -1)
}

// SetDesired merges an operator's RFC 7386 patch into the desired section.
// ifVersion ≥ 0 must equal the current Version, otherwise the update fails
// with a *ConflictError; -1 applies it unconditionally. With a model, every
// member it sets must be a declared, writable property with a fitting value.
// A change bumps Version and appends a "twin.desired" audit entry in the same
// transaction; a patch that changes nothing returns the twin without writing.
func (s *Service) SetDesired(ctx context.Context, actor, c string, patch []byte, ifVersion int64) (*Twin, error) {
	if actor == "" {
		return nil, errors.New("twin: a desired change needs an actor")
	}
	if ifVersion < -1 {
		return nil, fmt.Errorf("%w: ifVersion %d: must be -1 (unconditional) or a version ≥ 0", ErrInvalid, ifVersion)
	}
	return s.update(ctx, actor, c, true, patch, ifVersion)
}

// update is the one write path: parse and look up outside the transaction,
// then read, check, merge, validate and write inside it.
func (s *Service) update(ctx context.Context, actor, c string, desired bool, patch []byte, ifVersion int64) (*Twin, error) {
	section := "reported"
	if desired {
		section = "desired"
	}
	tenant, err := parseCode(c)
	if err != nil {
		return nil, err
	}
	lim := s.opts.Limits
	parsed, err := parsePatch(patch, lim)
	if err != nil {
		return nil, err
	}
	m, err := s.model(ctx, c)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var (
		tw      *Twin
		changed bool
	)
	// Concurrent updates share a commit (store.SharedTx).
	err = s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		changed = false
		var err error
		if tw, err = load(ctx, tx, c, tenant); err != nil {
			return err
		}
		if desired && ifVersion >= 0 && ifVersion != tw.Version {
			return &ConflictError{Current: tw.Version, IfVersion: ifVersion}
		}
		cur := tw.Reported
		if desired {
			cur = tw.Desired
		}
		merged := mergePatch(cur, parsed).(map[string]any)
		stored, err := checkSection(section, merged, lim)
		if err != nil {
			return err
		}
		if m != nil {
			if err := validate(m, section, desired, parsed, merged); err != nil {
				return err
			}
		}
		if equal(cur, merged) {
			return nil
		}
		changed = true
		tw.UpdatedAt = now
		if desired {
			tw.Version++
			tw.Metadata.Desired = updateMeta(cur, merged, tw.Metadata.Desired, now, tw.Version)
			tw.Desired = merged
		} else {
			tw.ReportedVersion++
			tw.Metadata.Reported = updateMeta(cur, merged, tw.Metadata.Reported, now, tw.ReportedVersion)
			tw.Reported = merged
		}
		if err := s.store(ctx, tx, tw, desired, stored); err != nil {
			return err
		}
		if desired {
			return s.audit(ctx, tx, actor, tw, parsed, now)
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if changed {
		if desired && s.opts.OnAudit != nil {
			s.opts.OnAudit()
		}
		if s.opts.OnChange != nil {
			s.opts.OnChange(Change{Code: tw.Code, Tenant: tw.Tenant, Desired: desired,
				Version: tw.Version, ReportedVersion: tw.ReportedVersion})
		}
	}
	return tw, nil
}

// store writes the whole row; stored is the changed section's compact form.
func (s *Service) store(ctx context.Context, tx *sql.Tx, tw *Twin, desired bool, stored []byte) error {
	var des, rep []byte
	var err error
	if desired {
		des = stored
		rep, err = compact(tw.Reported)
	} else {
		rep = stored
		des, err = compact(tw.Desired)
	}
	if err != nil {
		return fmt.Errorf("twin: encode %s: %w", tw.Code, err)
	}
	dmeta, err := json.Marshal(tw.Metadata.Desired)
	if err != nil {
		return fmt.Errorf("twin: encode %s: %w", tw.Code, err)
	}
	rmeta, err := json.Marshal(tw.Metadata.Reported)
	if err != nil {
		return fmt.Errorf("twin: encode %s: %w", tw.Code, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO twins (code, tenant, desired, reported, desired_meta, reported_meta,
			version, reported_version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (code) DO UPDATE SET desired = excluded.desired, reported = excluded.reported,
			desired_meta = excluded.desired_meta, reported_meta = excluded.reported_meta,
			version = excluded.version, reported_version = excluded.reported_version,
			updated_at = excluded.updated_at`,
		tw.Code, tw.Tenant, string(des), string(rep), string(dmeta), string(rmeta),
		tw.Version, tw.ReportedVersion, tw.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("twin: write %s: %w", tw.Code, err)
	}
	return nil
}

// Forget deletes a device's twin: its code was released (decommissioned
// with release, or deleted), and an object registered under it later
// starts with none.
func (s *Service) Forget(ctx context.Context, code string) error {
	if _, err := s.opts.DB.W.ExecContext(ctx, `DELETE FROM twins WHERE code = ?`, code); err != nil {
		return fmt.Errorf("twin: forget %s: %w", code, err)
	}
	return nil
}

// audit appends the "twin.desired" entry in the change's transaction.
func (s *Service) audit(ctx context.Context, tx *sql.Tx, actor string, tw *Twin, patch map[string]any, now time.Time) error {
	canon, err := compact(patch)
	if err != nil {
		return fmt.Errorf("twin: audit: %w", err)
	}
	sum := sha256.Sum256(canon)
	data, err := json.Marshal(map[string]any{
		"version":      tw.Version,
		"prev_version": tw.Version - 1,
		"patch_sha256": hex.EncodeToString(sum[:]),
		"keys":         sortedKeys(patch),
	})
	if err != nil {
		return fmt.Errorf("twin: audit: %w", err)
	}
	e := audit.Entry{Time: now, Actor: actor, Tenant: tw.Tenant, Kind: "twin.desired", Subject: tw.Code, Data: data}
	if _, err := s.opts.Audit.AppendTx(ctx, tx, e); err != nil {
		return fmt.Errorf("twin: audit twin.desired: %w", err)
	}
	return nil
}
