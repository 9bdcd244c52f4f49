package registry

// The end of an object's life: updating its metadata, decommissioning it,
// and deleting a tenant's test objects.

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/credential"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/number"
)

// More object states: both are final, and admission answers "revoked" for
// them (with the reason "object decommissioned").
const (
	// StatusDecommissioned: taken out of service; identity revoked, data
	// kept until retention removes it.
	StatusDecommissioned = "decommissioned"
	// StatusDeleted: a test object revoked and removed; its row is kept
	// under an archive code only so that its revoked keys stay in the CRL
	// and its DIDs and number resolve to its history.
	StatusDeleted = "deleted"
)

// ended reports whether an object's identity is over for good.
func ended(status string) bool {
	return status == StatusRevoked || status == StatusDecommissioned || status == StatusDeleted
}

// UpdateRequest changes an object's metadata; a nil field is left as it is.
// Tags are either replaced (Tags) or edited (TagsMerge sets keys, TagsRemove
// drops them), not both.
type UpdateRequest struct {
	Path       *[]string         // nil: unchanged; empty: no place in the hierarchy
	Tags       map[string]string // non-nil: the new set of tags
	TagsMerge  map[string]string
	TagsRemove []string
	// Model: another version of the object's model (an upgrade, or a
	// rollback), or any usable model when the object has none.
	Model *ModelRef
	Edge  *string // nil: unchanged; "": no edge
	// Network: nil unchanged; "" none; otherwise a netprofile name.
	Network *string
}

func (u UpdateRequest) empty() bool {
	return u.Path == nil && u.Tags == nil && u.TagsMerge == nil && u.TagsRemove == nil && u.Model == nil && u.Edge == nil && u.Network == nil
}

// change of one field, for the audit entry.
type fieldChange struct {
	Old any `json:"old"`
	New any `json:"new"`
}

// Update changes an object's path, tags, model, edge or network in one transaction,
// with one audit entry object.updated naming each changed field with its
// old and new value. The number keeps its interface id; it changes only
// when the object's /64 does, which is when its edge changes (a path
// change never moves the number: the site the number was derived from is
// the one stored at registration). A new number or model means a new
// certificate (IP SAN) or credential for the active key, issued here; the
// replaced certificate is revoked. Nothing changes (and nothing is logged)
// when every given field already has its value.
func (r *Registry) Update(ctx context.Context, actor, codeStr string, u UpdateRequest) (*Object, error) {
	if u.empty() {
		return nil, invalid("body", "nothing to update: give path, tags, tags_merge, tags_remove, model, edge or network")
	}
	if u.Tags != nil && (u.TagsMerge != nil || u.TagsRemove != nil) {
		return nil, invalid("tags", "replace the tags (tags) or edit them (tags_merge, tags_remove), not both")
	}
	if u.Path != nil && len(*u.Path) > 0 {
		if _, err := code.ParsePath(strings.Join(*u.Path, "/")); err != nil {
			return nil, invalidErr("path", err)
		}
	}
	for _, m := range []map[string]string{u.Tags, u.TagsMerge} {
		for k, v := range m {
			if err := code.ValidTagKey(k); err != nil {
				return nil, invalidErr("tags."+k, err)
			}
			if err := code.ValidTagValue(v); err != nil {
				return nil, invalidErr("tags."+k, err)
			}
		}
	}
	for _, k := range u.TagsRemove {
		if err := code.ValidTagKey(k); err != nil {
			return nil, invalidErr("tags_remove", err)
		}
	}
	if u.Model != nil && u.Model.ID == "" {
		return nil, invalid("model", "needs an id (and a version, or latest)")
	}
	if u.Network != nil {
		if err := ValidNetwork(*u.Network); err != nil {
			return nil, err
		}
	}
	err := r.write(ctx, actor, func(c *change) error {
		o, err := getObject(ctx, c.tx, codeStr)
		if err != nil {
			return err
		}
		if ended(o.Status) {
			return fmt.Errorf("%w: object %s is %s", ErrConflict, codeStr, o.Status)
		}
		changes := map[string]fieldChange{}
		next := *o
		if u.Path != nil && !slices.Equal(o.Path, *u.Path) {
			next.Path = *u.Path
			if len(next.Path) == 0 {
				next.Path = nil
			}
			changes["path"] = fieldChange{strings.Join(o.Path, "/"), strings.Join(next.Path, "/")}
		}
		tags := maps.Clone(nonNilTags(o.Tags))
		if u.Tags != nil {
			tags = maps.Clone(u.Tags)
		}
		maps.Copy(tags, u.TagsMerge)
		for _, k := range u.TagsRemove {
			delete(tags, k)
		}
		if len(tags) > 64 {
			return invalid("tags", "at most 64 tags")
		}
		if !maps.Equal(tags, nonNilTags(o.Tags)) {
			next.Tags = tags
			changes["tags"] = fieldChange{nonNilTags(o.Tags), tags}
		}
		if u.Model != nil {
			ref, err := usableModel(ctx, c.tx, *u.Model, o.Tenant)
			if err != nil {
				return err
			}
			if o.Model != nil && ref.ID != o.Model.ID {
				return invalid("model", "object %s is on %s; an update moves it to another version of that model, not to %s", codeStr, o.Model.ID, ref.ID)
			}
			if o.Model == nil || ref != *o.Model {
				next.Model = &ref
				var old any
				if o.Model != nil {
					old = o.Model.ID + "@" + o.Model.Version
				}
				changes["model"] = fieldChange{old, ref.ID + "@" + ref.Version}
			}
		}
		if u.Network != nil && *u.Network != o.Network {
			next.Network = *u.Network
			changes["network"] = fieldChange{o.Network, next.Network}
		}
		subnetKey := ""
		if u.Edge != nil && *u.Edge != o.Edge {
			if err := c.checkEdge(o, *u.Edge); err != nil {
				return err
			}
			next.Edge = *u.Edge
			changes["edge"] = fieldChange{o.Edge, next.Edge}
			// The edge decides the /64; without one, the site (first path
			// segment) does, as at registration.
			subnetKey = "site:"
			if next.Edge != "" {
				subnetKey = "edge:" + next.Edge
			} else if len(next.Path) > 0 {
				subnetKey = "site:" + next.Path[0]
			}
			tenant, err := getTenant(ctx, c.tx, o.Tenant)
			if err != nil {
				return err
			}
			subnet, err := c.subnetFor(tenant, subnetKey)
			if err != nil {
				return err
			}
			old, err := netip.ParseAddr(o.Number)
			if err != nil {
				return fmt.Errorf("registry: object %s has a bad number %q: %w", codeStr, o.Number, err)
			}
			a := old.As16()
			var iid [8]byte
			copy(iid[:], a[8:])
			addr := number.Address(subnet, iid)
			if addr != old {
				var n int
				if err := c.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM objects WHERE number = ?`, addr.String()).Scan(&n); err != nil {
					return fmt.Errorf("registry: number: %w", err)
				}
				if n > 0 {
					return fmt.Errorf("%w: number %s in the new /64 is taken", ErrConflict, addr)
				}
				next.Number = addr.String()
				changes["number"] = fieldChange{o.Number, next.Number}
			}
		}
		if len(changes) == 0 {
			return nil
		}
		tagJSON, _ := json.Marshal(nonNilTags(next.Tags))
		var modelID, modelVersion string
		if next.Model != nil {
			modelID, modelVersion = next.Model.ID, next.Model.Version
		}
		q := `UPDATE objects SET path = ?, tags = ?, edge = ?, model_id = ?, model_version = ?, network = ?, number = ?, updated_at = ?`
		args := []any{strings.Join(next.Path, "/"), string(tagJSON), next.Edge, modelID, modelVersion, next.Network, next.Number, c.now.UnixMilli()}
		if subnetKey != "" {
			q += `, subnet_key = ?`
			args = append(args, subnetKey)
		}
		if _, err := c.tx.ExecContext(ctx, q+` WHERE code = ?`, append(args, codeStr)...); err != nil {
			return fmt.Errorf("registry: update object: %w", err)
		}
		data := map[string]any{"changes": changes}
		_, numberChanged := changes["number"]
		if _, modelChanged := changes["model"]; modelChanged || numberChanged {
			reissued, err := c.reissue(&next, numberChanged)
			if err != nil {
				return err
			}
			if reissued != nil {
				data["reissued"] = reissued
			}
		}
		return c.log(KindObjectUpdated, o.Tenant, codeStr, data)
	})
	if err != nil {
		return nil, err
	}
	return getObject(ctx, r.db.W, codeStr)
}

// UpdateNeedsReconnect reports whether an object.updated entry's data
// changed what a device session holds (the model it validates against, the
// number it was admitted with), so that the device must connect again.
func UpdateNeedsReconnect(data []byte) bool {
	var d struct {
		Changes map[string]json.RawMessage `json:"changes"`
	}
	if json.Unmarshal(data, &d) != nil {
		return true
	}
	_, model := d.Changes["model"]
	_, edge := d.Changes["edge"]
	return model || edge
}

// checkEdge checks that edge may serve o ("" = no edge).
func (c *change) checkEdge(o *Object, edge string) error {
	if edge == "" {
		return nil
	}
	ec, err := code.Parse(edge)
	if err != nil {
		return invalidErr("edge", err)
	}
	if ec.Namespace != o.Tenant {
		return invalid("edge", "edge %s is in another tenant than %s", edge, o.Code)
	}
	if edge == o.Code {
		return invalid("edge", "an object cannot be its own edge")
	}
	var kind, status string
	err = c.tx.QueryRowContext(c.ctx, `SELECT kind, status FROM objects WHERE code = ?`, edge).Scan(&kind, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return invalid("edge", "edge %s is not registered", edge)
	} else if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if kind != KindEdge && kind != KindGateway {
		return invalid("edge", "%s is a %s, not an edge or gateway", edge, kind)
	}
	if status != StatusActive {
		return invalid("edge", "edge %s is %s", edge, status)
	}
	return nil
}

// reissue gives the object's active key a new credential (model or number
// changed) and, with newCert, a new certificate naming the new number; the
// replaced certificate is revoked. It keeps the key's expiry. An object
// without an active key (an asset) needs nothing.
func (c *change) reissue(o *Object, newCert bool) (map[string]any, error) {
	var did, serial, certPEM string
	var notAfter int64
	err := c.tx.QueryRowContext(c.ctx, `SELECT did, cert_serial, cert_pem, cert_not_after FROM object_keys WHERE code = ? AND status = 'active'`, o.Code).
		Scan(&did, &serial, &certPEM, &notAfter)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: reissue: %w", err)
	}
	expiry := time.UnixMilli(notAfter).UTC()
	validity := expiry.Sub(c.now)
	if validity <= 0 {
		validity = c.r.opts.CertValidity
	}
	notBefore, newSerial := c.now.Add(-ca.ClockSkew), serial
	out := map[string]any{"did": did, "credential": true}
	if newCert {
		pub, err := keys.ParseDID(did)
		if err != nil {
			return nil, fmt.Errorf("registry: reissue: stored DID %s: %w", did, err)
		}
		addr, _ := netip.ParseAddr(o.Number)
		cert, err := c.r.CA().Issue(ca.IssueRequest{
			Code: o.Code, DID: did, Number: addr, PublicKey: pub, Validity: validity, Tenant: o.Tenant, NotBefore: notBefore,
		})
		if err != nil {
			return nil, fmt.Errorf("registry: reissue certificate: %w", err)
		}
		newSerial = hex.EncodeToString(cert.SerialNumber.Bytes())
		certPEM = string(ca.EncodeCertPEM(cert))
		expiry = cert.NotAfter.UTC()
		if _, err := c.tx.ExecContext(c.ctx, `INSERT INTO replaced_certificates(serial, code, revoked_at) VALUES (?,?,?)`,
			serial, o.Code, c.now.UnixMilli()); err != nil {
			return nil, fmt.Errorf("registry: reissue: %w", err)
		}
		out["cert_serial"], out["replaced_cert_serial"] = newSerial, serial
	}
	cl := credential.Claims{
		ID: "urn:wanwu:credential:" + newSerial, Subject: did,
		Code: o.Code, Number: o.Number, Tenant: o.Tenant, Kind: o.Kind,
		IssuedAt: c.now, NotBefore: notBefore, ExpiresAt: expiry,
	}
	if o.Model != nil {
		cl.ModelID, cl.ModelVersion = o.Model.ID, o.Model.Version
	}
	cred, err := credential.Issue(c.r.opts.Signer, cl)
	if err != nil {
		return nil, fmt.Errorf("registry: reissue credential: %w", err)
	}
	if _, err := c.tx.ExecContext(c.ctx, `UPDATE object_keys SET cert_serial = ?, cert_pem = ?, cert_not_after = ?, credential = ? WHERE did = ?`,
		newSerial, certPEM, expiry.UnixMilli(), cred, did); err != nil {
		return nil, fmt.Errorf("registry: reissue: %w", err)
	}
	return out, nil
}

// Decommission takes an object out of service for good: every key and
// certificate is revoked exactly as Revoke does, the status becomes
// decommissioned and admission refuses it ("object decommissioned"). Its
// telemetry and events stay in the stores until retention removes them.
// With releaseCode the code may later be registered again as a new object:
// this row, with its revoked keys, moves to an archive code
// "<code>~<n>" (a "~" no code can contain) and remembers the code in
// ReleasedCode; its number and DIDs keep resolving to it, and the audit log
// keeps the history under the code. Without, the code stays reserved.
func (r *Registry) Decommission(ctx context.Context, actor, codeStr, reason string, releaseCode bool) (*Object, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > 500 {
		return nil, invalid("reason", "at most 500 characters")
	}
	final := codeStr
	err := r.write(ctx, actor, func(c *change) error {
		o, err := getObject(ctx, c.tx, codeStr)
		if err != nil {
			return err
		}
		if o.Status == StatusDecommissioned || o.Status == StatusDeleted {
			return fmt.Errorf("%w: object %s is already %s", ErrConflict, codeStr, o.Status)
		}
		data, err := c.endIdentity(o, StatusDecommissioned, reason, releaseCode)
		if err != nil {
			return err
		}
		if a, ok := data["archived_as"].(string); ok {
			final = a
		}
		return c.log(KindObjectDecommissioned, o.Tenant, codeStr, data)
	})
	if err != nil {
		return nil, err
	}
	return getObject(ctx, r.db.W, final)
}

// endIdentity revokes o's keys, sets its final status and, with archive,
// moves the row to an archive code. It refuses an edge or gateway that
// still serves objects whose identity has not ended.
func (c *change) endIdentity(o *Object, status, reason string, archive bool) (map[string]any, error) {
	var served []string
	rows, err := c.tx.QueryContext(c.ctx, `SELECT code FROM objects WHERE edge = ? AND status NOT IN ('revoked', 'decommissioned', 'deleted') ORDER BY code LIMIT 5`, o.Code)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		served = append(served, s)
	}
	rows.Close()
	if len(served) > 0 {
		return nil, fmt.Errorf("%w: %s still serves %s: move them to another edge (object update --edge) or end them first", ErrConflict, o.Code, strings.Join(served, ", "))
	}
	var revoked []string
	for _, k := range o.Keys {
		if k.Status != KeyRevoked {
			revoked = append(revoked, k.DID)
		}
	}
	if _, err := c.tx.ExecContext(c.ctx, `UPDATE object_keys SET status = 'revoked', revoked_at = ? WHERE code = ? AND status != 'revoked'`,
		c.now.UnixMilli(), o.Code); err != nil {
		return nil, fmt.Errorf("registry: revoke keys: %w", err)
	}
	if _, err := c.tx.ExecContext(c.ctx, `UPDATE objects SET status = ?, status_reason = ?, updated_at = ? WHERE code = ?`,
		status, reason, c.now.UnixMilli(), o.Code); err != nil {
		return nil, fmt.Errorf("registry: set status: %w", err)
	}
	data := map[string]any{"from": o.Status, "reason": reason, "revoked_dids": revoked, "release_code": archive}
	if archive {
		to, err := c.archive(o.Code)
		if err != nil {
			return nil, err
		}
		data["archived_as"] = to
	}
	return data, nil
}

// archive moves an object's row and its keys to "<code>~<n>", freeing the
// code. The foreign key from object_keys is checked at commit, when both
// sides carry the new code.
func (c *change) archive(codeStr string) (string, error) {
	var n int
	if err := c.tx.QueryRowContext(c.ctx, `SELECT COUNT(*) FROM objects WHERE released_code = ?`, codeStr).Scan(&n); err != nil {
		return "", fmt.Errorf("registry: archive: %w", err)
	}
	to := fmt.Sprintf("%s~%d", codeStr, n+1)
	for _, q := range []string{
		`PRAGMA defer_foreign_keys = ON`,
		`UPDATE objects SET code = ?2, released_code = ?1 WHERE code = ?1`,
		`UPDATE object_keys SET code = ?2 WHERE code = ?1`,
	} {
		args := []any{codeStr, to}
		if strings.HasPrefix(q, "PRAGMA") {
			args = nil
		}
		if _, err := c.tx.ExecContext(c.ctx, q, args...); err != nil {
			return "", fmt.Errorf("registry: archive %s: %w", codeStr, err)
		}
	}
	return to, nil
}

// DeleteRequest selects a tenant's test objects to delete.
type DeleteRequest struct {
	// Filter must name a tenant and at least one tag: deletion is for
	// objects an operator marked (env=test, say), never "everything under
	// this path". Under, Kind and Edge narrow it further.
	Filter ListFilter
	Reason string
	DryRun bool
}

// DeleteResult says what was (or, dry run, would be) deleted.
type DeleteResult struct {
	DryRun  bool     `json:"dry_run"`
	Deleted []string `json:"deleted"`
	// More is set when more objects match than one request deletes
	// (MaxDelete): repeat the request.
	More bool `json:"more,omitempty"`
}

// MaxDelete bounds the objects one delete request removes.
const MaxDelete = 1000

// Delete revokes and removes a tenant's test objects, selected by tags (at
// least one) and optionally path, kind and edge, with one audit entry
// object.deleted per object, in one transaction. A removed object's code is
// free again; its row stays under an archive code (status deleted) only so
// that its revoked certificates stay in the CRL and its DIDs are never
// reused. Objects already revoked or decommissioned are deleted too (they
// are what test runs leave behind); an edge that still serves objects
// outside the selection refuses the whole request.
func (r *Registry) Delete(ctx context.Context, actor string, req DeleteRequest) (*DeleteResult, error) {
	f := req.Filter
	if f.Tenant == "" {
		return nil, invalid("tenant", "name the tenant whose objects are deleted")
	}
	if len(f.Tags) == 0 {
		return nil, invalid("tag", "name at least one tag the objects to delete carry (e.g. env=test)")
	}
	if f.Status != "" || f.After != "" {
		return nil, invalid("status", "delete selects by tenant, tag, under, kind and edge only")
	}
	reason := strings.TrimSpace(req.Reason)
	if len(reason) > 500 {
		return nil, invalid("reason", "at most 500 characters")
	}
	res := &DeleteResult{DryRun: req.DryRun, Deleted: []string{}}
	err := r.write(ctx, actor, func(c *change) error {
		f.Limit = MaxDelete
		var all []*Object
		for {
			page, next, err := listObjects(ctx, c.tx, f)
			if err != nil {
				return err
			}
			for _, o := range page {
				if o.Status != StatusDeleted {
					all = append(all, o)
				}
			}
			if next == "" || len(all) >= MaxDelete {
				res.More = next != "" || len(all) > MaxDelete
				break
			}
			f.After = next
		}
		if len(all) > MaxDelete {
			all = all[:MaxDelete]
		}
		for _, o := range all {
			res.Deleted = append(res.Deleted, o.Code)
		}
		if req.DryRun {
			return nil
		}
		// Delete the served before their edges, so that an edge in the
		// selection is free when its turn comes.
		slices.SortStableFunc(all, func(a, b *Object) int {
			ea, eb := a.Kind == KindEdge || a.Kind == KindGateway, b.Kind == KindEdge || b.Kind == KindGateway
			switch {
			case ea == eb:
				return 0
			case eb:
				return -1
			}
			return 1
		})
		for _, lo := range all {
			o, err := getObject(ctx, c.tx, lo.Code)
			if err != nil {
				return err
			}
			data, err := c.endIdentity(o, StatusDeleted, reason, true)
			if err != nil {
				return err
			}
			if err := c.log(KindObjectDeleted, o.Tenant, o.Code, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
