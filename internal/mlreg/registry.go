package mlreg

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// Errors the registry returns (wrapped).
var (
	// ErrInvalid is wrapped by every refusal of a model: an invalid Meta
	// (with ml.ErrInvalidMeta) or a model the runtime refuses (with
	// ml.ErrRefused), with the reason.
	ErrInvalid = errors.New("invalid model")
	// ErrNotFound is returned for a model or version that does not exist
	// in the tenant.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a version is registered again with
	// other content.
	ErrConflict = errors.New("conflict")
	// ErrBadSignature is returned by Verify.
	ErrBadSignature = errors.New("bad model signature")
)

// Audit entry kinds: a registration at the hub, an import at an edge.
const (
	KindRegistered = "ml.registered"
	KindImported   = "ml.imported"
)

// ImportActor is the actor of an import's audit entry: the hub, whose
// signature the edge checked.
const ImportActor = "hub"

// StatementPrefix starts the statement the hub signs.
const StatementPrefix = "wanwu.ml/v1\n"

var migrations = []store.Migration{{
	Name: "ml_models",
	Statements: []string{
		`CREATE TABLE ml_models (
			tenant      TEXT NOT NULL,
			id          TEXT NOT NULL,
			version     INTEGER NOT NULL,  -- the Meta's version
			meta        TEXT NOT NULL,     -- the Meta as stored (see package doc)
			onnx        BLOB NOT NULL,
			meta_sha256 TEXT NOT NULL,     -- hex
			onnx_sha256 TEXT NOT NULL,     -- hex
			signature   BLOB NOT NULL,     -- Ed25519 over Statement
			actor       TEXT NOT NULL,
			created_at  INTEGER NOT NULL,  -- unix ms
			PRIMARY KEY (tenant, id, version)
		)`,
	},
}, {
	Name:       "ml_models latency",
	Statements: []string{`ALTER TABLE ml_models ADD COLUMN latency_us INTEGER NOT NULL DEFAULT 0`},
}}

// Record is one registered model version. ONNX travels separately in
// JSON (its own route).
type Record struct {
	Tenant     string          `json:"tenant"`
	ID         string          `json:"id"`
	Version    string          `json:"version"`
	Meta       json.RawMessage `json:"meta"`
	MetaSHA256 string          `json:"meta_sha256"`
	ONNXSHA256 string          `json:"onnx_sha256"`
	Size       int             `json:"size"` // of the ONNX bytes
	Signature  []byte          `json:"signature"`
	Actor      string          `json:"actor"`
	CreatedAt  time.Time       `json:"created_at"`
	// LatencyUS is the expected inference time, µs: the median of trial
	// inferences when this node stored the version (at an edge, on its
	// own hardware).
	LatencyUS int64  `json:"latency_us"`
	ONNX      []byte `json:"-"`
}

// Statement is what the hub signs for a record.
func Statement(tenant, id, version, metaSHA256, onnxSHA256 string) []byte {
	return []byte(StatementPrefix + tenant + "\n" + id + "\n" + version + "\n" + metaSHA256 + "\n" + onnxSHA256 + "\n")
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Verify checks rec as an edge does before loading it: both digests match
// the bytes (the Meta compacted, so an indented copy of it verifies), and
// the signature is pub's over the statement.
func Verify(pub ed25519.PublicKey, rec *Record) error {
	if rec == nil {
		return fmt.Errorf("%w: no record", ErrBadSignature)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key of %d bytes", ErrBadSignature, len(pub))
	}
	// The stored Meta is compact; an indented copy (the API's answer)
	// digests the same once compacted.
	var meta bytes.Buffer
	if err := json.Compact(&meta, rec.Meta); err != nil {
		return fmt.Errorf("%w: the meta is not JSON: %w", ErrBadSignature, err)
	}
	if d := digest(meta.Bytes()); d != rec.MetaSHA256 {
		return fmt.Errorf("%w: the meta's digest is %s, the record says %s", ErrBadSignature, d, rec.MetaSHA256)
	}
	if d := digest(rec.ONNX); d != rec.ONNXSHA256 {
		return fmt.Errorf("%w: the ONNX bytes' digest is %s, the record says %s", ErrBadSignature, d, rec.ONNXSHA256)
	}
	if !ed25519.Verify(pub, Statement(rec.Tenant, rec.ID, rec.Version, rec.MetaSHA256, rec.ONNXSHA256), rec.Signature) {
		return fmt.Errorf("%w: %s/%s@%s", ErrBadSignature, rec.Tenant, rec.ID, rec.Version)
	}
	return nil
}

// trialLatency is the median time of a few inferences on the means.
func trialLatency(sess ml.Session) int64 {
	m := sess.Meta()
	x := make([]float64, len(m.Inputs))
	for i, f := range m.Inputs {
		x[i] = f.Mean
	}
	var took []time.Duration
	for range 5 {
		start := time.Now()
		if _, err := sess.Infer(context.Background(), x); err != nil {
			return 0
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return max(took[len(took)/2].Microseconds(), 1)
}

// Options open a Registry.
type Options struct {
	DB    *store.DB
	Audit *audit.Log
	// Signer signs registrations (the hub's key); a registry without one
	// (an edge's) refuses Register and takes versions by Import only.
	Signer ed25519.PrivateKey
	// Runtime checks models before they are stored (default ml.NewGonnx()).
	Runtime ml.Runtime
	// OnAudit is called after a commit that appended to the audit log.
	OnAudit func()
	Now     func() time.Time
}

// Registry stores model versions in the hub's metadata database.
type Registry struct {
	db      *store.DB
	audit   *audit.Log
	signer  ed25519.PrivateKey
	rt      ml.Runtime
	onAudit func()
	now     func() time.Time
}

// Open migrates the tables and returns the registry.
func Open(ctx context.Context, o Options) (*Registry, error) {
	if o.DB == nil || o.Audit == nil {
		return nil, errors.New("mlreg: DB and Audit are required")
	}
	if o.Signer != nil && len(o.Signer) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("mlreg: the Signer is %d bytes, not an Ed25519 private key", len(o.Signer))
	}
	if o.Runtime == nil {
		o.Runtime = ml.NewGonnx()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "mlreg", migrations); err != nil {
		return nil, fmt.Errorf("mlreg: %w", err)
	}
	return &Registry{db: o.DB, audit: o.Audit, signer: o.Signer, rt: o.Runtime, onAudit: o.OnAudit, now: o.Now}, nil
}

// PublicKey is the key Verify checks signatures with; nil without a
// Signer.
func (r *Registry) PublicKey() ed25519.PublicKey {
	if r.signer == nil {
		return nil
	}
	return r.signer.Public().(ed25519.PublicKey)
}

// Register stores a model version: it parses and validates metaJSON,
// loads the model once with the runtime (refusing it with the runtime's
// reason), and stores, signs and audits it in one transaction. created is
// false when the same content was registered before (nothing changes);
// other content under a stored version is ErrConflict.
func (r *Registry) Register(ctx context.Context, actor, tenant string, metaJSON, onnx []byte) (rec *Record, created bool, err error) {
	if r.signer == nil {
		return nil, false, errors.New("mlreg: this registry has no signing key: it takes versions by Import only")
	}
	if err := code.ValidNamespace(tenant); err != nil {
		return nil, false, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	meta, err := ml.ParseMeta(metaJSON)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// The runtime bounds the size by the Meta's budget before it parses.
	sess, err := r.rt.Load(onnx, meta)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	latency := trialLatency(sess)
	if err := sess.Close(); err != nil {
		return nil, false, fmt.Errorf("mlreg: closing the trial session: %w", err)
	}
	canon, err := json.Marshal(meta)
	if err != nil {
		return nil, false, fmt.Errorf("mlreg: %w", err)
	}
	version := strconv.Itoa(meta.Version)
	rec = &Record{
		Tenant: tenant, ID: meta.ID, Version: version, Meta: canon, ONNX: bytes.Clone(onnx), Size: len(onnx),
		MetaSHA256: digest(canon), ONNXSHA256: digest(onnx), Actor: actor,
		CreatedAt: r.now().UTC().Truncate(time.Millisecond), LatencyUS: latency,
	}
	rec.Signature = ed25519.Sign(r.signer, Statement(tenant, rec.ID, version, rec.MetaSHA256, rec.ONNXSHA256))
	subject := rec.ID + "@" + version
	err = r.db.Tx(ctx, func(tx *sql.Tx) error {
		var metaSum, onnxSum string
		err := tx.QueryRowContext(ctx, `SELECT meta_sha256, onnx_sha256 FROM ml_models WHERE tenant = ? AND id = ? AND version = ?`,
			tenant, rec.ID, meta.Version).Scan(&metaSum, &onnxSum)
		switch {
		case err == nil:
			if metaSum != rec.MetaSHA256 || onnxSum != rec.ONNXSHA256 {
				return fmt.Errorf("%w: model %s version %s is registered with other content (meta %s, onnx %s): give the new content a new version",
					ErrConflict, rec.ID, version, metaSum, onnxSum)
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		created = true
		if _, err := tx.ExecContext(ctx, `INSERT INTO ml_models(tenant, id, version, meta, onnx, meta_sha256, onnx_sha256, signature, actor, created_at, latency_us)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)`, tenant, rec.ID, meta.Version, string(canon), rec.ONNX, rec.MetaSHA256, rec.ONNXSHA256,
			rec.Signature, actor, rec.CreatedAt.UnixMilli(), rec.LatencyUS); err != nil {
			return err
		}
		data, err := json.Marshal(map[string]any{
			"version": version, "meta_sha256": rec.MetaSHA256, "onnx_sha256": rec.ONNXSHA256, "size": rec.Size,
			"runtime": r.rt.Name(), "dataset": meta.Training.Dataset, "dataset_version": meta.Training.DatasetVersion,
			"latency_us": rec.LatencyUS,
		})
		if err != nil {
			return err
		}
		_, err = r.audit.AppendTx(ctx, tx, audit.Entry{Actor: actor, Tenant: tenant, Kind: KindRegistered, Subject: subject, Data: data})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("mlreg: register %s/%s: %w", tenant, subject, err)
	}
	if !created {
		rec, err = r.Get(ctx, tenant, rec.ID, version)
		return rec, false, err
	}
	if r.onAudit != nil {
		r.onAudit()
	}
	return rec, true, nil
}

const columns = `tenant, id, version, meta, meta_sha256, onnx_sha256, length(onnx), signature, actor, created_at, latency_us`

func scanRecord(row interface{ Scan(...any) error }) (*Record, error) {
	var rec Record
	var version int
	var meta string
	var created int64
	if err := row.Scan(&rec.Tenant, &rec.ID, &version, &meta, &rec.MetaSHA256, &rec.ONNXSHA256, &rec.Size, &rec.Signature, &rec.Actor, &created, &rec.LatencyUS); err != nil {
		return nil, err
	}
	rec.Version = strconv.Itoa(version)
	rec.Meta = json.RawMessage(meta)
	rec.CreatedAt = time.UnixMilli(created).UTC()
	return &rec, nil
}

// List returns the tenant's model versions (every tenant's for ""), by
// tenant, id and version; without the ONNX bytes.
func (r *Registry) List(ctx context.Context, tenant string) ([]*Record, error) {
	rows, err := r.db.R.QueryContext(ctx, `SELECT `+columns+` FROM ml_models WHERE ? = '' OR tenant = ? ORDER BY tenant, id, version`, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("mlreg: list: %w", err)
	}
	defer rows.Close()
	out := []*Record{}
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("mlreg: list: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mlreg: list: %w", err)
	}
	return out, nil
}

// Versions returns a model's versions, oldest first, without the ONNX
// bytes; ErrNotFound when the tenant has no version of it.
func (r *Registry) Versions(ctx context.Context, tenant, id string) ([]*Record, error) {
	all, err := r.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, rec := range all {
		if rec.ID == id {
			out = append(out, rec)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mlreg: model %s/%s: %w", tenant, id, ErrNotFound)
	}
	return out, nil
}

// Get returns a model version with its ONNX bytes; version "" is the
// newest.
func (r *Registry) Get(ctx context.Context, tenant, id, version string) (*Record, error) {
	v, err := r.resolve(ctx, tenant, id, version)
	if err != nil {
		return nil, err
	}
	row := r.db.R.QueryRowContext(ctx, `SELECT `+columns+`, onnx FROM ml_models WHERE tenant = ? AND id = ? AND version = ?`, tenant, id, v)
	var rec Record
	var meta string
	var created int64
	err = row.Scan(&rec.Tenant, &rec.ID, &v, &meta, &rec.MetaSHA256, &rec.ONNXSHA256, &rec.Size, &rec.Signature, &rec.Actor, &created, &rec.LatencyUS, &rec.ONNX)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("mlreg: model %s/%s@%d: %w", tenant, id, v, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("mlreg: get %s/%s@%d: %w", tenant, id, v, err)
	}
	rec.Version = strconv.Itoa(v)
	rec.Meta = json.RawMessage(meta)
	rec.CreatedAt = time.UnixMilli(created).UTC()
	return &rec, nil
}

// First returns a model's first version: the one in effect where no
// rollout made another active (a later version takes effect only through
// a rollout); ErrNotFound without one.
func (r *Registry) First(ctx context.Context, tenant, id string) (string, error) {
	var v sql.NullInt64
	if err := r.db.R.QueryRowContext(ctx, `SELECT min(version) FROM ml_models WHERE tenant = ? AND id = ?`, tenant, id).Scan(&v); err != nil {
		return "", fmt.Errorf("mlreg: %s/%s: %w", tenant, id, err)
	}
	if !v.Valid {
		return "", fmt.Errorf("mlreg: model %s/%s: %w", tenant, id, ErrNotFound)
	}
	return strconv.Itoa(int(v.Int64)), nil
}

// resolve returns version as a number, the newest for "".
func (r *Registry) resolve(ctx context.Context, tenant, id, version string) (int, error) {
	if version != "" {
		v, err := strconv.Atoi(version)
		if err != nil || v < 1 || strconv.Itoa(v) != version {
			return 0, fmt.Errorf("mlreg: model %s/%s version %q: %w", tenant, id, version, ErrNotFound)
		}
		return v, nil
	}
	var v sql.NullInt64
	if err := r.db.R.QueryRowContext(ctx, `SELECT max(version) FROM ml_models WHERE tenant = ? AND id = ?`, tenant, id).Scan(&v); err != nil {
		return 0, fmt.Errorf("mlreg: get %s/%s: %w", tenant, id, err)
	}
	if !v.Valid {
		return 0, fmt.Errorf("mlreg: model %s/%s: %w", tenant, id, ErrNotFound)
	}
	return int(v.Int64), nil
}

// Import stores a model version another registry (the hub's) registered
// and signed, as an edge does before it runs the model: rec is the
// record as served (its ONNX field is not used), onnx the bytes
// downloaded for it. Before anything is stored, both digests must match
// the given bytes and the signature must be pub's over the statement
// (refusals wrap ErrBadSignature); the Meta must parse and name the
// record's id and version, and the runtime must load the model once, as
// Register does (refusals wrap ErrInvalid). The version is stored with the
// hub's signature, actor and time, and an audit entry (ml.imported) in
// the same transaction; importing the same content again changes
// nothing, other content under a stored version is ErrConflict.
func (r *Registry) Import(ctx context.Context, rec *Record, onnx []byte, pub ed25519.PublicKey) error {
	if rec == nil {
		return fmt.Errorf("mlreg: import: %w: no record", ErrBadSignature)
	}
	subject := rec.ID + "@" + rec.Version
	cp := *rec
	cp.ONNX = onnx
	if err := Verify(pub, &cp); err != nil {
		return fmt.Errorf("mlreg: import %s/%s: %w", rec.Tenant, subject, err)
	}
	if err := code.ValidNamespace(rec.Tenant); err != nil {
		return fmt.Errorf("mlreg: import %s: %w: tenant: %w", subject, ErrInvalid, err)
	}
	var canon bytes.Buffer
	if err := json.Compact(&canon, rec.Meta); err != nil { // Verify compacted it once already
		return fmt.Errorf("mlreg: import %s/%s: %w: %w", rec.Tenant, subject, ErrInvalid, err)
	}
	meta, err := ml.ParseMeta(canon.Bytes())
	if err != nil {
		return fmt.Errorf("mlreg: import %s/%s: %w: %w", rec.Tenant, subject, ErrInvalid, err)
	}
	if meta.ID != rec.ID || strconv.Itoa(meta.Version) != rec.Version {
		return fmt.Errorf("mlreg: import %s/%s: %w: the meta is %s@%d", rec.Tenant, subject, ErrInvalid, meta.ID, meta.Version)
	}
	sess, err := r.rt.Load(onnx, meta)
	if err != nil {
		return fmt.Errorf("mlreg: import %s/%s: %w: %w", rec.Tenant, subject, ErrInvalid, err)
	}
	latency := trialLatency(sess)
	if err := sess.Close(); err != nil {
		return fmt.Errorf("mlreg: closing the trial session: %w", err)
	}
	created := false
	err = r.db.Tx(ctx, func(tx *sql.Tx) error {
		var metaSum, onnxSum string
		err := tx.QueryRowContext(ctx, `SELECT meta_sha256, onnx_sha256 FROM ml_models WHERE tenant = ? AND id = ? AND version = ?`,
			rec.Tenant, rec.ID, meta.Version).Scan(&metaSum, &onnxSum)
		switch {
		case err == nil:
			if metaSum != rec.MetaSHA256 || onnxSum != rec.ONNXSHA256 {
				return fmt.Errorf("%w: model %s version %s is stored with other content (meta %s, onnx %s)",
					ErrConflict, rec.ID, rec.Version, metaSum, onnxSum)
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		created = true
		if _, err := tx.ExecContext(ctx, `INSERT INTO ml_models(tenant, id, version, meta, onnx, meta_sha256, onnx_sha256, signature, actor, created_at, latency_us)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)`, rec.Tenant, rec.ID, meta.Version, canon.String(), bytes.Clone(onnx), rec.MetaSHA256, rec.ONNXSHA256,
			rec.Signature, rec.Actor, rec.CreatedAt.UTC().UnixMilli(), latency); err != nil {
			return err
		}
		data, err := json.Marshal(map[string]any{
			"version": rec.Version, "meta_sha256": rec.MetaSHA256, "onnx_sha256": rec.ONNXSHA256, "size": len(onnx),
			"runtime": r.rt.Name(), "registered_by": rec.Actor, "latency_us": latency,
		})
		if err != nil {
			return err
		}
		_, err = r.audit.AppendTx(ctx, tx, audit.Entry{Actor: ImportActor, Tenant: rec.Tenant, Kind: KindImported, Subject: subject, Data: data})
		return err
	})
	if err != nil {
		return fmt.Errorf("mlreg: import %s/%s: %w", rec.Tenant, subject, err)
	}
	if created && r.onAudit != nil {
		r.onAudit()
	}
	return nil
}

// Has reports whether the version is stored with these digests (an
// edge's sync skips what it has).
func (r *Registry) Has(ctx context.Context, tenant, id, version, metaSHA256, onnxSHA256 string) (bool, error) {
	v, err := strconv.Atoi(version)
	if err != nil {
		return false, nil
	}
	var n int
	if err := r.db.R.QueryRowContext(ctx, `SELECT count(*) FROM ml_models WHERE tenant = ? AND id = ? AND version = ? AND meta_sha256 = ? AND onnx_sha256 = ?`,
		tenant, id, v, metaSHA256, onnxSHA256).Scan(&n); err != nil {
		return false, fmt.Errorf("mlreg: %w", err)
	}
	return n > 0, nil
}
