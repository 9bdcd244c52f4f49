package registry

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Rotate gives an object a new key, certificate and credential. The old key
// keeps working for overlap (0 = the registry default; negative = revoke it
// at once) so a device can switch without losing its connection, and is then
// revoked by RetireDue.
func (r *Registry) Rotate(ctx context.Context, actor, codeStr string, ks KeySource, overlap, validity time.Duration) (*Registration, error) {
	if overlap == 0 {
		overlap = r.opts.RotationOverlap
	}
	if validity < 0 || validity > maxValidity {
		return nil, invalid("validity", "must be between 0 and 20 years")
	}
	rk, err := resolveKey(ks)
	if err != nil {
		return nil, err
	}
	var reg *Registration
	err = r.write(ctx, actor, func(c *change) error {
		o, err := getObject(ctx, c.tx, codeStr)
		if err != nil {
			return err
		}
		if ended(o.Status) {
			return fmt.Errorf("%w: object %s is %s; register it anew", ErrConflict, codeStr, o.Status)
		}
		if owner, err := keyOwner(ctx, c.tx, rk.did); err != nil {
			return err
		} else if owner != "" {
			return fmt.Errorf("%w: key %s is already registered to %s", ErrConflict, rk.did, owner)
		}
		var old []string
		for _, k := range o.Keys {
			if k.Status == KeyActive {
				old = append(old, k.DID)
			}
		}
		retireAt := c.now.Add(overlap)
		if overlap < 0 {
			if _, err := c.tx.ExecContext(ctx, `UPDATE object_keys SET status = 'revoked', revoked_at = ? WHERE code = ? AND status = 'active'`,
				c.now.UnixMilli(), codeStr); err != nil {
				return fmt.Errorf("registry: rotate: %w", err)
			}
		} else if _, err := c.tx.ExecContext(ctx, `UPDATE object_keys SET status = 'retiring', retire_at = ? WHERE code = ? AND status = 'active'`,
			retireAt.UnixMilli(), codeStr); err != nil {
			return fmt.Errorf("registry: rotate: %w", err)
		}
		if _, err := c.tx.ExecContext(ctx, `UPDATE objects SET updated_at = ? WHERE code = ?`, c.now.UnixMilli(), codeStr); err != nil {
			return fmt.Errorf("registry: rotate: %w", err)
		}
		if reg, err = c.issueKey(o, rk, validity); err != nil {
			return err
		}
		data := map[string]any{"new_did": rk.did, "old_dids": old, "hub_generated_key": rk.priv != nil}
		if overlap < 0 {
			data["old_revoked"] = true
		} else {
			data["old_retire_at"] = retireAt
		}
		if err := c.log(KindKeyRotated, o.Tenant, codeStr, data); err != nil {
			return err
		}
		k := o.Keys[len(o.Keys)-1]
		return c.log(KindCredentialIssued, o.Tenant, codeStr, map[string]any{"did": rk.did, "cert_serial": k.CertSerial, "not_after": k.CertNotAfter})
	})
	if err != nil {
		return nil, err
	}
	// Reload so the returned record shows the old keys' new states.
	if o, err := getObject(ctx, r.db.W, codeStr); err == nil {
		reg.Object = o
	}
	return reg, nil
}

// RetireDue revokes rotated-out keys whose overlap has ended and returns how many.
func (r *Registry) RetireDue(ctx context.Context) (int, error) {
	n := 0
	err := r.write(ctx, "system", func(c *change) error {
		rows, err := c.tx.QueryContext(ctx, `SELECT k.code, k.did, o.tenant FROM object_keys k JOIN objects o ON o.code = k.code
			WHERE k.status = 'retiring' AND k.retire_at <= ? LIMIT 1000`, c.now.UnixMilli())
		if err != nil {
			return fmt.Errorf("registry: retire: %w", err)
		}
		type due struct{ code, did, tenant string }
		var list []due
		for rows.Next() {
			var d due
			if err := rows.Scan(&d.code, &d.did, &d.tenant); err != nil {
				rows.Close()
				return err
			}
			list = append(list, d)
		}
		rows.Close()
		for _, d := range list {
			if _, err := c.tx.ExecContext(ctx, `UPDATE object_keys SET status = 'revoked', revoked_at = ? WHERE did = ?`, c.now.UnixMilli(), d.did); err != nil {
				return fmt.Errorf("registry: retire: %w", err)
			}
			if err := c.log(KindKeyRevoked, d.tenant, d.code, map[string]any{"did": d.did, "reason": "rotation overlap ended"}); err != nil {
				return err
			}
		}
		n = len(list)
		return nil
	})
	return n, err
}

// Revoke ends an object's identity: every key and certificate is revoked and
// admission answers "revoked" from now on. It cannot be undone.
func (r *Registry) Revoke(ctx context.Context, actor, codeStr, reason string) (*Object, error) {
	return r.setStatus(ctx, actor, codeStr, StatusRevoked, reason)
}

// Quarantine limits an object to remediation: it may still connect, but the
// adapters admit it only to remediation topics (firmware, rotation).
func (r *Registry) Quarantine(ctx context.Context, actor, codeStr, reason string) (*Object, error) {
	return r.setStatus(ctx, actor, codeStr, StatusQuarantined, reason)
}

// Reinstate returns a quarantined object to active.
func (r *Registry) Reinstate(ctx context.Context, actor, codeStr, reason string) (*Object, error) {
	return r.setStatus(ctx, actor, codeStr, StatusActive, reason)
}

func (r *Registry) setStatus(ctx context.Context, actor, codeStr, status, reason string) (*Object, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) > 500 {
		return nil, invalid("reason", "at most 500 characters")
	}
	err := r.write(ctx, actor, func(c *change) error {
		o, err := getObject(ctx, c.tx, codeStr)
		if err != nil {
			return err
		}
		kind := ""
		switch {
		case ended(o.Status):
			return fmt.Errorf("%w: object %s is %s", ErrConflict, codeStr, o.Status)
		case status == StatusRevoked:
			kind = KindObjectRevoked
			if _, err := c.tx.ExecContext(ctx, `UPDATE object_keys SET status = 'revoked', revoked_at = ? WHERE code = ? AND status != 'revoked'`,
				c.now.UnixMilli(), codeStr); err != nil {
				return fmt.Errorf("registry: revoke keys: %w", err)
			}
		case status == StatusQuarantined && o.Status == StatusQuarantined:
			return fmt.Errorf("%w: object %s is already quarantined", ErrConflict, codeStr)
		case status == StatusQuarantined:
			kind = KindObjectQuarantined
		case status == StatusActive && o.Status != StatusQuarantined:
			return fmt.Errorf("%w: object %s is %s, not quarantined", ErrConflict, codeStr, o.Status)
		default:
			kind = KindObjectReinstated
		}
		if _, err := c.tx.ExecContext(ctx, `UPDATE objects SET status = ?, status_reason = ?, updated_at = ? WHERE code = ?`,
			status, reason, c.now.UnixMilli(), codeStr); err != nil {
			return fmt.Errorf("registry: set status: %w", err)
		}
		return c.log(kind, o.Tenant, codeStr, map[string]any{"from": o.Status, "reason": reason})
	})
	if err != nil {
		return nil, err
	}
	return getObject(ctx, r.db.W, codeStr)
}

// Presented is what a connecting device shows; either field may be empty.
type Presented struct {
	CertSerial string // hex, as stored
	DID        string
}

// Admission is the answer to "may this object connect, and how far?".
type Admission struct {
	Status string  `json:"status"` // active, quarantined, revoked or unknown
	Reason string  `json:"reason,omitempty"`
	Object *Object `json:"object,omitempty"`
	Key    *Key    `json:"key,omitempty"`
}

// Admit is the check protocol adapters call at connect time. A key that is
// revoked, rotated out past its overlap, expired or not the object's makes the
// answer "revoked" or "unknown" even when the object itself is active.
func (r *Registry) Admit(ctx context.Context, codeStr string, p Presented) (Admission, error) {
	o, err := r.Object(ctx, codeStr)
	if err != nil {
		if isNotFound(err) {
			return Admission{Status: StatusUnknown, Reason: "no object with this code"}, nil
		}
		return Admission{}, err
	}
	a := Admission{Object: o}
	if ended(o.Status) {
		// Decommissioned and deleted objects are refused like revoked ones;
		// the reason tells them apart.
		a.Status, a.Reason = StatusRevoked, "object "+o.Status
		if o.StatusReason != "" {
			a.Reason += ": " + o.StatusReason
		}
		return a, nil
	}
	if p.CertSerial != "" || p.DID != "" {
		var key *Key
		for i := range o.Keys {
			k := &o.Keys[i]
			if (p.CertSerial != "" && strings.EqualFold(k.CertSerial, p.CertSerial)) || (p.DID != "" && k.DID == p.DID) {
				key = k
			}
		}
		if key == nil {
			a.Status, a.Reason = StatusUnknown, "the presented key or certificate is not this object's"
			return a, nil
		}
		a.Key = key
		if ok, why := KeyUsable(*key, r.now()); !ok {
			a.Status, a.Reason = StatusRevoked, why
			return a, nil
		}
	}
	if o.Status == StatusQuarantined {
		a.Status, a.Reason = StatusQuarantined, "quarantined: remediation only"
		if o.StatusReason != "" {
			a.Reason += " (" + o.StatusReason + ")"
		}
		return a, nil
	}
	a.Status = StatusActive
	return a, nil
}

// KeyUsable reports whether a key may still authenticate its object at now,
// and if not, why.
func KeyUsable(k Key, now time.Time) (bool, string) {
	switch {
	case k.Status == KeyRevoked:
		return false, "key revoked"
	case k.Status == KeyRetiring && k.RetireAt != nil && !now.Before(*k.RetireAt):
		return false, "key rotated out and its overlap has ended"
	case now.After(k.CertNotAfter):
		return false, "certificate expired"
	}
	return true, ""
}

// Now is the registry's clock, for callers that check KeyUsable.
func (r *Registry) Now() time.Time { return r.now() }
