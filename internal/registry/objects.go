package registry

import (
	"context"
	"crypto"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
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

// Object kinds.
const (
	KindDevice  = "device"
	KindGateway = "gateway"
	KindEdge    = "edge"
	KindAsset   = "asset"
)

// Object lifecycle states, also the answers of an admission check (with StatusUnknown).
const (
	StatusActive      = "active"
	StatusQuarantined = "quarantined"
	StatusRevoked     = "revoked"
	StatusUnknown     = "unknown"
)

// Key states.
const (
	KeyActive   = "active"
	KeyRetiring = "retiring" // rotated out, valid until RetireAt
	KeyRevoked  = "revoked"
)

// ModelRef names a thing model version.
type ModelRef struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Key is one key an object holds or held, with the certificate issued for it.
type Key struct {
	DID          string     `json:"did"`
	Alg          string     `json:"alg"`
	Fingerprint  string     `json:"fingerprint"`
	Status       string     `json:"status"`
	CreatedAt    time.Time  `json:"created_at"`
	RetireAt     *time.Time `json:"retire_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	CertSerial   string     `json:"cert_serial"`
	CertNotAfter time.Time  `json:"cert_not_after"`
}

// Object is the record every resolution returns.
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
	// Network names the profile of the object's link (package netprofile:
	// nb-iot, lte-cat1, 5g-redcap, wlan, ethernet); "" when not set. The
	// hub holds downlink for a device whose link sleeps and counts its
	// bytes against the profile's daily budget.
	Network string `json:"network,omitempty"`
	Number  string `json:"number"`
	// ReleasedCode is set on the archived row of an object whose code was
	// released (decommissioned with release_code, or deleted): Code is then
	// "<ReleasedCode>~<n>", and ReleasedCode may name a newer object.
	ReleasedCode string    `json:"released_code,omitempty"`
	DID          string    `json:"did,omitempty"` // the active key's DID
	Keys         []Key     `json:"keys,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Registration is what a newly registered (or re-keyed) object receives.
type Registration struct {
	Object        *Object `json:"object"`
	Certificate   string  `json:"certificate,omitempty"` // PEM; none for keyless assets
	CACertificate string  `json:"ca_certificate"`        // PEM, the trust anchor for the hub's endpoints
	Credential    string  `json:"credential,omitempty"`  // signed device credential (VC-JWT)
	// PrivateKey is set only when the hub generated the key (factory
	// provisioning); it is returned once and never stored.
	PrivateKey string `json:"private_key,omitempty"`
}

// KeySource says where an object's key comes from: a CSR, a public key, or
// (both empty) a key the hub generates with Alg.
type KeySource struct {
	CSR       []byte
	PublicKey crypto.PublicKey
	Alg       keys.Alg
}

// RegisterRequest describes an object to register.
type RegisterRequest struct {
	Code     string
	Kind     string
	Model    *ModelRef
	Path     []string
	Tags     map[string]string
	Edge     string
	Network  string // a netprofile name, "" = not set
	Key      KeySource
	Validity time.Duration // 0 = the registry default
}

// Register registers one object and issues its certificate and credential.
func (r *Registry) Register(ctx context.Context, actor string, req RegisterRequest) (*Registration, error) {
	// Key generation and parsing need no database: done here, they stay out
	// of the single writer's critical section.
	var rk *resolvedKey
	if !keyless(req) {
		if _, err := validateRequest(&req); err != nil {
			return nil, err
		}
		var err error
		if rk, err = resolveKey(req.Key); err != nil {
			return nil, err
		}
	}
	var reg *Registration
	err := r.write(ctx, actor, func(c *change) error {
		var err error
		reg, err = c.register(req, rk)
		return err
	})
	return reg, err
}

// keyless reports whether req registers an object without a key: an asset
// (a tank, a room) for which no key source is given.
func keyless(req RegisterRequest) bool {
	return req.Kind == KindAsset && len(req.Key.CSR) == 0 && req.Key.PublicKey == nil && req.Key.Alg == ""
}

// resolvedKey is a KeySource turned into a public key (and the private one if generated).
type resolvedKey struct {
	pub     crypto.PublicKey
	priv    crypto.Signer
	privPEM []byte // priv encoded, for the registration
	alg     keys.Alg
	did     string
	spki    []byte
}

func resolveKey(ks KeySource) (*resolvedKey, error) {
	rk := &resolvedKey{}
	switch {
	case len(ks.CSR) > 0:
		csr, err := keys.ParseCSR(ks.CSR)
		if err != nil {
			return nil, invalidErr("csr", err)
		}
		rk.pub = csr.PublicKey
	case ks.PublicKey != nil:
		rk.pub = ks.PublicKey
	default:
		alg := ks.Alg
		if alg == "" {
			alg = keys.P256
		}
		priv, err := keys.Generate(alg)
		if err != nil {
			return nil, invalidErr("key_alg", err)
		}
		rk.priv, rk.pub = priv, priv.Public()
		if rk.privPEM, err = keys.MarshalPrivateKeyPEM(priv); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	alg, err := keys.AlgOf(rk.pub)
	if err != nil {
		return nil, invalidErr("public_key", err)
	}
	if ks.Alg != "" && (len(ks.CSR) > 0 || ks.PublicKey != nil) && ks.Alg != alg {
		return nil, invalid("key_alg", "is %s but the key is %s", ks.Alg, alg)
	}
	rk.alg = alg
	if rk.did, err = keys.DID(rk.pub); err != nil {
		return nil, invalidErr("public_key", err)
	}
	if rk.spki, err = keys.SPKI(rk.pub); err != nil {
		return nil, invalidErr("public_key", err)
	}
	return rk, nil
}

// validateRequest checks everything that needs no database.
func validateRequest(req *RegisterRequest) (code.Code, error) {
	c, err := code.Parse(req.Code)
	if err != nil {
		return code.Code{}, invalidErr("code", err)
	}
	if req.Kind == "" {
		req.Kind = KindDevice
	}
	switch req.Kind {
	case KindDevice, KindGateway, KindEdge, KindAsset:
	default:
		return code.Code{}, invalid("kind", "%q is not one of device, gateway, edge, asset", req.Kind)
	}
	if len(req.Path) > 0 {
		if _, err := code.ParsePath(strings.Join(req.Path, "/")); err != nil {
			return code.Code{}, invalidErr("path", err)
		}
	}
	if len(req.Tags) > 64 {
		return code.Code{}, invalid("tags", "at most 64 tags")
	}
	for k, v := range req.Tags {
		if err := code.ValidTagKey(k); err != nil {
			return code.Code{}, invalidErr("tags."+k, err)
		}
		if err := code.ValidTagValue(v); err != nil {
			return code.Code{}, invalidErr("tags."+k, err)
		}
	}
	if req.Edge != "" {
		ec, err := code.Parse(req.Edge)
		if err != nil {
			return code.Code{}, invalidErr("edge", err)
		}
		if ec.Namespace != c.Namespace {
			return code.Code{}, invalid("edge", "edge %s is in another tenant than %s", req.Edge, req.Code)
		}
		if req.Edge == req.Code {
			return code.Code{}, invalid("edge", "an object cannot be its own edge")
		}
	}
	if req.Model != nil && (req.Model.ID == "" || req.Model.Version == "") {
		return code.Code{}, invalid("model", "needs both id and version")
	}
	if err := ValidNetwork(req.Network); err != nil {
		return code.Code{}, err
	}
	if req.Validity < 0 || req.Validity > maxValidity {
		return code.Code{}, invalid("validity", "must be between 0 and 20 years")
	}
	return c, nil
}

// register runs inside a change. key may be passed pre-resolved (claims resolve
// it before deciding the code).
func (c *change) register(req RegisterRequest, rk *resolvedKey) (*Registration, error) {
	cd, err := validateRequest(&req)
	if err != nil {
		return nil, err
	}
	// Assets (a tank, a room) need no key unless one is given: their number
	// derives from the code, and they get no certificate or credential.
	if rk == nil && !keyless(req) {
		if rk, err = resolveKey(req.Key); err != nil {
			return nil, err
		}
	}
	tenant, err := getTenant(c.ctx, c.tx, cd.Namespace)
	if err != nil {
		return nil, fmt.Errorf("%w (create the tenant first)", err)
	}
	var exists int
	if err := c.tx.QueryRowContext(c.ctx, `SELECT COUNT(*) FROM objects WHERE code = ?`, req.Code).Scan(&exists); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if exists > 0 {
		return nil, fmt.Errorf("%w: object %s exists", ErrConflict, req.Code)
	}
	if rk != nil {
		if owner, err := keyOwner(c.ctx, c.tx, rk.did); err != nil {
			return nil, err
		} else if owner != "" {
			return nil, fmt.Errorf("%w: key %s is already registered to %s", ErrConflict, rk.did, owner)
		}
	}
	if req.Model != nil {
		// Pin the version "latest" resolved to: the object, its credential
		// and its data refer to one immutable model version.
		ref, err := usableModel(c.ctx, c.tx, *req.Model, cd.Namespace)
		if err != nil {
			return nil, err
		}
		req.Model = &ref
	}
	subnetKey := "site:"
	if req.Edge != "" {
		var kind string
		var status string
		err := c.tx.QueryRowContext(c.ctx, `SELECT kind, status FROM objects WHERE code = ?`, req.Edge).Scan(&kind, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, invalid("edge", "edge %s is not registered", req.Edge)
		} else if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		if kind != KindEdge && kind != KindGateway {
			return nil, invalid("edge", "%s is a %s, not an edge or gateway", req.Edge, kind)
		}
		if status != StatusActive {
			// A device placed behind a revoked or quarantined edge could not be served.
			return nil, invalid("edge", "edge %s is %s", req.Edge, status)
		}
		subnetKey = "edge:" + req.Edge
	} else if len(req.Path) > 0 {
		subnetKey = "site:" + req.Path[0]
	}
	subnet, err := c.subnetFor(tenant, subnetKey)
	if err != nil {
		return nil, err
	}
	iid := func(a int) [8]byte { return number.InterfaceIDFromCode(req.Code, a) }
	if rk != nil {
		iid = func(a int) [8]byte { return number.InterfaceID(rk.spki, a) }
	}
	addr, attempt, err := c.freeNumber(subnet, iid)
	if err != nil {
		return nil, err
	}
	now := c.now
	o := &Object{
		Code: req.Code, Tenant: cd.Namespace, Kind: req.Kind, Status: StatusActive,
		Path: req.Path, Tags: req.Tags, Edge: req.Edge, Model: req.Model, Network: req.Network,
		Number: addr.String(), CreatedAt: now, UpdatedAt: now,
	}
	tags, _ := json.Marshal(nonNilTags(req.Tags))
	var modelID, modelVersion string
	if req.Model != nil {
		modelID, modelVersion = req.Model.ID, req.Model.Version
	}
	if _, err := c.tx.ExecContext(c.ctx, `INSERT INTO objects(code, tenant, kind, status, path, tags, edge, model_id, model_version, network, number, subnet_key, iid_attempt, created_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		o.Code, o.Tenant, o.Kind, o.Status, strings.Join(o.Path, "/"), string(tags), o.Edge, modelID, modelVersion, o.Network,
		o.Number, subnetKey, attempt, now.UnixMilli(), now.UnixMilli()); err != nil {
		return nil, fmt.Errorf("registry: insert object: %w", err)
	}
	details := map[string]any{
		"kind": o.Kind, "number": o.Number, "path": strings.Join(o.Path, "/"), "tags": o.Tags, "edge": o.Edge, "model": o.Model,
	}
	if o.Network != "" {
		details["network"] = o.Network
	}
	if rk == nil {
		if err := c.log(KindObjectRegistered, o.Tenant, o.Code, details); err != nil {
			return nil, err
		}
		return &Registration{Object: o, CACertificate: string(c.r.CA().CertPEM())}, nil
	}
	reg, err := c.issueKey(o, rk, req.Validity)
	if err != nil {
		return nil, err
	}
	details["did"], details["hub_generated_key"] = rk.did, rk.priv != nil
	if err := c.log(KindObjectRegistered, o.Tenant, o.Code, details); err != nil {
		return nil, err
	}
	if err := c.log(KindCredentialIssued, o.Tenant, o.Code, map[string]any{
		"did": rk.did, "cert_serial": reg.Object.Keys[len(reg.Object.Keys)-1].CertSerial,
		"not_after": reg.Object.Keys[len(reg.Object.Keys)-1].CertNotAfter,
	}); err != nil {
		return nil, err
	}
	return reg, nil
}

// freeNumber finds the first attempt whose derived interface id is neither
// reserved nor taken in this deployment.
func (c *change) freeNumber(subnet netip.Prefix, iid func(attempt int) [8]byte) (netip.Addr, int, error) {
	for attempt := 0; attempt < 64; attempt++ {
		id := iid(attempt)
		if number.IsReservedIID(id) {
			continue
		}
		addr := number.Address(subnet, id)
		var n int
		if err := c.tx.QueryRowContext(c.ctx, `SELECT COUNT(*) FROM objects WHERE number = ?`, addr.String()).Scan(&n); err != nil {
			return netip.Addr{}, 0, fmt.Errorf("registry: number: %w", err)
		}
		if n == 0 {
			return addr, attempt, nil
		}
	}
	return netip.Addr{}, 0, fmt.Errorf("%w: no free number after 64 attempts", ErrConflict)
}

// issueKey issues a certificate and credential for rk, stores the key as the
// object's active key and returns the registration (o.Keys gains the key).
func (c *change) issueKey(o *Object, rk *resolvedKey, validity time.Duration) (*Registration, error) {
	if validity == 0 {
		validity = c.r.opts.CertValidity
	}
	addr, _ := netip.ParseAddr(o.Number)
	// The window starts from the registry's clock, the one Admit checks
	// expiry against and the credential's iat comes from.
	cert, err := c.r.CA().Issue(ca.IssueRequest{
		Code: o.Code, DID: rk.did, Number: addr, PublicKey: rk.pub, Validity: validity, Tenant: o.Tenant,
		NotBefore: c.now.Add(-ca.ClockSkew),
	})
	if err != nil {
		return nil, fmt.Errorf("registry: issue certificate: %w", err)
	}
	serial := hex.EncodeToString(cert.SerialNumber.Bytes())
	cl := credential.Claims{
		ID: "urn:wanwu:credential:" + serial, Subject: rk.did,
		Code: o.Code, Number: o.Number, Tenant: o.Tenant, Kind: o.Kind,
		IssuedAt: c.now, NotBefore: cert.NotBefore, ExpiresAt: cert.NotAfter,
	}
	if o.Model != nil {
		cl.ModelID, cl.ModelVersion = o.Model.ID, o.Model.Version
	}
	cred, err := credential.Issue(c.r.opts.Signer, cl)
	if err != nil {
		return nil, fmt.Errorf("registry: issue credential: %w", err)
	}
	certPEM := string(ca.EncodeCertPEM(cert))
	if _, err := c.tx.ExecContext(c.ctx, `INSERT INTO object_keys(code, did, alg, fingerprint, status, created_at, cert_serial, cert_pem, cert_not_after, credential)
		VALUES (?,?,?,?,?,?,?,?,?,?)`,
		o.Code, rk.did, string(rk.alg), fingerprint(rk.spki), KeyActive, c.now.UnixMilli(), serial, certPEM, cert.NotAfter.UnixMilli(), cred); err != nil {
		return nil, fmt.Errorf("registry: insert key: %w", err)
	}
	o.DID = rk.did
	o.Keys = append(o.Keys, Key{
		DID: rk.did, Alg: string(rk.alg), Fingerprint: fingerprint(rk.spki), Status: KeyActive,
		CreatedAt: c.now, CertSerial: serial, CertNotAfter: cert.NotAfter.UTC(),
	})
	reg := &Registration{Object: o, Certificate: certPEM, CACertificate: string(c.r.CA().CertPEM()), Credential: cred}
	if rk.priv != nil {
		reg.PrivateKey = string(rk.privPEM)
	}
	return reg, nil
}

func fingerprint(spki []byte) string {
	h := sha256.Sum256(spki)
	return hex.EncodeToString(h[:])
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func nonNilTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

func keyOwner(ctx context.Context, q queryer, did string) (string, error) {
	var owner string
	err := q.QueryRowContext(ctx, `SELECT code FROM object_keys WHERE did = ?`, did).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("registry: key owner: %w", err)
	}
	return owner, nil
}

// Object returns the full record of one object.
func (r *Registry) Object(ctx context.Context, codeStr string) (*Object, error) {
	return getObject(ctx, r.rd, codeStr)
}

const objectColumns = `code, tenant, kind, status, status_reason, path, tags, edge, model_id, model_version, network, number, released_code, created_at, updated_at`

func scanObject(sc interface{ Scan(...any) error }) (*Object, error) {
	o := &Object{}
	var path, tags, modelID, modelVersion string
	var created, updated int64
	if err := sc.Scan(&o.Code, &o.Tenant, &o.Kind, &o.Status, &o.StatusReason, &path, &tags, &o.Edge,
		&modelID, &modelVersion, &o.Network, &o.Number, &o.ReleasedCode, &created, &updated); err != nil {
		return nil, err
	}
	if path != "" {
		o.Path = strings.Split(path, "/")
	}
	if err := json.Unmarshal([]byte(tags), &o.Tags); err != nil {
		return nil, fmt.Errorf("registry: object %s has bad tags: %w", o.Code, err)
	}
	if len(o.Tags) == 0 {
		o.Tags = nil
	}
	if modelID != "" {
		o.Model = &ModelRef{ID: modelID, Version: modelVersion}
	}
	o.CreatedAt, o.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return o, nil
}

func getObject(ctx context.Context, q queryer, codeStr string) (*Object, error) {
	o, err := scanObject(q.QueryRowContext(ctx, `SELECT `+objectColumns+` FROM objects WHERE code = ?`, codeStr))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: object %q", ErrNotFound, codeStr)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: object: %w", err)
	}
	if o.Keys, err = objectKeys(ctx, q, o.Code); err != nil {
		return nil, err
	}
	for _, k := range o.Keys {
		if k.Status == KeyActive {
			o.DID = k.DID
		}
	}
	return o, nil
}

func objectKeys(ctx context.Context, q queryer, codeStr string) ([]Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT did, alg, fingerprint, status, created_at, retire_at, revoked_at, cert_serial, cert_not_after
		FROM object_keys WHERE code = ? ORDER BY id`, codeStr)
	if err != nil {
		return nil, fmt.Errorf("registry: keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		var k Key
		var created, retire, revoked, notAfter int64
		if err := rows.Scan(&k.DID, &k.Alg, &k.Fingerprint, &k.Status, &created, &retire, &revoked, &k.CertSerial, &notAfter); err != nil {
			return nil, fmt.Errorf("registry: keys: %w", err)
		}
		k.CreatedAt, k.CertNotAfter = time.UnixMilli(created).UTC(), time.UnixMilli(notAfter).UTC()
		if retire != 0 {
			t := time.UnixMilli(retire).UTC()
			k.RetireAt = &t
		}
		if revoked != 0 {
			t := time.UnixMilli(revoked).UTC()
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Resolve finds an object by its code, its number (IPv6) or the DID of any
// key it holds or held; all three give the same record.
func (r *Registry) Resolve(ctx context.Context, key string) (*Object, error) {
	key = strings.TrimSpace(key)
	switch {
	case strings.HasPrefix(key, "did:"):
		did, _, _ := strings.Cut(key, "#")
		owner, err := keyOwner(ctx, r.rd, did)
		if err != nil {
			return nil, err
		}
		if owner == "" {
			if _, err := keys.ParseDID(did); err != nil {
				return nil, invalidErr("did", err)
			}
			return nil, fmt.Errorf("%w: no object holds %s", ErrNotFound, did)
		}
		return r.Object(ctx, owner)
	case strings.Count(key, ":") >= 2:
		addr, err := netip.ParseAddr(key)
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return nil, invalid("number", "%q is not an IPv6 address", key)
		}
		var owner string
		err = r.rd.QueryRowContext(ctx, `SELECT code FROM objects WHERE number = ?`, addr.String()).Scan(&owner)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: no object has number %s", ErrNotFound, addr)
		}
		if err != nil {
			return nil, fmt.Errorf("registry: resolve: %w", err)
		}
		return r.Object(ctx, owner)
	default:
		if _, err := code.Parse(key); err != nil {
			return nil, invalidErr("code", err)
		}
		return r.Object(ctx, key)
	}
}

// ListFilter selects objects.
type ListFilter struct {
	Tenant string            // "" = all tenants
	Under  []string          // hierarchy prefix
	Tags   map[string]string // all must match
	Kind   string
	Status string
	Edge   string
	// Network selects objects on one network profile; "-" selects those
	// with none set.
	Network string
	After   string // code to continue after (pagination)
	Limit   int    // default 100, at most 1000
}

// List returns objects in code order, with their active key's DID; next is
// the code to pass as After for the following page ("" at the end).
//
// Deleted objects (status deleted, kept under archive codes) are listed only
// when Status asks for them.
func (r *Registry) List(ctx context.Context, f ListFilter) ([]*Object, string, error) {
	return listObjects(ctx, r.db.R, f)
}

func listObjects(ctx context.Context, qr queryer, f ListFilter) ([]*Object, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if f.Tenant != "" {
		add(`o.tenant = ?`, f.Tenant)
	}
	if len(f.Under) > 0 {
		p := strings.Join(f.Under, "/")
		if _, err := code.ParsePath(p); err != nil {
			return nil, "", invalidErr("under", err)
		}
		add(`(o.path = ? OR substr(o.path, 1, ?) = ?)`, p, len(p)+1, p+"/")
	}
	for _, k := range slices.Sorted(maps.Keys(f.Tags)) {
		if err := code.ValidTagKey(k); err != nil {
			return nil, "", invalidErr("tag", err)
		}
		add(`json_extract(o.tags, ?) = ?`, "$."+k, f.Tags[k])
	}
	if f.Kind != "" {
		add(`o.kind = ?`, f.Kind)
	}
	if f.Status != "" {
		add(`o.status = ?`, f.Status)
	} else {
		add(`o.status != ?`, StatusDeleted)
	}
	if f.Edge != "" {
		add(`o.edge = ?`, f.Edge)
	}
	switch f.Network {
	case "":
	case "-":
		add(`o.network = ''`)
	default:
		if err := ValidNetwork(f.Network); err != nil {
			return nil, "", err
		}
		add(`o.network = ?`, f.Network)
	}
	if f.After != "" {
		add(`o.code > ?`, f.After)
	}
	q := `SELECT o.code, o.tenant, o.kind, o.status, o.status_reason, o.path, o.tags, o.edge, o.model_id, o.model_version, o.network, o.number, o.released_code, o.created_at, o.updated_at,
		COALESCE((SELECT k.did FROM object_keys k WHERE k.code = o.code AND k.status = 'active'), '') FROM objects o`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY o.code LIMIT ?`
	args = append(args, f.Limit+1)
	rows, err := qr.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("registry: list: %w", err)
	}
	defer rows.Close()
	var out []*Object
	for rows.Next() {
		var did string
		o, err := scanObject(scanPlus{rows, &did})
		if err != nil {
			return nil, "", fmt.Errorf("registry: list: %w", err)
		}
		o.DID = did
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("registry: list: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].Code
	}
	return out, next, nil
}

// scanPlus lets scanObject read a row that carries extra trailing columns.
type scanPlus struct {
	rows  *sql.Rows
	extra *string
}

func (s scanPlus) Scan(dest ...any) error { return s.rows.Scan(append(dest, s.extra)...) }

// Certificate returns the PEM certificate of the object's active key.
func (r *Registry) Certificate(ctx context.Context, codeStr string) (string, error) {
	pem, _, err := r.activeKeyMaterial(ctx, codeStr)
	return pem, err
}

// Credential returns the signed credential of the object's active key.
func (r *Registry) Credential(ctx context.Context, codeStr string) (string, error) {
	_, cred, err := r.activeKeyMaterial(ctx, codeStr)
	return cred, err
}

// ActiveKeyFingerprint returns the fingerprint of the object's active key:
// what a device's pre-shared key (CoAP over DTLS) is derived from, so a key
// rotation or revocation also changes or ends the PSK.
func (r *Registry) ActiveKeyFingerprint(ctx context.Context, codeStr string) (string, error) {
	var fp string
	err := r.rd.QueryRowContext(ctx, `SELECT fingerprint FROM object_keys WHERE code = ? AND status = 'active'`, codeStr).Scan(&fp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: object %q has no active key", ErrNotFound, codeStr)
	}
	if err != nil {
		return "", fmt.Errorf("registry: key fingerprint: %w", err)
	}
	return fp, nil
}

// ValidKeyFingerprints returns the fingerprints of a device's keys that
// authenticate now, oldest first: during a rotation's overlap the retiring
// key, then the active one.
func (r *Registry) ValidKeyFingerprints(ctx context.Context, codeStr string) ([]string, error) {
	rows, err := r.rd.QueryContext(ctx, `SELECT fingerprint FROM object_keys
		WHERE code = ? AND (status = 'active' OR (status = 'retiring' AND retire_at > ?)) ORDER BY created_at, rowid`,
		codeStr, r.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("registry: key fingerprints: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var fp string
		if err := rows.Scan(&fp); err != nil {
			return nil, fmt.Errorf("registry: key fingerprints: %w", err)
		}
		out = append(out, fp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: key fingerprints: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: object %q has no valid key", ErrNotFound, codeStr)
	}
	return out, nil
}

func (r *Registry) activeKeyMaterial(ctx context.Context, codeStr string) (string, string, error) {
	var certPEM, cred string
	err := r.rd.QueryRowContext(ctx, `SELECT cert_pem, credential FROM object_keys WHERE code = ? AND status = 'active'`, codeStr).Scan(&certPEM, &cred)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("%w: object %q has no active key", ErrNotFound, codeStr)
	}
	if err != nil {
		return "", "", fmt.Errorf("registry: key material: %w", err)
	}
	return certPEM, cred, nil
}

// RevokedCertificates lists revoked certificate serials for the CRL.
func (r *Registry) RevokedCertificates(ctx context.Context) ([]ca.Revoked, error) {
	// Revoked keys' certificates, and those replaced while their key stayed.
	rows, err := r.db.R.QueryContext(ctx, `SELECT cert_serial, revoked_at FROM (
		SELECT cert_serial, revoked_at, 0 AS src, id FROM object_keys WHERE status = 'revoked'
		UNION ALL SELECT serial, revoked_at, 1, revoked_at FROM replaced_certificates) ORDER BY src, id`)
	if err != nil {
		return nil, fmt.Errorf("registry: revoked: %w", err)
	}
	defer rows.Close()
	var out []ca.Revoked
	for rows.Next() {
		var serial string
		var at int64
		if err := rows.Scan(&serial, &at); err != nil {
			return nil, err
		}
		b, err := hex.DecodeString(serial)
		if err != nil {
			return nil, fmt.Errorf("registry: bad stored serial %q: %w", serial, err)
		}
		out = append(out, ca.Revoked{Serial: new(big.Int).SetBytes(b), At: time.UnixMilli(at).UTC()})
	}
	return out, rows.Err()
}
