package snapshot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// FormatVersion is the snapshot format this package writes and reads. A
// change an edge of this version could misread gets a new number; Verify
// refuses every number but this one (ErrFormat).
const FormatVersion = 1

// MaxSize bounds a signed snapshot (the envelope, in bytes). An edge's
// objects cost about 3 KiB each in the envelope (the certificate and the
// credential are most of it), so this holds some tens of thousands.
const MaxSize = 128 << 20

// Errors of Sign, Verify and Validate; each comes wrapped with the reason.
var (
	// ErrTooLarge: the signed snapshot is larger than MaxSize.
	ErrTooLarge = errors.New("snapshot too large")
	// ErrMalformed: the bytes are not a snapshot envelope, or the signed
	// payload is not a snapshot's JSON (unknown members, trailing data).
	ErrMalformed = errors.New("snapshot malformed")
	// ErrForged: the signature is not the hub key's over the payload: the
	// snapshot was changed after signing, or signed by another key.
	ErrForged = errors.New("snapshot signature invalid")
	// ErrFormat: the payload's format version is not FormatVersion.
	ErrFormat = errors.New("snapshot format unknown")
	// ErrInvalid: a field is missing, out of its grammar or inconsistent
	// with another (a key whose certificate names another key, an object
	// outside the edge, a model no one carries).
	ErrInvalid = errors.New("snapshot content invalid")
	// ErrWrongEdge: the snapshot is for another edge.
	ErrWrongEdge = errors.New("snapshot is for another edge")
	// ErrStale: the snapshot's version is below the one already applied: an
	// old snapshot replayed, or one from a hub restored from an older backup.
	ErrStale = errors.New("snapshot older than the one applied")
)

// Snapshot is the identities of the devices behind one edge, as the hub
// holds them at Version. Times are UTC with millisecond precision (the
// hub's registry stores milliseconds), so that they round-trip exactly.
type Snapshot struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Deployment is the hub's deployment id.
	Deployment string `json:"deployment"`
	// Edge is the code of the edge (or gateway) the snapshot is for.
	Edge string `json:"edge"`
	// Version is the size of the hub's audit log when the snapshot was
	// read: it grows with every identity change, across the hub's restarts.
	Version uint64 `json:"version"`
	// IssuedAt is when the hub read the snapshot.
	IssuedAt time.Time `json:"issued_at"`
	// CACertificate is the hub CA's certificate (PEM), the trust anchor of
	// the devices' client certificates.
	CACertificate string `json:"ca_certificate"`
	// Revoked lists every certificate issued to an object of the snapshot
	// and revoked since: revoked keys' certificates, and certificates
	// replaced while their key stayed (an edge change moved the number).
	Revoked []Revoked `json:"revoked"`
	// Tenants are the tenants of the objects.
	Tenants []Tenant `json:"tenants"`
	// Models are the thing model versions the objects use.
	Models []Model `json:"models"`
	// Objects are the edge itself and every object behind it: those whose
	// edge is the edge, and, transitively, those behind a gateway or edge
	// that is behind it. Objects whose code was released (archived at the
	// hub) are not included.
	Objects []Object `json:"objects"`
}

// Revoked is one revoked certificate.
type Revoked struct {
	Serial    string    `json:"serial"` // lowercase hex, as the registry stores it
	Code      string    `json:"code"`   // the object it was issued to
	RevokedAt time.Time `json:"revoked_at"`
}

// Tenant is a tenant as the hub's registry stores it.
type Tenant struct {
	Name      string    `json:"name"`
	Title     string    `json:"title,omitempty"`
	Prefix    string    `json:"prefix"`
	PrefixSet bool      `json:"prefix_set,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Model is one thing model version, its document byte for byte as the hub
// stores it (canonical JSON; base64 in the snapshot's JSON so that no
// re-encoding can change it).
type Model struct {
	ID               string     `json:"id"`
	Version          string     `json:"version"`
	Tenant           string     `json:"tenant"` // the id's namespace ("std" for a shared model)
	Doc              []byte     `json:"doc"`
	CreatedAt        time.Time  `json:"created_at"`
	DeprecatedAt     *time.Time `json:"deprecated_at,omitempty"`
	DeprecatedReason string     `json:"deprecated_reason,omitempty"`
}

// ModelRef names a model version.
type ModelRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Object is one object's record with all its keys. Number, SubnetKey and
// IIDAttempt are the hub's, copied verbatim: an edge derives nothing.
type Object struct {
	Code         string            `json:"code"`
	Tenant       string            `json:"tenant"`
	Kind         string            `json:"kind"`
	Status       string            `json:"status"`
	StatusReason string            `json:"status_reason,omitempty"`
	Path         []string          `json:"path,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Edge         string            `json:"edge,omitempty"`
	Model        *ModelRef         `json:"model,omitempty"`
	Network      string            `json:"network,omitempty"`
	Number       string            `json:"number"`
	SubnetKey    string            `json:"subnet_key"`
	IIDAttempt   int               `json:"iid_attempt"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	// Keys are every key the object holds or held, oldest first.
	Keys []Key `json:"keys,omitempty"`
}

// Key is one key with the certificate and credential issued for it. The
// DID is the public key (did:key).
type Key struct {
	DID          string     `json:"did"`
	Alg          string     `json:"alg"`
	Fingerprint  string     `json:"fingerprint"` // hex SHA-256 of the key's SPKI
	Status       string     `json:"status"`      // active, retiring or revoked
	CreatedAt    time.Time  `json:"created_at"`
	RetireAt     *time.Time `json:"retire_at,omitempty"` // a retiring key's end of overlap
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	CertSerial   string     `json:"cert_serial"` // lowercase hex
	CertPEM      string     `json:"cert_pem"`
	CertNotAfter time.Time  `json:"cert_not_after"`
	Credential   string     `json:"credential"` // the signed device credential (VC-JWT)
}

// Object returns the object with the code, or nil.
func (s *Snapshot) Object(c string) *Object {
	for i := range s.Objects {
		if s.Objects[i].Code == c {
			return &s.Objects[i]
		}
	}
	return nil
}

// Bounds on fields that have no grammar of their own.
const (
	maxText  = 1024 // deployment, status reason, title, model version, ...
	maxModel = 1 << 20
)

// Validate checks the snapshot's fields and their consistency: grammar of
// codes, paths, tags and numbers; that keys, certificates and fingerprints
// name one key each and belong to their object; that every object is the
// edge or behind it, in a tenant of the snapshot, on a model it carries;
// that nothing is listed twice. It does not know the registry's kinds and
// states: the registry that applies a snapshot checks those. Errors wrap
// ErrFormat or ErrInvalid, naming the field.
func Validate(s *Snapshot) error {
	if s == nil {
		return fmt.Errorf("%w: no snapshot", ErrInvalid)
	}
	if s.Format != FormatVersion {
		return fmt.Errorf("%w: format %d, this binary reads %d", ErrFormat, s.Format, FormatVersion)
	}
	v := validator{}
	v.text("deployment", s.Deployment, true)
	if _, err := code.Parse(s.Edge); err != nil {
		v.fail("edge", "%v", err)
	}
	if s.Version == 0 {
		v.fail("version", "must be at least 1")
	}
	if s.IssuedAt.IsZero() {
		v.fail("issued_at", "missing")
	}
	if _, err := ca.FromCertificate([]byte(s.CACertificate)); err != nil {
		v.fail("ca_certificate", "%v", err)
	}
	if v.err != nil {
		return v.err
	}
	tenants := map[string]bool{}
	for i, t := range s.Tenants {
		f := fmt.Sprintf("tenants[%d]", i)
		if err := code.ValidNamespace(t.Name); err != nil {
			v.fail(f+".name", "%v", err)
		} else if tenants[t.Name] {
			v.fail(f+".name", "tenant %s listed twice", t.Name)
		}
		tenants[t.Name] = true
		v.text(f+".title", t.Title, false)
		if p, err := netip.ParsePrefix(t.Prefix); err != nil || !p.Addr().Is6() || p.Bits() != 48 {
			v.fail(f+".prefix", "%q is not an IPv6 /48", t.Prefix)
		}
	}
	models := map[ModelRef]bool{}
	for i, m := range s.Models {
		f := fmt.Sprintf("models[%d]", i)
		mc, err := code.Parse(m.ID)
		if err != nil {
			v.fail(f+".id", "%v", err)
			continue
		}
		v.text(f+".version", m.Version, true)
		if m.Tenant != mc.Namespace {
			v.fail(f+".tenant", "%q, but the id's namespace is %q", m.Tenant, mc.Namespace)
		}
		if len(m.Doc) == 0 || len(m.Doc) > maxModel {
			v.fail(f+".doc", "must be 1 to %d bytes", maxModel)
		}
		v.text(f+".deprecated_reason", m.DeprecatedReason, false)
		ref := ModelRef{m.ID, m.Version}
		if models[ref] {
			v.fail(f, "model %s@%s listed twice", m.ID, m.Version)
		}
		models[ref] = true
	}
	if v.err != nil {
		return v.err
	}
	objects := map[string]*Object{}
	for i := range s.Objects {
		o := &s.Objects[i]
		if _, err := code.Parse(o.Code); err == nil && objects[o.Code] == nil {
			objects[o.Code] = o
		}
	}
	if objects[s.Edge] == nil {
		v.fail("objects", "the edge %s itself is not among them", s.Edge)
	}
	numbers, dids, serials := map[string]bool{}, map[string]bool{}, map[string]string{}
	for i := range s.Objects {
		v.object(fmt.Sprintf("objects[%d]", i), s, &s.Objects[i], tenants, models, objects, numbers, dids, serials)
		if v.err != nil {
			return v.err
		}
	}
	seen := map[string]bool{}
	for i, r := range s.Revoked {
		f := fmt.Sprintf("revoked[%d]", i)
		if err := validSerial(r.Serial); err != nil {
			v.fail(f+".serial", "%v", err)
		} else if seen[r.Serial] {
			v.fail(f+".serial", "%s listed twice", r.Serial)
		}
		seen[r.Serial] = true
		if objects[r.Code] == nil {
			v.fail(f+".code", "%q is not an object of the snapshot", r.Code)
		}
		// A key's certificate is listed only when the key is revoked.
		if owner, ok := serials[r.Serial]; ok {
			switch k := keyBySerial(objects[owner], r.Serial); {
			case owner != r.Code:
				v.fail(f+".code", "%s, but certificate %s is %s's", r.Code, r.Serial, owner)
			case k == nil || k.Status != keyRevoked:
				v.fail(f, "certificate %s is a key's that is not revoked", r.Serial)
			}
		}
	}
	return v.err
}

// keyRevoked is the one key state Validate knows: a revoked key's
// certificate is in Revoked.
const keyRevoked = "revoked"

func keyBySerial(o *Object, serial string) *Key {
	for i := range o.Keys {
		if o.Keys[i].CertSerial == serial {
			return &o.Keys[i]
		}
	}
	return nil
}

type validator struct{ err error }

// fail keeps the first error.
func (v *validator) fail(field, format string, args ...any) {
	if v.err == nil {
		v.err = fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
}

func (v *validator) text(field, s string, required bool) {
	switch {
	case required && s == "":
		v.fail(field, "missing")
	case len(s) > maxText:
		v.fail(field, "longer than %d bytes", maxText)
	}
}

func (v *validator) object(f string, s *Snapshot, o *Object, tenants map[string]bool, models map[ModelRef]bool,
	objects map[string]*Object, numbers, dids map[string]bool, serials map[string]string) {
	c, err := code.Parse(o.Code)
	if err != nil {
		v.fail(f+".code", "%v", err)
		return
	}
	if objects[o.Code] != o {
		v.fail(f+".code", "%s listed twice", o.Code)
		return
	}
	if o.Tenant != c.Namespace || !tenants[o.Tenant] {
		v.fail(f+".tenant", "%q: must be the code's namespace and a tenant of the snapshot", o.Tenant)
	}
	v.text(f+".kind", o.Kind, true)
	v.text(f+".status", o.Status, true)
	v.text(f+".status_reason", o.StatusReason, false)
	v.text(f+".network", o.Network, false)
	v.text(f+".subnet_key", o.SubnetKey, true)
	if len(o.Path) > 0 {
		if _, err := code.ParsePath(strings.Join(o.Path, "/")); err != nil {
			v.fail(f+".path", "%v", err)
		}
	}
	if len(o.Tags) > 64 {
		v.fail(f+".tags", "more than 64")
	}
	for k, val := range o.Tags {
		if err := code.ValidTagKey(k); err != nil {
			v.fail(f+".tags", "%v", err)
		} else if err := code.ValidTagValue(val); err != nil {
			v.fail(f+".tags."+k, "%v", err)
		}
	}
	// The edge is the one object not behind another in the snapshot; every
	// other object is behind the edge or behind an object of the snapshot
	// (a gateway behind the edge).
	if o.Code != s.Edge && (o.Edge == "" || o.Edge == o.Code || objects[o.Edge] == nil) {
		v.fail(f+".edge", "%s is behind %q, which is neither the edge %s nor behind it", o.Code, o.Edge, s.Edge)
	}
	if o.Model != nil && !models[*o.Model] {
		v.fail(f+".model", "%s@%s is not among the snapshot's models", o.Model.ID, o.Model.Version)
	}
	if a, err := netip.ParseAddr(o.Number); err != nil || !a.Is6() || a.Zone() != "" || a.String() != o.Number {
		v.fail(f+".number", "%q is not an IPv6 address in canonical form", o.Number)
	} else if numbers[o.Number] {
		v.fail(f+".number", "%s is another object's too", o.Number)
	}
	numbers[o.Number] = true
	if o.IIDAttempt < 0 || o.IIDAttempt > 64 {
		v.fail(f+".iid_attempt", "%d is out of range", o.IIDAttempt)
	}
	if o.CreatedAt.IsZero() || o.UpdatedAt.IsZero() {
		v.fail(f, "created_at and updated_at are required")
	}
	for i := range o.Keys {
		v.key(fmt.Sprintf("%s.keys[%d]", f, i), o, &o.Keys[i], dids, serials)
	}
}

func (v *validator) key(f string, o *Object, k *Key, dids map[string]bool, serials map[string]string) {
	pub, err := keys.ParseDID(k.DID)
	if err != nil {
		v.fail(f+".did", "%v", err)
		return
	}
	if dids[k.DID] {
		v.fail(f+".did", "%s is another key's too", k.DID)
	}
	dids[k.DID] = true
	if alg, _ := keys.AlgOf(pub); string(alg) != k.Alg {
		v.fail(f+".alg", "%q, but the DID names an %s key", k.Alg, alg)
	}
	fp := keys.Fingerprint(pub)
	if k.Fingerprint != fp {
		v.fail(f+".fingerprint", "is not the DID's key's")
	}
	v.text(f+".status", k.Status, true)
	if k.CreatedAt.IsZero() || k.CertNotAfter.IsZero() {
		v.fail(f, "created_at and cert_not_after are required")
	}
	if err := validSerial(k.CertSerial); err != nil {
		v.fail(f+".cert_serial", "%v", err)
	} else if _, ok := serials[k.CertSerial]; ok {
		v.fail(f+".cert_serial", "%s is another key's too", k.CertSerial)
	}
	serials[k.CertSerial] = o.Code
	cert, err := ca.ParseCertPEM([]byte(k.CertPEM))
	if err != nil {
		v.fail(f+".cert_pem", "%v", err)
		return
	}
	if hex.EncodeToString(cert.SerialNumber.Bytes()) != k.CertSerial {
		v.fail(f+".cert_pem", "the certificate's serial is not %s", k.CertSerial)
	}
	if cc, err := ca.CodeFromCert(cert); err != nil || cc != o.Code {
		v.fail(f+".cert_pem", "the certificate is not %s's", o.Code)
	}
	if keys.Fingerprint(cert.PublicKey) != fp {
		v.fail(f+".cert_pem", "the certificate is for another key than the DID's")
	}
	if len(k.Credential) > 16<<10 {
		v.fail(f+".credential", "longer than 16 KiB")
	}
}

// validSerial accepts a certificate serial as the registry stores it:
// lowercase hex of the serial's big-endian bytes, without leading zero bytes.
func validSerial(s string) error {
	b, err := hex.DecodeString(s)
	switch {
	case err != nil || s == "":
		return fmt.Errorf("%q is not a hex serial", s)
	case len(b) > 20:
		return fmt.Errorf("serial %s is longer than 20 bytes", s)
	case b[0] == 0 || hex.EncodeToString(b) != s:
		return fmt.Errorf("serial %s is not in the registry's form (lowercase, no leading zero bytes)", s)
	}
	return nil
}
