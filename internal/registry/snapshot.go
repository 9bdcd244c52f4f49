package registry

// Edge identity snapshots: the hub reads everything behind an edge
// (EdgeSnapshot), the edge's replica registry becomes exactly that
// (ApplySnapshot). Signing and verifying are package snapshot's.
//
// What a replica holds after ApplySnapshot is the snapshot and nothing
// else: tenants, models, objects, keys and replaced certificates are
// replaced whole in one transaction. An object that is no longer in a
// snapshot (moved to another edge, or archived at the hub when its code was
// released) is removed, so admission answers "unknown" for it as for any
// code the edge never served; an object revoked, decommissioned or
// quarantined at the hub is still in the snapshot with that status, and
// admission answers as the hub does. Numbers, keys, certificates and
// credentials are copied verbatim: a replica derives nothing and signs
// nothing.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/snapshot"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// KindSnapshotApplied is the audit entry a replica with an audit log
// appends when it applies a snapshot (subject: the edge's code).
const KindSnapshotApplied = "snapshot.applied"

// The meta rows a replica keeps about the snapshot it applied last.
const (
	metaSnapshotVersion    = "snapshot.version"
	metaSnapshotEdge       = "snapshot.edge"
	metaSnapshotDeployment = "snapshot.deployment"
	metaSnapshotIssuedAt   = "snapshot.issued_at"
	metaSnapshotAppliedAt  = "snapshot.applied_at"
	metaSnapshotCA         = "snapshot.ca_certificate"
	metaSnapshotDigest     = "snapshot.digest"
)

// EdgeSnapshot reads, in one read transaction, the identities an edge needs
// to admit its devices without the hub: the edge object itself and every
// object behind it (its edge is the edge, or a gateway or edge behind it),
// with all their keys, the certificates revoked among them, their tenants
// and the model versions they use, the hub CA's certificate, versioned by
// the audit log's size as the same transaction reads it. Objects archived
// under "<code>~<n>" are left out. The caller signs the result
// (snapshot.Sign with the hub's signing key).
//
// An edge code that is not an object is ErrNotFound; one that is not an
// edge or gateway, or is not a code, is a FieldError for "edge".
func (r *Registry) EdgeSnapshot(ctx context.Context, edgeCode string) (*snapshot.Snapshot, error) {
	if r.opts.Replica {
		return nil, fmt.Errorf("%w: snapshots are issued by the hub", ErrReplica)
	}
	if _, err := code.Parse(edgeCode); err != nil {
		return nil, invalidErr("edge", err)
	}
	tx, err := r.db.R.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot: %w", err)
	}
	defer tx.Rollback()
	// The first read fixes what the transaction sees (WAL): the version
	// and everything after it describe one state of the database.
	version, err := r.opts.Audit.SizeTx(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot: %w", err)
	}
	edge, err := getObject(ctx, tx, edgeCode)
	if err != nil {
		return nil, err
	}
	if edge.Kind != KindEdge && edge.Kind != KindGateway {
		return nil, invalid("edge", "%s is a %s, not an edge or gateway", edgeCode, edge.Kind)
	}
	s := &snapshot.Snapshot{
		Format: snapshot.FormatVersion, Deployment: r.opts.DeploymentID, Edge: edgeCode,
		Version: version, IssuedAt: r.now(), CACertificate: string(r.CA().CertPEM()),
		Revoked: []snapshot.Revoked{}, Tenants: []snapshot.Tenant{}, Models: []snapshot.Model{},
	}
	if s.Objects, err = snapshotObjects(ctx, tx, edgeCode); err != nil {
		return nil, err
	}
	if s.Revoked, err = snapshotRevoked(ctx, tx, edgeCode); err != nil {
		return nil, err
	}
	var tenants []string
	var models []ModelRef
	for _, o := range s.Objects {
		if !slices.Contains(tenants, o.Tenant) {
			tenants = append(tenants, o.Tenant)
		}
		if o.Model != nil && !slices.Contains(models, ModelRef(*o.Model)) {
			models = append(models, ModelRef(*o.Model))
		}
	}
	slices.Sort(tenants)
	for _, name := range tenants {
		t, err := getTenant(ctx, tx, name)
		if err != nil {
			return nil, err
		}
		s.Tenants = append(s.Tenants, snapshot.Tenant{
			Name: t.Name, Title: t.Title, Prefix: t.Prefix, PrefixSet: t.PrefixSet, CreatedAt: t.CreatedAt,
		})
	}
	slices.SortFunc(models, func(a, b ModelRef) int {
		return strings.Compare(a.ID+"@"+a.Version, b.ID+"@"+b.Version)
	})
	for _, ref := range models {
		m := snapshot.Model{ID: ref.ID, Version: ref.Version}
		var created, deprecated int64
		if err := tx.QueryRowContext(ctx, `SELECT tenant, doc, created_at, deprecated_at, deprecated_reason FROM models WHERE id = ? AND version = ?`,
			ref.ID, ref.Version).Scan(&m.Tenant, &m.Doc, &created, &deprecated, &m.DeprecatedReason); err != nil {
			return nil, fmt.Errorf("registry: snapshot: model %s@%s: %w", ref.ID, ref.Version, err)
		}
		m.CreatedAt = time.UnixMilli(created).UTC()
		if deprecated != 0 {
			at := time.UnixMilli(deprecated).UTC()
			m.DeprecatedAt = &at
		}
		s.Models = append(s.Models, m)
	}
	return s, nil
}

// behind selects the codes of an edge (?1) and of every object behind it,
// archived rows left out (a recursive CTE; UNION stops at codes seen).
const behind = `WITH RECURSIVE behind(code) AS (
		SELECT ?1
		UNION
		SELECT o.code FROM objects o JOIN behind b ON o.edge = b.code WHERE o.released_code = ''
	) `

func snapshotObjects(ctx context.Context, tx *sql.Tx, edgeCode string) ([]snapshot.Object, error) {
	rows, err := tx.QueryContext(ctx, behind+`SELECT `+objectColumns+`, subnet_key, iid_attempt FROM objects
		WHERE code IN (SELECT code FROM behind) ORDER BY code != ?1, code`, edgeCode)
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot: objects: %w", err)
	}
	defer rows.Close()
	var out []snapshot.Object
	index := map[string]int{}
	for rows.Next() {
		var so snapshot.Object
		o, err := scanObject(scanExtra{rows, []any{&so.SubnetKey, &so.IIDAttempt}})
		if err != nil {
			return nil, fmt.Errorf("registry: snapshot: objects: %w", err)
		}
		so.Code, so.Tenant, so.Kind, so.Status, so.StatusReason = o.Code, o.Tenant, o.Kind, o.Status, o.StatusReason
		so.Path, so.Tags, so.Edge, so.Network, so.Number = o.Path, o.Tags, o.Edge, o.Network, o.Number
		so.CreatedAt, so.UpdatedAt = o.CreatedAt, o.UpdatedAt
		if o.Model != nil {
			so.Model = &snapshot.ModelRef{ID: o.Model.ID, Version: o.Model.Version}
		}
		index[so.Code] = len(out)
		out = append(out, so)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: snapshot: objects: %w", err)
	}
	rows.Close()
	krows, err := tx.QueryContext(ctx, behind+`SELECT code, did, alg, fingerprint, status, created_at, retire_at, revoked_at,
		cert_serial, cert_pem, cert_not_after, credential FROM object_keys WHERE code IN (SELECT code FROM behind) ORDER BY id`, edgeCode)
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot: keys: %w", err)
	}
	defer krows.Close()
	for krows.Next() {
		var c string
		var k snapshot.Key
		var created, retire, revoked, notAfter int64
		if err := krows.Scan(&c, &k.DID, &k.Alg, &k.Fingerprint, &k.Status, &created, &retire, &revoked,
			&k.CertSerial, &k.CertPEM, &notAfter, &k.Credential); err != nil {
			return nil, fmt.Errorf("registry: snapshot: keys: %w", err)
		}
		k.CreatedAt, k.CertNotAfter = time.UnixMilli(created).UTC(), time.UnixMilli(notAfter).UTC()
		k.RetireAt, k.RevokedAt = optionalTime(retire), optionalTime(revoked)
		i, ok := index[c]
		if !ok {
			return nil, fmt.Errorf("registry: snapshot: key %s of %s, which the snapshot does not hold", k.DID, c)
		}
		out[i].Keys = append(out[i].Keys, k)
	}
	if err := krows.Err(); err != nil {
		return nil, fmt.Errorf("registry: snapshot: keys: %w", err)
	}
	return out, nil
}

// snapshotRevoked lists the revoked certificates of the objects behind the
// edge: their revoked keys', then those replaced while their key stayed.
func snapshotRevoked(ctx context.Context, tx *sql.Tx, edgeCode string) ([]snapshot.Revoked, error) {
	rows, err := tx.QueryContext(ctx, behind+`SELECT cert_serial, code, revoked_at FROM (
		SELECT cert_serial, code, revoked_at, 0 AS src, id AS n FROM object_keys WHERE status = 'revoked' AND code IN (SELECT code FROM behind)
		UNION ALL SELECT serial, code, revoked_at, 1, revoked_at FROM replaced_certificates WHERE code IN (SELECT code FROM behind))
		ORDER BY src, n, cert_serial`, edgeCode)
	if err != nil {
		return nil, fmt.Errorf("registry: snapshot: revoked: %w", err)
	}
	defer rows.Close()
	out := []snapshot.Revoked{}
	for rows.Next() {
		var rv snapshot.Revoked
		var at int64
		if err := rows.Scan(&rv.Serial, &rv.Code, &at); err != nil {
			return nil, fmt.Errorf("registry: snapshot: revoked: %w", err)
		}
		rv.RevokedAt = time.UnixMilli(at).UTC()
		out = append(out, rv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: snapshot: revoked: %w", err)
	}
	return out, nil
}

func optionalTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func millisOrZero(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}

// scanExtra lets scanObject read a row that carries extra trailing columns.
type scanExtra struct {
	sc    interface{ Scan(...any) error }
	extra []any
}

func (s scanExtra) Scan(dest ...any) error { return s.sc.Scan(append(dest, s.extra...)...) }

// SnapshotApplied says what applying a snapshot changed on a replica.
type SnapshotApplied struct {
	Edge       string    `json:"edge"`
	Deployment string    `json:"deployment"`
	Version    uint64    `json:"version"`
	Previous   uint64    `json:"previous"` // the version applied before; 0 for the first snapshot
	IssuedAt   time.Time `json:"issued_at"`
	Objects    int       `json:"objects"`
	// Added are the codes that were not on the replica before; Removed
	// those no longer in the snapshot; Changed those whose status, keys
	// (a key's state, retirement or certificate), model, number or edge
	// changed. Each is in code order.
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Changed []string `json:"changed,omitempty"`
}

// Disconnect returns the codes whose open sessions must end: a session was
// admitted against an identity that is gone or changed (a removed or revoked
// object, a revoked key, a new number or model), so the device connects
// again and passes admission against the new one.
func (a SnapshotApplied) Disconnect() []string {
	out := slices.Concat(a.Removed, a.Changed)
	slices.Sort(out)
	return out
}

// auditListMax bounds the codes an audit entry names per list, which keeps
// it under the log's size limit for an edge of any size; the counts are
// always whole.
const auditListMax = 100

// auditData is the audit entry's form of a: counts, and at most
// auditListMax codes per list.
func (a SnapshotApplied) auditData() map[string]any {
	d := map[string]any{
		"deployment": a.Deployment, "version": a.Version, "previous": a.Previous, "issued_at": a.IssuedAt,
		"objects": a.Objects, "added": len(a.Added), "removed": len(a.Removed), "changed": len(a.Changed),
	}
	for name, list := range map[string][]string{"removed_codes": a.Removed, "changed_codes": a.Changed} {
		if len(list) > 0 {
			d[name] = list[:min(len(list), auditListMax)]
		}
	}
	return d
}

// ApplySnapshot makes a replica's identities exactly what s says, in one
// transaction: tenants, models, objects with their keys, and the replaced
// certificates (see the top of this file for what happens to objects that
// left the snapshot). The caller has verified s (snapshot.Verify with the
// hub's public key, the edge's code and AppliedSnapshotVersion); ApplySnapshot
// checks it again, and refuses it if:
//
//   - the registry is the hub's, not a replica (ErrConflict);
//   - it is not a consistent snapshot, or names a kind, state or model the
//     registry does not know (a FieldError for "snapshot" that also wraps
//     the snapshot package's error);
//   - it is for another edge than the snapshots applied before
//     (snapshot.ErrWrongEdge) or from another deployment (ErrConflict);
//   - its version is below the one applied (snapshot.ErrStale).
//
// Applying the version already applied changes nothing and returns nil:
// an edge that fetched the same snapshot twice (a retry, a restart between
// applying and recording that it did) needs no special case. A newer
// version that holds the identities applied before (the hub's log grew with
// twin and command changes, or another edge's identities) only records its
// version and times. Otherwise it replaces the identities, records the
// version, edge, deployment, times and CA certificate in the meta table
// (AppliedSnapshot), appends a snapshot.applied audit entry when the
// registry has an audit log, logs the change, and hands it to
// Options.OnSnapshot.
func (r *Registry) ApplySnapshot(ctx context.Context, s *snapshot.Snapshot) error {
	if !r.opts.Replica {
		return fmt.Errorf("%w: the hub's registry is the source of snapshots; only an edge's replica applies them", ErrConflict)
	}
	if err := snapshot.Validate(s); err != nil {
		return invalidErr("snapshot", err)
	}
	if err := checkSnapshot(s); err != nil {
		return err
	}
	hubCA, err := ca.FromCertificate([]byte(s.CACertificate))
	if err != nil {
		return invalidErr("snapshot", err) // Validate parsed it; unreachable
	}
	digest, err := identityDigest(s)
	if err != nil {
		return err
	}
	var applied SnapshotApplied
	unchanged, sameIdentities := false, false
	err = r.commit(ctx, "hub:"+s.Deployment, func(c *change) error {
		st, err := appliedSnapshot(ctx, c.tx)
		if err != nil {
			return err
		}
		if st.Version > 0 {
			switch {
			case st.Edge != s.Edge:
				return fmt.Errorf("registry: %w: this replica serves %s, the snapshot is for %s", snapshot.ErrWrongEdge, st.Edge, s.Edge)
			case st.Deployment != s.Deployment:
				return fmt.Errorf("%w: the snapshot is from deployment %s, this replica follows %s", ErrConflict, s.Deployment, st.Deployment)
			case s.Version < st.Version:
				return fmt.Errorf("registry: %w: version %d, and version %d is applied", snapshot.ErrStale, s.Version, st.Version)
			case s.Version == st.Version:
				unchanged = true
				return nil
			}
		}
		meta := map[string]string{
			metaSnapshotVersion:   strconv.FormatUint(s.Version, 10),
			metaSnapshotIssuedAt:  s.IssuedAt.UTC().Format(time.RFC3339Nano),
			metaSnapshotAppliedAt: c.now.Format(time.RFC3339Nano),
		}
		var held string
		if err := c.tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaSnapshotDigest).Scan(&held); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("registry: apply snapshot: meta: %w", err)
		}
		if sameIdentities = st.Version > 0 && held == digest; sameIdentities {
			return setMeta(c, meta)
		}
		before, err := replicaState(ctx, c.tx)
		if err != nil {
			return err
		}
		if err := replaceIdentities(c, s); err != nil {
			return err
		}
		meta[metaSnapshotEdge], meta[metaSnapshotDeployment] = s.Edge, s.Deployment
		meta[metaSnapshotCA], meta[metaSnapshotDigest] = s.CACertificate, digest
		if err := setMeta(c, meta); err != nil {
			return err
		}
		applied = diffSnapshot(before, s)
		applied.Previous = st.Version
		ns, _ := code.Parse(s.Edge)
		return c.log(KindSnapshotApplied, ns.Namespace, s.Edge, applied.auditData())
	})
	if err != nil || unchanged {
		return err
	}
	if sameIdentities {
		r.log.Debug("registry: identity snapshot with the identities applied before", "edge", s.Edge, "version", s.Version)
		return nil
	}
	r.ca.Store(hubCA)
	// Model versions are immutable at the hub, so the cache would stay
	// right; cleared anyway, so that it never outlives what the replica holds.
	r.models.Clear()
	r.log.Info("registry: identity snapshot applied", "edge", s.Edge, "version", s.Version, "previous", applied.Previous,
		"issued_at", s.IssuedAt, "objects", applied.Objects, "added", len(applied.Added),
		"removed", len(applied.Removed), "changed", len(applied.Changed))
	if r.opts.OnSnapshot != nil {
		r.opts.OnSnapshot(applied)
	}
	return nil
}

func setMeta(c *change, kv map[string]string) error {
	for k, v := range kv {
		if _, err := c.tx.ExecContext(c.ctx, `INSERT INTO meta(key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, k, v); err != nil {
			return fmt.Errorf("registry: apply snapshot: meta %s: %w", k, err)
		}
	}
	return nil
}

// identityDigest is the SHA-256 of the identities s holds: its JSON without
// the version and the time, which change with every entry of the hub's
// audit log, twins' and commands' too, whether this edge's identities
// changed or not.
func identityDigest(s *snapshot.Snapshot) (string, error) {
	c := *s
	c.Version, c.IssuedAt = 0, time.Time{}
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("registry: apply snapshot: %w", err)
	}
	return sha256Hex(b), nil
}

// checkSnapshot checks what package snapshot leaves to the registry: the
// kinds and states it knows, that the edge is an edge or gateway, and that
// every model document parses as the model it is listed as.
func checkSnapshot(s *snapshot.Snapshot) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: "snapshot", Reason: field + ": " + fmt.Sprintf(format, args...), cause: snapshot.ErrInvalid}
	}
	for i, o := range s.Objects {
		f := fmt.Sprintf("objects[%d]", i)
		switch o.Kind {
		case KindDevice, KindGateway, KindEdge, KindAsset:
		default:
			return bad(f+".kind", "%q is not a kind", o.Kind)
		}
		switch o.Status {
		case StatusActive, StatusQuarantined, StatusRevoked, StatusDecommissioned, StatusDeleted:
		default:
			return bad(f+".status", "%q is not a state", o.Status)
		}
		if o.Code == s.Edge && o.Kind != KindEdge && o.Kind != KindGateway {
			return bad(f+".kind", "the snapshot's edge %s is a %s, not an edge or gateway", o.Code, o.Kind)
		}
		for j, k := range o.Keys {
			switch {
			case k.Status != KeyActive && k.Status != KeyRetiring && k.Status != KeyRevoked:
				return bad(fmt.Sprintf("%s.keys[%d].status", f, j), "%q is not a key state", k.Status)
			case k.Status == KeyRetiring && k.RetireAt == nil:
				return bad(fmt.Sprintf("%s.keys[%d].retire_at", f, j), "a retiring key needs the end of its overlap")
			}
		}
	}
	for i, m := range s.Models {
		tm, err := thingmodel.Parse(m.Doc)
		if err != nil {
			return &FieldError{Field: "snapshot", Reason: fmt.Sprintf("models[%d].doc: %v", i, err), cause: snapshot.ErrInvalid}
		}
		if tm.ID != m.ID || tm.Version != m.Version {
			return bad(fmt.Sprintf("models[%d].doc", i), "is %s@%s, listed as %s@%s", tm.ID, tm.Version, m.ID, m.Version)
		}
	}
	return nil
}

// replaceIdentities empties a replica's identity tables and fills them with
// s, in c's transaction. API tokens stay: they are the node's own.
func replaceIdentities(c *change, s *snapshot.Snapshot) error {
	ctx, tx := c.ctx, c.tx
	for _, q := range []string{
		`DELETE FROM object_keys`, `DELETE FROM replaced_certificates`, `DELETE FROM objects`,
		`DELETE FROM models`, `DELETE FROM subnets`, `DELETE FROM claims`, `DELETE FROM tenants`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("registry: apply snapshot: %s: %w", q, err)
		}
	}
	for _, t := range s.Tenants {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenants(name, title, prefix, prefix_set, created_at) VALUES (?,?,?,?,?)`,
			t.Name, t.Title, t.Prefix, boolInt(t.PrefixSet), t.CreatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("registry: apply snapshot: tenant %s: %w", t.Name, err)
		}
	}
	for _, m := range s.Models {
		if _, err := tx.ExecContext(ctx, `INSERT INTO models(id, version, tenant, doc, created_at, deprecated_at, deprecated_reason) VALUES (?,?,?,?,?,?,?)`,
			m.ID, m.Version, m.Tenant, m.Doc, m.CreatedAt.UnixMilli(), millisOrZero(m.DeprecatedAt), m.DeprecatedReason); err != nil {
			return fmt.Errorf("registry: apply snapshot: model %s@%s: %w", m.ID, m.Version, err)
		}
	}
	// Prepared once: an edge may serve thousands of objects.
	insObject, err := tx.PrepareContext(ctx, `INSERT INTO objects(code, tenant, kind, status, status_reason, path, tags, edge,
		model_id, model_version, network, number, subnet_key, iid_attempt, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("registry: apply snapshot: %w", err)
	}
	defer insObject.Close()
	insKey, err := tx.PrepareContext(ctx, `INSERT INTO object_keys(code, did, alg, fingerprint, status, created_at, retire_at, revoked_at,
		cert_serial, cert_pem, cert_not_after, credential) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return fmt.Errorf("registry: apply snapshot: %w", err)
	}
	defer insKey.Close()
	keySerials := map[string]bool{}
	for _, o := range s.Objects {
		tags, err := json.Marshal(nonNilTags(o.Tags))
		if err != nil {
			return fmt.Errorf("registry: apply snapshot: %s: %w", o.Code, err)
		}
		var modelID, modelVersion string
		if o.Model != nil {
			modelID, modelVersion = o.Model.ID, o.Model.Version
		}
		if _, err := insObject.ExecContext(ctx, o.Code, o.Tenant, o.Kind, o.Status, o.StatusReason, strings.Join(o.Path, "/"), string(tags), o.Edge, modelID, modelVersion,
			o.Network, o.Number, o.SubnetKey, o.IIDAttempt, o.CreatedAt.UnixMilli(), o.UpdatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("registry: apply snapshot: object %s: %w", o.Code, err)
		}
		for _, k := range o.Keys {
			keySerials[k.CertSerial] = true
			if _, err := insKey.ExecContext(ctx, o.Code, k.DID, k.Alg, k.Fingerprint, k.Status, k.CreatedAt.UnixMilli(), millisOrZero(k.RetireAt), millisOrZero(k.RevokedAt),
				k.CertSerial, k.CertPEM, k.CertNotAfter.UnixMilli(), k.Credential); err != nil {
				return fmt.Errorf("registry: apply snapshot: key %s of %s: %w", k.DID, o.Code, err)
			}
		}
	}
	// A revoked key's certificate is in object_keys already; the others
	// were replaced while their key stayed.
	for _, rv := range s.Revoked {
		if keySerials[rv.Serial] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO replaced_certificates(serial, code, revoked_at) VALUES (?,?,?)`,
			rv.Serial, rv.Code, rv.RevokedAt.UnixMilli()); err != nil {
			return fmt.Errorf("registry: apply snapshot: replaced certificate %s: %w", rv.Serial, err)
		}
	}
	return nil
}

// identityState is what, of one object, an open session depends on: a
// change of it ends the session (SnapshotApplied.Changed).
func identityState(status, modelID, modelVersion, number, edge string, keys []string) string {
	return strings.Join(append([]string{status, modelID + "@" + modelVersion, number, edge}, keys...), "|")
}

func keyState(did, status, serial string, retireAt int64) string {
	return did + " " + status + " " + serial + " " + strconv.FormatInt(retireAt, 10)
}

// replicaState reads identityState of every object a replica holds.
func replicaState(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	keysOf := map[string][]string{}
	rows, err := tx.QueryContext(ctx, `SELECT code, did, status, cert_serial, retire_at FROM object_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("registry: apply snapshot: %w", err)
	}
	for rows.Next() {
		var c, did, status, serial string
		var retire int64
		if err := rows.Scan(&c, &did, &status, &serial, &retire); err != nil {
			rows.Close()
			return nil, fmt.Errorf("registry: apply snapshot: %w", err)
		}
		keysOf[c] = append(keysOf[c], keyState(did, status, serial, retire))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: apply snapshot: %w", err)
	}
	out := map[string]string{}
	rows, err = tx.QueryContext(ctx, `SELECT code, status, model_id, model_version, number, edge FROM objects`)
	if err != nil {
		return nil, fmt.Errorf("registry: apply snapshot: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c, status, modelID, modelVersion, number, edge string
		if err := rows.Scan(&c, &status, &modelID, &modelVersion, &number, &edge); err != nil {
			return nil, fmt.Errorf("registry: apply snapshot: %w", err)
		}
		out[c] = identityState(status, modelID, modelVersion, number, edge, keysOf[c])
	}
	return out, rows.Err()
}

// diffSnapshot compares a replica's state before with the snapshot.
func diffSnapshot(before map[string]string, s *snapshot.Snapshot) SnapshotApplied {
	a := SnapshotApplied{Edge: s.Edge, Deployment: s.Deployment, Version: s.Version, IssuedAt: s.IssuedAt, Objects: len(s.Objects)}
	in := map[string]bool{}
	for _, o := range s.Objects {
		in[o.Code] = true
		var ks []string
		for _, k := range o.Keys {
			ks = append(ks, keyState(k.DID, k.Status, k.CertSerial, millisOrZero(k.RetireAt)))
		}
		var modelID, modelVersion string
		if o.Model != nil {
			modelID, modelVersion = o.Model.ID, o.Model.Version
		}
		old, ok := before[o.Code]
		switch {
		case !ok:
			a.Added = append(a.Added, o.Code)
		case old != identityState(o.Status, modelID, modelVersion, o.Number, o.Edge, ks):
			a.Changed = append(a.Changed, o.Code)
		}
	}
	for c := range before {
		if !in[c] {
			a.Removed = append(a.Removed, c)
		}
	}
	slices.Sort(a.Added)
	slices.Sort(a.Removed)
	slices.Sort(a.Changed)
	return a
}

// AppliedSnapshotState is what a replica keeps about the snapshot it
// applied last.
type AppliedSnapshotState struct {
	Version    uint64    `json:"version"` // 0: none applied yet
	Edge       string    `json:"edge,omitempty"`
	Deployment string    `json:"deployment,omitempty"`
	IssuedAt   time.Time `json:"issued_at,omitzero"`  // when the hub read it
	AppliedAt  time.Time `json:"applied_at,omitzero"` // when this replica applied it
}

// AppliedSnapshot returns what the replica keeps about the snapshot it
// applied last (the zero state before the first, and on the hub).
func (r *Registry) AppliedSnapshot(ctx context.Context) (AppliedSnapshotState, error) {
	return appliedSnapshot(ctx, r.db.R)
}

// AppliedSnapshotVersion returns the version of the snapshot the replica
// applied last, 0 before the first: what snapshot.Verify takes as
// notBefore, so that an older snapshot is refused as stale.
func (r *Registry) AppliedSnapshotVersion(ctx context.Context) (uint64, error) {
	st, err := r.AppliedSnapshot(ctx)
	return st.Version, err
}

func appliedSnapshot(ctx context.Context, q queryer) (AppliedSnapshotState, error) {
	var st AppliedSnapshotState
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM meta WHERE key IN (?, ?, ?, ?, ?)`,
		metaSnapshotVersion, metaSnapshotEdge, metaSnapshotDeployment, metaSnapshotIssuedAt, metaSnapshotAppliedAt)
	if err != nil {
		return st, fmt.Errorf("registry: applied snapshot: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return st, fmt.Errorf("registry: applied snapshot: %w", err)
		}
		switch k {
		case metaSnapshotVersion:
			st.Version, err = strconv.ParseUint(v, 10, 64)
		case metaSnapshotEdge:
			st.Edge = v
		case metaSnapshotDeployment:
			st.Deployment = v
		case metaSnapshotIssuedAt:
			st.IssuedAt, err = time.Parse(time.RFC3339Nano, v)
		case metaSnapshotAppliedAt:
			st.AppliedAt, err = time.Parse(time.RFC3339Nano, v)
		}
		if err != nil {
			return st, fmt.Errorf("registry: applied snapshot: stored %s %q: %w", k, v, err)
		}
	}
	return st, rows.Err()
}

// snapshotCA reads the CA certificate of the snapshot applied last (nil
// before the first).
func (r *Registry) snapshotCA(ctx context.Context) (*ca.CA, error) {
	pem, ok, err := r.db.Meta(ctx, metaSnapshotCA)
	if err != nil || !ok {
		return nil, err
	}
	c, err := ca.FromCertificate([]byte(pem))
	if err != nil {
		return nil, fmt.Errorf("registry: the stored CA certificate of the applied snapshot: %w", err)
	}
	return c, nil
}
