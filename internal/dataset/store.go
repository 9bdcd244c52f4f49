package dataset

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Audit entry kinds.
const (
	KindLabeled = "dataset.labeled" // subject: the window id
	KindBuilt   = "dataset.built"   // subject: "<name>@<version>"
)

// maxActorLen bounds an actor's name (the audit log's field limit is
// larger).
const maxActorLen = 256

var migrations = []store.Migration{{
	Name: "dataset windows, labels and versions",
	Statements: []string{
		`CREATE TABLE dataset_windows (
			tenant          TEXT NOT NULL,
			id              TEXT NOT NULL,     -- "w-" and 16 hex digits of content_sha256
			object          TEXT NOT NULL,
			model           TEXT NOT NULL,
			firmware        TEXT NOT NULL,
			edge            TEXT NOT NULL,
			reason          TEXT NOT NULL,
			ref             TEXT NOT NULL,
			loop            TEXT NOT NULL,
			from_ms         INTEGER NOT NULL,
			to_ms           INTEGER NOT NULL,
			captured_ms     INTEGER NOT NULL,
			classification  TEXT NOT NULL,
			points          INTEGER NOT NULL,  -- over all series
			points_present  INTEGER NOT NULL,  -- completeness (package doc)
			points_expected INTEGER NOT NULL,
			series_sha256   TEXT NOT NULL,     -- hex, of the series alone; '' without one
			content_sha256  TEXT NOT NULL,     -- hex, of the canonical content
			summary         TEXT NOT NULL,     -- JSON
			features        TEXT NOT NULL,     -- JSON
			series          TEXT NOT NULL,     -- JSON
			PRIMARY KEY (tenant, id)
		)`,
		`CREATE INDEX dataset_windows_object ON dataset_windows (tenant, object)`,
		// A label is never changed: relabelling adds a row and points the
		// old one at it (replaced_by), so that a built version, which holds
		// label ids, keeps the labels it was built with.
		`CREATE TABLE dataset_labels (
			id          INTEGER PRIMARY KEY,
			tenant      TEXT NOT NULL,
			window_id   TEXT NOT NULL,
			actor       TEXT NOT NULL,
			kind        TEXT NOT NULL,
			class       TEXT NOT NULL,
			note        TEXT NOT NULL,
			at_ms       INTEGER NOT NULL,
			replaced_by INTEGER NOT NULL DEFAULT 0  -- 0: current
		)`,
		`CREATE INDEX dataset_labels_window ON dataset_labels (tenant, window_id, replaced_by)`,
		`CREATE TABLE dataset_versions (
			tenant         TEXT NOT NULL,
			name           TEXT NOT NULL,
			version        INTEGER NOT NULL,
			actor          TEXT NOT NULL,
			created_at     INTEGER NOT NULL,  -- unix ms
			content_sha256 TEXT NOT NULL,
			manifest       TEXT NOT NULL,     -- JSON, without files
			PRIMARY KEY (tenant, name, version)
		)`,
		`CREATE TABLE dataset_version_windows (
			tenant    TEXT NOT NULL,
			name      TEXT NOT NULL,
			version   INTEGER NOT NULL,
			window_id TEXT NOT NULL,
			PRIMARY KEY (tenant, name, version, window_id)
		)`,
		`CREATE TABLE dataset_version_labels (
			tenant   TEXT NOT NULL,
			name     TEXT NOT NULL,
			version  INTEGER NOT NULL,
			label_id INTEGER NOT NULL,
			PRIMARY KEY (tenant, name, version, label_id)
		)`,
	},
}}

// Options open a Store.
type Options struct {
	DB    *store.DB
	Audit *audit.Log
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnAudit is called after a commit that appended to the audit log.
	OnAudit func()
}

// Store keeps windows, labels and dataset versions in the metadata
// database.
type Store struct {
	db      *store.DB
	audit   *audit.Log
	now     func() time.Time
	onAudit func()
}

// Open migrates the tables and returns the store.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("dataset: DB and Audit are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "dataset", migrations); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	return &Store{db: o.DB, audit: o.Audit, now: o.Now, onAudit: o.OnAudit}, nil
}

func (s *Store) audited() {
	if s.onAudit != nil {
		s.onAudit()
	}
}

// AddWindow validates w, computes its summaries and stores it under the id
// of its content, which it returns as stored (with its series). Storing the
// same content again changes nothing and returns the stored window (its
// first capture time). Refusals wrap ErrInvalid; ErrConflict is the
// (astronomically unlikely) other content under the same id.
func (s *Store) AddWindow(ctx context.Context, w *Window) (*Window, error) {
	if w == nil {
		return nil, invalid("window", "none")
	}
	c := w.clone()
	if err := normalize(c, true); err != nil {
		return nil, err
	}
	if c.CapturedAt.IsZero() {
		c.CapturedAt = msUTC(s.now())
	}
	content, seriesSum, err := digests(c)
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	c.ID = windowID(content)
	present, expected := completeness(c)
	summary, err := json.Marshal(orEmpty(c.Summary))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	features, err := json.Marshal(orEmpty(c.Features))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	series, err := json.Marshal(orEmpty(c.Series))
	if err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	points := 0
	for _, pts := range c.Series {
		points += len(pts)
	}
	err = s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var stored string
		var captured int64
		err := tx.QueryRowContext(ctx, `SELECT content_sha256, captured_ms FROM dataset_windows WHERE tenant = ? AND id = ?`,
			c.Tenant, c.ID).Scan(&stored, &captured)
		switch {
		case err == nil:
			if stored != content {
				return fmt.Errorf("%w: window %s is stored with other content (digest %s, this one %s)", ErrConflict, c.ID, stored, content)
			}
			c.CapturedAt = time.UnixMilli(captured).UTC()
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO dataset_windows (tenant, id, object, model, firmware, edge, reason, ref, loop,
			from_ms, to_ms, captured_ms, classification, points, points_present, points_expected, series_sha256, content_sha256,
			summary, features, series) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			c.Tenant, c.ID, c.Object, c.Model, c.Firmware, c.Edge, c.Reason, c.Ref, c.Loop,
			c.From.UnixMilli(), c.To.UnixMilli(), c.CapturedAt.UnixMilli(), c.Classification, points, present, expected,
			seriesSum, content, string(summary), string(features), string(series))
		return err
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("dataset: add window %s/%s: %w", c.Tenant, c.ID, err)
	}
	return c, nil
}

func orEmpty[M ~map[K]V, K comparable, V any](m M) M {
	if m == nil {
		return M{}
	}
	return m
}

const windowColumns = `w.tenant, w.id, w.object, w.model, w.firmware, w.edge, w.reason, w.ref, w.loop,
	w.from_ms, w.to_ms, w.captured_ms, w.classification, w.series_sha256 <> '', w.summary, w.features`

func scanWindow(row interface{ Scan(...any) error }, withSeries bool) (*Window, error) {
	var w Window
	var from, to, captured int64
	var summary, features, series string
	dest := []any{&w.Tenant, &w.ID, &w.Object, &w.Model, &w.Firmware, &w.Edge, &w.Reason, &w.Ref, &w.Loop,
		&from, &to, &captured, &w.Classification, &w.Raw, &summary, &features}
	if withSeries {
		dest = append(dest, &series)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	w.From, w.To, w.CapturedAt = time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC(), time.UnixMilli(captured).UTC()
	if err := json.Unmarshal([]byte(summary), &w.Summary); err != nil {
		return nil, fmt.Errorf("window %s: summary: %w", w.ID, err)
	}
	if err := json.Unmarshal([]byte(features), &w.Features); err != nil {
		return nil, fmt.Errorf("window %s: features: %w", w.ID, err)
	}
	if withSeries {
		if err := json.Unmarshal([]byte(series), &w.Series); err != nil {
			return nil, fmt.Errorf("window %s: series: %w", w.ID, err)
		}
	}
	if len(w.Summary) == 0 {
		w.Summary = nil
	}
	if len(w.Features) == 0 {
		w.Features = nil
	}
	if len(w.Series) == 0 {
		w.Series = nil
	}
	return &w, nil
}

// where returns the SQL condition on dataset_windows w (and its
// arguments) that q selects in tenant; Limit is the caller's.
func where(tenant string, q Query) (string, []any) {
	conds := []string{"w.tenant = ?"}
	args := []any{tenant}
	for _, f := range []struct{ col, v string }{
		{"w.object", q.Object}, {"w.reason", q.Reason}, {"w.loop", q.Loop}, {"w.model", q.Model},
	} {
		if f.v != "" {
			conds = append(conds, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	if !q.Since.IsZero() {
		conds = append(conds, "w.to_ms >= ?")
		args = append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		conds = append(conds, "w.from_ms <= ?")
		args = append(args, q.Until.UnixMilli())
	}
	if q.Unlabelled {
		conds = append(conds, `NOT EXISTS (SELECT 1 FROM dataset_labels l
			WHERE l.tenant = w.tenant AND l.window_id = w.id AND l.replaced_by = 0)`)
	}
	if q.After != "" {
		conds = append(conds, "w.id > ?")
		args = append(args, q.After)
	}
	return strings.Join(conds, " AND "), args
}

// checkQuery validates q's fields for tenant (q.Tenant "" or tenant).
func checkQuery(tenant string, q Query, maxLimit int) error {
	if err := code.ValidNamespace(tenant); err != nil {
		return invalid("tenant", "%v", err)
	}
	if q.Tenant != "" && q.Tenant != tenant {
		return invalid("query.tenant", "%q is not the tenant %q", truncate(q.Tenant), tenant)
	}
	switch q.Reason {
	case "", ReasonAlarm, ReasonDecision, ReasonRequest:
	default:
		return invalid("query.reason", "%q is not one of alarm, decision, request", truncate(q.Reason))
	}
	if q.Limit < 0 || q.Limit > maxLimit {
		return invalid("query.limit", "%d is not in [0, %d]", q.Limit, maxLimit)
	}
	return nil
}

// Windows returns the windows q selects in q.Tenant, in id order, at most
// q.Limit (DefaultLimit when 0); with their series when q.WithSeries (then
// at most MaxSeriesLimit, the default too).
func (s *Store) Windows(ctx context.Context, q Query) ([]*Window, error) {
	maxLimit, limit := MaxLimit, DefaultLimit
	if q.WithSeries {
		maxLimit, limit = MaxSeriesLimit, MaxSeriesLimit
	}
	if err := checkQuery(q.Tenant, q, maxLimit); err != nil {
		return nil, err
	}
	if q.Limit > 0 {
		limit = q.Limit
	}
	cond, args := where(q.Tenant, q)
	cols := windowColumns
	if q.WithSeries {
		cols += ", w.series"
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+cols+` FROM dataset_windows w WHERE `+cond+` ORDER BY w.id LIMIT ?`,
		append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("dataset: windows: %w", err)
	}
	defer rows.Close()
	out := []*Window{}
	for rows.Next() {
		w, err := scanWindow(rows, q.WithSeries)
		if err != nil {
			return nil, fmt.Errorf("dataset: windows: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dataset: windows: %w", err)
	}
	return out, nil
}

// Window returns a window with its series.
func (s *Store) Window(ctx context.Context, tenant, id string) (*Window, error) {
	w, err := scanWindow(s.db.R.QueryRowContext(ctx, `SELECT `+windowColumns+`, w.series FROM dataset_windows w
		WHERE w.tenant = ? AND w.id = ?`, tenant, id), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("dataset: window %s/%s: %w", tenant, truncate(id), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: window %s/%s: %w", tenant, truncate(id), err)
	}
	return w, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func windowExists(ctx context.Context, q queryer, tenant, id string) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM dataset_windows WHERE tenant = ? AND id = ?`, tenant, id).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("window %s/%s: %w", tenant, truncate(id), ErrNotFound)
	}
	return nil
}

// AddLabel stores actor's label of a window of the tenant (ErrNotFound when
// the tenant has no such window), replacing actor's earlier label of it,
// and audits it (dataset.labeled, subject the window id) in the same
// transaction. Labelling again with the same kind, class and note changes
// nothing and returns the stored label.
func (s *Store) AddLabel(ctx context.Context, actor, tenant string, l Label) (*Label, error) {
	if actor == "" || len(actor) > maxActorLen || !utf8.ValidString(actor) {
		return nil, invalid("actor", "must be 1 to %d bytes of UTF-8", maxActorLen)
	}
	if err := code.ValidNamespace(tenant); err != nil {
		return nil, invalid("tenant", "%v", err)
	}
	if err := checkLabel(&l); err != nil {
		return nil, err
	}
	l.By, l.At = actor, msUTC(s.now())
	audited := false
	err := s.db.SharedTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		audited = false
		if err := windowExists(ctx, tx, tenant, l.Window); err != nil {
			return err
		}
		var old Label
		var oldAt int64
		err := tx.QueryRowContext(ctx, `SELECT id, kind, class, note, at_ms FROM dataset_labels
			WHERE tenant = ? AND window_id = ? AND actor = ? AND replaced_by = 0`, tenant, l.Window, actor).
			Scan(&old.ID, &old.Kind, &old.Class, &old.Note, &oldAt)
		switch {
		case err == nil:
			if old.Kind == l.Kind && old.Class == l.Class && old.Note == l.Note {
				l.ID, l.At = old.ID, time.UnixMilli(oldAt).UTC()
				return nil
			}
		case errors.Is(err, sql.ErrNoRows):
		default:
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO dataset_labels (tenant, window_id, actor, kind, class, note, at_ms)
			VALUES (?,?,?,?,?,?,?)`, tenant, l.Window, actor, l.Kind, l.Class, l.Note, l.At.UnixMilli())
		if err != nil {
			return err
		}
		if l.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		details := map[string]any{"label": l.ID, "kind": l.Kind}
		if l.Class != "" {
			details["class"] = l.Class
		}
		if old.ID != 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE dataset_labels SET replaced_by = ? WHERE id = ?`, l.ID, old.ID); err != nil {
				return err
			}
			details["replaces"] = old.ID
		}
		data, err := json.Marshal(details)
		if err != nil {
			return err
		}
		if _, err := s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Tenant: tenant, Kind: KindLabeled, Subject: l.Window, Data: data}); err != nil {
			return err
		}
		audited = true
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("dataset: label %s/%s: %w", tenant, truncate(l.Window), err)
	}
	if audited {
		s.audited()
	}
	return &l, nil
}

const labelColumns = `l.id, l.window_id, l.actor, l.kind, l.class, l.note, l.at_ms`

func scanLabel(row interface{ Scan(...any) error }) (*Label, error) {
	var l Label
	var at int64
	if err := row.Scan(&l.ID, &l.Window, &l.By, &l.Kind, &l.Class, &l.Note, &at); err != nil {
		return nil, err
	}
	l.At = time.UnixMilli(at).UTC()
	return &l, nil
}

// Labels returns a window's current labels (one per actor), oldest
// first; ErrNotFound when the tenant has no such window.
func (s *Store) Labels(ctx context.Context, tenant, windowID string) ([]*Label, error) {
	if err := windowExists(ctx, s.db.R, tenant, windowID); err != nil {
		return nil, fmt.Errorf("dataset: labels: %w", err)
	}
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+labelColumns+` FROM dataset_labels l
		WHERE l.tenant = ? AND l.window_id = ? AND l.replaced_by = 0 ORDER BY l.id`, tenant, windowID)
	if err != nil {
		return nil, fmt.Errorf("dataset: labels: %w", err)
	}
	return collectLabels(rows)
}

func collectLabels(rows *sql.Rows) ([]*Label, error) {
	defer rows.Close()
	out := []*Label{}
	for rows.Next() {
		l, err := scanLabel(rows)
		if err != nil {
			return nil, fmt.Errorf("dataset: labels: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dataset: labels: %w", err)
	}
	return out, nil
}

// Build makes the next version of the tenant's dataset name from the
// windows q selects and their current labels: a snapshot (the version
// keeps the window and label ids, so later labels do not change it) with
// its lineage, quality scores and content digest. The manifest is stored
// and the build audited (dataset.built, subject "<name>@<version>") in one
// transaction. A query that selects no window, or more than
// MaxVersionWindows, is refused (ErrInvalid).
func (s *Store) Build(ctx context.Context, actor, tenant, name string, q Query) (*Manifest, error) {
	if actor == "" || len(actor) > maxActorLen || !utf8.ValidString(actor) {
		return nil, invalid("actor", "must be 1 to %d bytes of UTF-8", maxActorLen)
	}
	if err := checkDatasetName(name); err != nil {
		return nil, err
	}
	if err := checkQuery(tenant, q, MaxVersionWindows); err != nil {
		return nil, err
	}
	q.Tenant, q.WithSeries = tenant, false
	q.Since, q.Until = zeroOrMS(q.Since), zeroOrMS(q.Until)
	limit := q.Limit
	if limit == 0 {
		limit = MaxVersionWindows + 1
	}
	m := &Manifest{Schema: Schema, Tenant: tenant, Name: name, CreatedAt: msUTC(s.now()), CreatedBy: actor, Query: q}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) + 1 FROM dataset_versions WHERE tenant = ? AND name = ?`,
			tenant, name).Scan(&m.Version); err != nil {
			return err
		}
		cond, args := where(tenant, q)
		rows, err := tx.QueryContext(ctx, `SELECT w.id, w.object, w.model, w.firmware, w.edge, w.loop, w.from_ms, w.to_ms,
			w.captured_ms, w.points, w.points_present, w.points_expected, w.series_sha256, w.content_sha256
			FROM dataset_windows w WHERE `+cond+` ORDER BY w.id LIMIT ?`, append(args, limit)...)
		if err != nil {
			return err
		}
		var ws []facts
		var contents []string
		lin := lineage{}
		for rows.Next() {
			var f facts
			var object, model, firmware, edge, loop, content string
			var from, points int64
			if err := rows.Scan(&f.id, &object, &model, &firmware, &edge, &loop, &from, &f.toMS, &f.capturedMS,
				&points, &f.present, &f.expected, &f.seriesSHA256, &content); err != nil {
				rows.Close()
				return err
			}
			ws = append(ws, f)
			contents = append(contents, content)
			m.Points += points
			lin.add(object, model, firmware, edge, loop, from, f.toMS)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		switch {
		case len(ws) == 0:
			return invalid("query", "no window matches")
		case len(ws) > MaxVersionWindows:
			return invalid("query", "more than %d windows match: narrow the query or give a limit", MaxVersionWindows)
		}
		for _, f := range ws {
			if _, err := tx.ExecContext(ctx, `INSERT INTO dataset_version_windows (tenant, name, version, window_id) VALUES (?,?,?,?)`,
				tenant, name, m.Version, f.id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dataset_version_labels (tenant, name, version, label_id)
			SELECT vw.tenant, vw.name, vw.version, l.id FROM dataset_version_windows vw
			JOIN dataset_labels l ON l.tenant = vw.tenant AND l.window_id = vw.window_id AND l.replaced_by = 0
			WHERE vw.tenant = ? AND vw.name = ? AND vw.version = ?`, tenant, name, m.Version); err != nil {
			return err
		}
		labels, err := versionLabels(ctx, tx, tenant, name, m.Version)
		if err != nil {
			return err
		}
		m.Windows = len(ws)
		for _, ls := range labels {
			m.Labels += len(ls)
		}
		m.Lineage = lin.result()
		m.Quality = quality(ws, labels)
		if m.ContentSHA256, err = contentDigest(ws, contents, labels); err != nil {
			return err
		}
		stored, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dataset_versions (tenant, name, version, actor, created_at, content_sha256, manifest)
			VALUES (?,?,?,?,?,?,?)`, tenant, name, m.Version, actor, m.CreatedAt.UnixMilli(), m.ContentSHA256, string(stored)); err != nil {
			return err
		}
		data, err := json.Marshal(map[string]any{
			"windows": m.Windows, "labels": m.Labels, "content_sha256": m.ContentSHA256,
		})
		if err != nil {
			return err
		}
		_, err = s.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Tenant: tenant, Kind: KindBuilt,
			Subject: name + "@" + strconv.Itoa(m.Version), Data: data})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dataset: build %s/%s: %w", tenant, name, err)
	}
	s.audited()
	return m, nil
}

func zeroOrMS(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return msUTC(t)
}

type rowsQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// versionLabels returns a version's labels by window id, each window's in
// actor order.
func versionLabels(ctx context.Context, q rowsQueryer, tenant, name string, version int) (map[string][]*Label, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+labelColumns+` FROM dataset_version_labels vl
		JOIN dataset_labels l ON l.id = vl.label_id
		WHERE vl.tenant = ? AND vl.name = ? AND vl.version = ?`, tenant, name, version)
	if err != nil {
		return nil, err
	}
	all, err := collectLabels(rows)
	if err != nil {
		return nil, err
	}
	out := map[string][]*Label{}
	for _, l := range all {
		out[l.Window] = append(out[l.Window], l)
	}
	for _, ls := range out {
		slices.SortFunc(ls, func(a, b *Label) int { return strings.Compare(a.By, b.By) })
	}
	return out, nil
}

// contentDigest is the version's ContentSHA256 (see the package doc).
func contentDigest(ws []facts, contents []string, labels map[string][]*Label) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", Schema)
	for i, f := range ws {
		fmt.Fprintf(h, "window %s %s %d\n", f.id, contents[i], f.capturedMS)
	}
	for _, f := range ws {
		for _, l := range labels[f.id] {
			b, err := l.canonical()
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "label %s\n", b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lineage collects a version's distinct sources.
type lineage struct {
	devices, models, firmware, edges, loops map[string]bool
	from, to                                int64
	any                                     bool
}

func (l *lineage) add(object, model, firmware, edge, loop string, from, to int64) {
	if !l.any {
		l.devices, l.models, l.firmware, l.edges, l.loops = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
		l.from, l.to, l.any = from, to, true
	}
	for _, kv := range []struct {
		set map[string]bool
		v   string
	}{{l.devices, object}, {l.models, model}, {l.firmware, firmware}, {l.edges, edge}, {l.loops, loop}} {
		if kv.v != "" {
			kv.set[kv.v] = true
		}
	}
	l.from, l.to = min(l.from, from), max(l.to, to)
}

func (l *lineage) result() Lineage {
	sorted := func(m map[string]bool) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	return Lineage{
		Devices: sorted(l.devices), Models: sorted(l.models), Firmware: sorted(l.firmware),
		Loops: sorted(l.loops), Edges: sorted(l.edges),
		From: time.UnixMilli(l.from).UTC(), To: time.UnixMilli(l.to).UTC(),
	}
}

// Datasets returns the manifests of the tenant's dataset versions, by name
// and version.
func (s *Store) Datasets(ctx context.Context, tenant string) ([]*Manifest, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT manifest FROM dataset_versions WHERE tenant = ? ORDER BY name, version`, tenant)
	if err != nil {
		return nil, fmt.Errorf("dataset: datasets: %w", err)
	}
	defer rows.Close()
	out := []*Manifest{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("dataset: datasets: %w", err)
		}
		var m Manifest
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			return nil, fmt.Errorf("dataset: datasets: %w", err)
		}
		out = append(out, &m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dataset: datasets: %w", err)
	}
	return out, nil
}

// Manifest returns a version's manifest (without files); version "" is
// the newest.
func (s *Store) Manifest(ctx context.Context, tenant, name, version string) (*Manifest, error) {
	var b string
	var err error
	if version == "" {
		err = s.db.R.QueryRowContext(ctx, `SELECT manifest FROM dataset_versions WHERE tenant = ? AND name = ?
			ORDER BY version DESC LIMIT 1`, tenant, name).Scan(&b)
	} else {
		v, perr := strconv.Atoi(version)
		if perr != nil || v < 1 || strconv.Itoa(v) != version {
			return nil, fmt.Errorf("dataset: %s/%s version %q: %w", tenant, truncate(name), truncate(version), ErrNotFound)
		}
		err = s.db.R.QueryRowContext(ctx, `SELECT manifest FROM dataset_versions WHERE tenant = ? AND name = ? AND version = ?`,
			tenant, name, v).Scan(&b)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("dataset: %s/%s@%s: %w", tenant, truncate(name), truncate(version), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("dataset: manifest %s/%s: %w", tenant, truncate(name), err)
	}
	var m Manifest
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		return nil, fmt.Errorf("dataset: manifest %s/%s: %w", tenant, truncate(name), err)
	}
	return &m, nil
}
