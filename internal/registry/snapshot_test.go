package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ca"
	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/snapshot"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// replicaEnv is an edge's registry on its own database in its own
// directory: no CA key, no signing key, an audit log of its own.
type replicaEnv struct {
	tb    testing.TB
	ctx   context.Context
	dir   string
	db    *store.DB
	audit *audit.Log
	reg   *Registry

	mu      sync.Mutex
	applied []SnapshotApplied
}

func newReplica(tb testing.TB, dir string, now func() time.Time) *replicaEnv {
	tb.Helper()
	ctx := context.Background()
	e := &replicaEnv{tb: tb, ctx: ctx, dir: dir}
	var err error
	if e.db, err = store.Open(ctx, filepath.Join(dir, "wanwu.db"), store.Options{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	edgeKey, _, err := keys.LoadOrCreateEd25519(filepath.Join(dir, "edge.key"))
	if err != nil {
		tb.Fatal(err)
	}
	if e.audit, err = audit.Open(ctx, e.db.W, edgeKey, "wanwu.edge/test"); err != nil {
		tb.Fatal(err)
	}
	if e.reg, err = New(Options{
		DB: e.db, Audit: e.audit, Replica: true, Now: now, Logger: slog.New(slog.DiscardHandler),
		OnSnapshot: func(a SnapshotApplied) {
			e.mu.Lock()
			e.applied = append(e.applied, a)
			e.mu.Unlock()
		},
	}); err != nil {
		tb.Fatal(err)
	}
	return e
}

func (e *replicaEnv) takeApplied() []SnapshotApplied {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.applied
	e.applied = nil
	return a
}

func (e *replicaEnv) version() uint64 {
	e.tb.Helper()
	v, err := e.reg.AppliedSnapshotVersion(e.ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	return v
}

// device is a registered object whose private key the test holds, as the
// device itself would.
type device struct {
	code string
	key  crypto.Signer
	cert *x509.Certificate
}

func (h *testEnv) mustDevice(code, kind, edge string, model *ModelRef) device {
	h.tb.Helper()
	k := newKey(h.tb, keys.P256)
	reg := h.mustRegister(RegisterRequest{Code: code, Kind: kind, Edge: edge, Model: model, Key: KeySource{PublicKey: k.Public()},
		Path: []string{"plant-1", "hall-2"}, Tags: map[string]string{"class": "pump"}, Network: "wlan"})
	cert, err := ca.ParseCertPEM([]byte(reg.Certificate))
	if err != nil {
		h.tb.Fatal(err)
	}
	return device{code: code, key: k, cert: cert}
}

func (h *testEnv) signedSnapshot(edge string) []byte {
	h.tb.Helper()
	s, err := h.reg.EdgeSnapshot(h.ctx, edge)
	if err != nil {
		h.tb.Fatalf("EdgeSnapshot(%s): %v", edge, err)
	}
	data, err := snapshot.Sign(s, h.signer)
	if err != nil {
		h.tb.Fatalf("Sign: %v", err)
	}
	return data
}

func (h *testEnv) hubKey() ed25519.PublicKey { return h.signer.Public().(ed25519.PublicKey) }

// sync verifies a signed snapshot as an edge does and applies it.
func (e *replicaEnv) sync(data []byte, hubKey ed25519.PublicKey, edge string) error {
	s, err := snapshot.Verify(data, hubKey, edge, e.version())
	if err != nil {
		return err
	}
	return e.reg.ApplySnapshot(e.ctx, s)
}

func (e *replicaEnv) mustSync(data []byte, hubKey ed25519.PublicKey, edge string) {
	e.tb.Helper()
	if err := e.sync(data, hubKey, edge); err != nil {
		e.tb.Fatalf("sync: %v", err)
	}
}

// authCase is one device presenting itself to an edge.
type authCase struct {
	name   string
	dev    device
	cert   bool   // present the certificate instead of a token
	status string // the admission answer
	reason string // in the answer's reason
}

func checkAuth(t *testing.T, r *Registry, now time.Time, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		var adm Admission
		var err error
		if tc.cert {
			// TLS verified the chain against the hub CA the replica holds.
			if _, verr := tc.dev.cert.Verify(x509.VerifyOptions{Roots: r.CA().Pool(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); verr != nil {
				t.Errorf("%s: the certificate does not verify against the replica's CA: %v", tc.name, verr)
				continue
			}
			adm, err = r.AuthenticateDevice(context.Background(), tc.dev.cert, "", "")
		} else {
			tok, serr := devtoken.Sign(tc.dev.key, tc.dev.code, now, time.Hour)
			if serr != nil {
				t.Fatal(serr)
			}
			adm, err = r.AuthenticateDevice(context.Background(), nil, tc.dev.code, tok)
		}
		if err != nil || adm.Status != tc.status || !strings.Contains(adm.Reason, tc.reason) {
			t.Errorf("%s: admission %q (%q), %v; want %q with %q", tc.name, adm.Status, adm.Reason, err, tc.status, tc.reason)
		}
	}
}

// TestEdgeSnapshotAuthenticatesWithoutHub is the edge's whole story: the
// hub snapshots what is behind an edge, signs it; the edge verifies it with
// the hub's public key, applies it to its own registry and then admits its
// devices exactly as the hub would, and nobody else's, also after a
// revocation at the hub, and after its own restart with no hub at all.
func TestEdgeSnapshotAuthenticatesWithoutHub(t *testing.T) {
	hub := newTestEnv(t, t.TempDir(), nil)
	hub.mustTenant("acme", "")
	if _, _, err := hub.reg.RegisterModel(hub.ctx, "admin", modelDoc("acme:pump", "1.0.0", "Pump"), nil); err != nil {
		t.Fatal(err)
	}
	pump := &ModelRef{ID: "acme:pump", Version: "1.0.0"}
	edge := hub.mustDevice("acme:edge-1", KindEdge, "", nil)
	hub.mustDevice("acme:edge-2", KindEdge, "", nil)
	tokenDev := hub.mustDevice("acme:dev-token", KindDevice, "acme:edge-1", pump)
	certDev := hub.mustDevice("acme:dev-cert", KindDevice, "acme:edge-1", pump)
	gw := hub.mustDevice("acme:gw-1", KindGateway, "acme:edge-1", nil)
	sub := hub.mustDevice("acme:sub-1", KindDevice, "acme:gw-1", pump)
	gone := hub.mustDevice("acme:dev-gone", KindDevice, "acme:edge-1", nil)
	other := hub.mustDevice("acme:dev-other", KindDevice, "acme:edge-2", pump)
	loose := hub.mustDevice("acme:dev-loose", KindDevice, "", nil)
	mover := hub.mustDevice("acme:dev-mover", KindDevice, "acme:edge-1", nil)
	if _, err := hub.reg.Revoke(hub.ctx, "admin", gone.code, "stolen"); err != nil {
		t.Fatal(err)
	}

	replica := newReplica(t, t.TempDir(), hub.clock.Now)
	if replica.reg.CA() != nil || replica.version() != 0 {
		t.Fatal("a new replica holds a CA or a version")
	}
	data := hub.signedSnapshot("acme:edge-1")
	replica.mustSync(data, hub.hubKey(), "acme:edge-1")
	first := replica.version()
	if first != hub.size() {
		t.Errorf("applied version %d, the hub's audit log holds %d", first, hub.size())
	}
	if a := replica.takeApplied(); len(a) != 1 || len(a[0].Added) != 7 || len(a[0].Removed)+len(a[0].Changed) != 0 || a[0].Previous != 0 {
		t.Errorf("OnSnapshot got %+v; want 7 objects added", a)
	}
	if replica.reg.CA() == nil || !bytes.Equal(replica.reg.CA().CertPEM(), hub.ca.CertPEM()) || replica.reg.CA().CanSign() {
		t.Fatal("the replica's CA is not the hub's certificate without its key")
	}

	now := hub.clock.Now()
	checkAuth(t, replica.reg, now, []authCase{
		{"device token", tokenDev, false, StatusActive, ""},
		{"hub certificate", certDev, true, StatusActive, ""},
		{"the edge itself", edge, true, StatusActive, ""},
		{"gateway behind the edge", gw, false, StatusActive, ""},
		{"device behind that gateway", sub, true, StatusActive, ""},
		{"device revoked before the snapshot, token", gone, false, StatusRevoked, "revoked"},
		{"device revoked before the snapshot, certificate", gone, true, StatusRevoked, "revoked"},
		{"device behind another edge", other, false, StatusUnknown, ""},
		{"device behind another edge, certificate", other, true, StatusUnknown, ""},
		{"device behind no edge", loose, false, StatusUnknown, ""},
	})
	// A token signed by a key the hub never registered for the code.
	forger := newKey(t, keys.P256)
	tok, _ := devtoken.Sign(forger, tokenDev.code, now, time.Hour)
	if _, err := replica.reg.AuthenticateDevice(replica.ctx, nil, tokenDev.code, tok); !errors.Is(err, ErrDeviceAuth) {
		t.Errorf("a forged token: %v, want ErrDeviceAuth", err)
	}

	// Numbers, keys, certificates and credentials are the hub's, verbatim,
	// and the models came along.
	s, err := snapshot.Verify(data, hub.hubKey(), "acme:edge-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, so := range s.Objects {
		want, err := hub.reg.Object(hub.ctx, so.Code)
		if err != nil {
			t.Fatal(err)
		}
		got, err := replica.reg.Object(replica.ctx, so.Code)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s on the replica:\n got %+v\nwant %+v", so.Code, got, want)
		}
		if want.Status == StatusActive {
			for _, f := range []func(*Registry, context.Context, string) (string, error){(*Registry).Certificate, (*Registry).Credential, (*Registry).ActiveKeyFingerprint} {
				w, _ := f(hub.reg, hub.ctx, so.Code)
				if g, err := f(replica.reg, replica.ctx, so.Code); err != nil || g != w {
					t.Errorf("%s: key material differs on the replica: %v", so.Code, err)
				}
			}
		}
	}
	o, err := replica.reg.Object(replica.ctx, tokenDev.code)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := replica.reg.ModelOf(replica.ctx, o); err != nil || m == nil || m.ID != "acme:pump" || m.Version != "1.0.0" {
		t.Fatalf("ModelOf on the replica: %v, %v", m, err)
	}
	if hubRev, _ := hub.reg.RevokedCertificates(hub.ctx); len(hubRev) == 0 {
		t.Fatal("the hub lists no revoked certificate")
	}
	if rev, err := replica.reg.RevokedCertificates(replica.ctx); err != nil || len(rev) != 1 || rev[0].Serial.Cmp(gone.cert.SerialNumber) != 0 {
		t.Errorf("the replica's revoked certificates: %v, %v; want the revoked device's", rev, err)
	}

	// Applying the same snapshot again changes nothing: no new audit entry,
	// no OnSnapshot, no error.
	edgeLog, _ := replica.audit.Size(replica.ctx)
	replica.mustSync(data, hub.hubKey(), "acme:edge-1")
	if n, _ := replica.audit.Size(replica.ctx); n != edgeLog || len(replica.takeApplied()) != 0 || replica.version() != first {
		t.Error("re-applying the applied version changed something")
	}

	// The hub's log grows without this edge's identities changing (another
	// edge gets a device): the newer version is recorded, nothing else.
	hub.mustDevice("acme:dev-other-2", KindDevice, "acme:edge-2", nil)
	replica.mustSync(hub.signedSnapshot("acme:edge-1"), hub.hubKey(), "acme:edge-1")
	if n, _ := replica.audit.Size(replica.ctx); n != edgeLog || len(replica.takeApplied()) != 0 || replica.version() != hub.size() {
		t.Errorf("a snapshot with the same identities: edge log %d → %d, version %d (hub %d)", edgeLog, n, replica.version(), hub.size())
	}
	if err := replica.sync(data, hub.hubKey(), "acme:edge-1"); !errors.Is(err, snapshot.ErrStale) {
		t.Errorf("the first snapshot after a newer one with the same identities: %v, want ErrStale", err)
	}

	// The hub revokes a device, quarantines another, moves a third to
	// another edge and a fourth behind this one (a new certificate for its
	// new number, the old one revoked): the next snapshot carries all four.
	if _, err := hub.reg.Revoke(hub.ctx, "admin", tokenDev.code, "compromised"); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.reg.Quarantine(hub.ctx, "admin", certDev.code, "firmware"); err != nil {
		t.Fatal(err)
	}
	to := "acme:edge-2"
	if _, err := hub.reg.Update(hub.ctx, "admin", mover.code, UpdateRequest{Edge: &to}); err != nil {
		t.Fatal(err)
	}
	here := "acme:edge-1"
	if _, err := hub.reg.Update(hub.ctx, "admin", loose.code, UpdateRequest{Edge: &here}); err != nil {
		t.Fatal(err)
	}
	newPEM, err := hub.reg.Certificate(hub.ctx, loose.code)
	if err != nil {
		t.Fatal(err)
	}
	moved := loose
	if moved.cert, err = ca.ParseCertPEM([]byte(newPEM)); err != nil {
		t.Fatal(err)
	}
	second := hub.signedSnapshot("acme:edge-1")
	replica.mustSync(second, hub.hubKey(), "acme:edge-1")
	a := replica.takeApplied()
	if len(a) != 1 || !slices.Equal(a[0].Changed, []string{certDev.code, tokenDev.code}) || !slices.Equal(a[0].Removed, []string{mover.code}) ||
		!slices.Equal(a[0].Added, []string{loose.code}) || a[0].Previous <= first || !slices.Equal(a[0].Disconnect(), []string{certDev.code, mover.code, tokenDev.code}) {
		t.Errorf("OnSnapshot got %+v", a)
	}
	entries, err := replica.audit.Entries(replica.ctx, edgeLog, edgeLog+1)
	if err != nil || len(entries) != 1 || entries[0].Kind != KindSnapshotApplied || entries[0].Subject != "acme:edge-1" {
		t.Fatalf("the replica's audit log: %+v, %v", entries, err)
	}
	var logged struct {
		Version      uint64   `json:"version"`
		Changed      int      `json:"changed"`
		ChangedCodes []string `json:"changed_codes"`
	}
	if err := json.Unmarshal(entries[0].Data, &logged); err != nil || logged.Version != replica.version() || logged.Changed != 2 || len(logged.ChangedCodes) != 2 {
		t.Errorf("audit data %s: %v", entries[0].Data, err)
	}
	now = hub.clock.Now()
	afterChanges := []authCase{
		{"device revoked at the hub", tokenDev, false, StatusRevoked, "object revoked"},
		{"device revoked at the hub, certificate", tokenDev, true, StatusRevoked, "object revoked: compromised"},
		{"quarantined at the hub", certDev, true, StatusQuarantined, "firmware"},
		{"moved to another edge", mover, false, StatusUnknown, ""},
		{"moved behind this edge, token", moved, false, StatusActive, ""},
		{"moved behind this edge, new certificate", moved, true, StatusActive, ""},
		{"moved behind this edge, replaced certificate", loose, true, StatusUnknown, "not this object's"},
		{"unchanged device", sub, false, StatusActive, ""},
	}
	checkAuth(t, replica.reg, now, afterChanges)
	hubRev, _ := hub.reg.RevokedCertificates(hub.ctx)
	rev, err := replica.reg.RevokedCertificates(replica.ctx)
	var serials []string
	for _, r := range rev {
		serials = append(serials, r.Serial.Text(16))
	}
	for _, want := range []*x509.Certificate{gone.cert, tokenDev.cert, loose.cert} {
		if !slices.Contains(serials, want.SerialNumber.Text(16)) {
			t.Errorf("the replica's revoked certificates %v lack %s (%v)", serials, want.SerialNumber.Text(16), err)
		}
	}
	if len(rev) != 3 || len(hubRev) <= len(rev) {
		t.Errorf("the replica lists %d revoked certificates, the hub %d; want 3, of this edge's objects only", len(rev), len(hubRev))
	}

	// Refusals: the replica stays at the second snapshot.
	_, otherHub, _ := ed25519.GenerateKey(nil)
	// A byte of the signed payload changed (in the payload, not the
	// envelope's base64, which would be malformed rather than forged).
	var env struct {
		Payload   []byte `json:"payload"`
		Signature []byte `json:"signature"`
	}
	if err := json.Unmarshal(second, &env); err != nil {
		t.Fatal(err)
	}
	env.Payload[len(env.Payload)/2] ^= 0x04
	forged, _ := json.Marshal(env)
	s2, _ := hub.reg.EdgeSnapshot(hub.ctx, "acme:edge-1")
	byOther, _ := snapshot.Sign(s2, otherHub)
	edge2 := hub.signedSnapshot("acme:edge-2")
	for _, tc := range []struct {
		name string
		data []byte
		edge string
		want error
	}{
		{"a flipped byte", forged, "acme:edge-1", snapshot.ErrForged},
		{"signed by another key", byOther, "acme:edge-1", snapshot.ErrForged},
		{"the first snapshot replayed", data, "acme:edge-1", snapshot.ErrStale},
		{"another edge's snapshot", edge2, "acme:edge-1", snapshot.ErrWrongEdge},
	} {
		if err := replica.sync(tc.data, hub.hubKey(), tc.edge); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// ApplySnapshot checks on its own what Verify checked.
	old, _ := snapshot.Verify(data, hub.hubKey(), "acme:edge-1", 0)
	if err := replica.reg.ApplySnapshot(replica.ctx, old); !errors.Is(err, snapshot.ErrStale) {
		t.Errorf("applying an older snapshot: %v, want ErrStale", err)
	}
	foreign, _ := snapshot.Verify(edge2, hub.hubKey(), "acme:edge-2", 0)
	if err := replica.reg.ApplySnapshot(replica.ctx, foreign); !errors.Is(err, snapshot.ErrWrongEdge) {
		t.Errorf("applying another edge's snapshot: %v, want ErrWrongEdge", err)
	}
	if len(replica.takeApplied()) != 0 {
		t.Error("a refused snapshot reached OnSnapshot")
	}
	checkAuth(t, replica.reg, now, afterChanges)

	// The edge restarts with no hub: its database is all it has.
	applied := replica.version()
	replica.db.Close()
	rebooted := newReplica(t, replica.dir, hub.clock.Now)
	if rebooted.version() != applied || rebooted.reg.CA() == nil || !bytes.Equal(rebooted.reg.CA().CertPEM(), hub.ca.CertPEM()) {
		t.Fatal("after a restart the replica lost its snapshot or CA")
	}
	st, err := rebooted.reg.AppliedSnapshot(rebooted.ctx)
	if err != nil || st.Edge != "acme:edge-1" || st.Deployment != testDeployment || st.IssuedAt.IsZero() || st.AppliedAt.IsZero() {
		t.Errorf("AppliedSnapshot after a restart: %+v, %v", st, err)
	}
	hub.clock.Advance(30 * 24 * time.Hour) // a month without the hub
	checkAuth(t, rebooted.reg, hub.clock.Now(), append(afterChanges,
		authCase{"certificate after a restart", sub, true, StatusActive, ""},
		authCase{"revoked before, after a restart", gone, true, StatusRevoked, "revoked"},
		authCase{"another edge's, after a restart", other, false, StatusUnknown, ""},
	))
	if err := rebooted.sync(second, hub.hubKey(), "acme:edge-1"); err != nil {
		t.Errorf("the applied snapshot again after a restart: %v", err)
	}
	if err := rebooted.sync(data, hub.hubKey(), "acme:edge-1"); !errors.Is(err, snapshot.ErrStale) {
		t.Errorf("an older snapshot after a restart: %v, want ErrStale", err)
	}
}

// TestEdgeSnapshotRefused: the hub snapshots only edges and gateways that
// exist, and a replica issues none.
func TestEdgeSnapshotRefused(t *testing.T) {
	hub := newTestEnv(t, t.TempDir(), nil)
	hub.mustTenant("acme", "")
	hub.mustDevice("acme:edge-1", KindEdge, "", nil)
	hub.mustDevice("acme:gw-1", KindGateway, "", nil)
	hub.mustDevice("acme:dev-1", KindDevice, "acme:edge-1", nil)
	cases := []struct {
		code  string
		want  error
		field string
	}{
		{"acme:nobody", ErrNotFound, ""},
		{"acme:dev-1", ErrInvalid, "edge"},
		{"not a code", ErrInvalid, "edge"},
		{"acme:gw-1", nil, ""},
		{"acme:edge-1", nil, ""},
	}
	for _, tc := range cases {
		s, err := hub.reg.EdgeSnapshot(hub.ctx, tc.code)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.code, err, tc.want)
			continue
		}
		if tc.field != "" {
			wantFieldError(t, err, tc.field)
		}
		if tc.want == nil && (s == nil || s.Edge != tc.code || s.Object(tc.code) == nil) {
			t.Errorf("%s: snapshot %+v", tc.code, s)
		}
	}
	// A gateway's snapshot has only the gateway: nothing is behind it.
	if s, _ := hub.reg.EdgeSnapshot(hub.ctx, "acme:gw-1"); len(s.Objects) != 1 {
		t.Errorf("the gateway's snapshot holds %d objects", len(s.Objects))
	}
	replica := newReplica(t, t.TempDir(), hub.clock.Now)
	if _, err := replica.reg.EdgeSnapshot(replica.ctx, "acme:edge-1"); !errors.Is(err, ErrReplica) {
		t.Errorf("a replica's EdgeSnapshot: %v, want ErrReplica", err)
	}
	s, _ := hub.reg.EdgeSnapshot(hub.ctx, "acme:edge-1")
	if err := hub.reg.ApplySnapshot(hub.ctx, s); !errors.Is(err, ErrConflict) {
		t.Errorf("the hub applying a snapshot: %v, want ErrConflict", err)
	}
}

// TestReplicaRefusesChanges: on an edge, identities change only by a
// snapshot; its own API tokens are the one thing it writes.
func TestReplicaRefusesChanges(t *testing.T) {
	hub := newTestEnv(t, t.TempDir(), nil)
	hub.mustTenant("acme", "")
	hub.mustDevice("acme:edge-1", KindEdge, "", nil)
	hub.mustDevice("acme:dev-1", KindDevice, "acme:edge-1", nil)
	replica := newReplica(t, t.TempDir(), hub.clock.Now)
	replica.mustSync(hub.signedSnapshot("acme:edge-1"), hub.hubKey(), "acme:edge-1")
	r, ctx := replica.reg, replica.ctx
	k := newKey(t, keys.P256)
	for name, f := range map[string]func() error{
		"create tenant": func() error { _, err := r.CreateTenant(ctx, "admin", "beta", "", ""); return err },
		"register model": func() error {
			_, _, err := r.RegisterModel(ctx, "admin", modelDoc("acme:m", "1.0.0", "M"), nil)
			return err
		},
		"register": func() error { _, err := r.Register(ctx, "admin", RegisterRequest{Code: "acme:dev-2"}); return err },
		"import": func() error {
			_, err := r.Import(ctx, "admin", strings.NewReader("code\nacme:dev-3\n"), ImportOptions{})
			return err
		},
		"revoke":     func() error { _, err := r.Revoke(ctx, "admin", "acme:dev-1", "x"); return err },
		"quarantine": func() error { _, err := r.Quarantine(ctx, "admin", "acme:dev-1", "x"); return err },
		"rotate": func() error {
			_, err := r.Rotate(ctx, "admin", "acme:dev-1", KeySource{PublicKey: k.Public()}, 0, 0)
			return err
		},
		"update": func() error {
			_, err := r.Update(ctx, "admin", "acme:dev-1", UpdateRequest{Tags: map[string]string{"a": "b"}})
			return err
		},
		"decommission": func() error { _, err := r.Decommission(ctx, "admin", "acme:dev-1", "x", false); return err },
		"retire due":   func() error { _, err := r.RetireDue(ctx); return err },
		"create claim": func() error { _, _, err := r.CreateClaim(ctx, "admin", "acme", ClaimSpec{}); return err },
	} {
		if err := f(); !errors.Is(err, ErrReplica) {
			t.Errorf("%s: %v, want ErrReplica", name, err)
		}
	}
	if _, _, err := r.CreateToken(ctx, "admin", "edge-admin", "admin", ""); err != nil {
		t.Errorf("a replica's own API token: %v", err)
	}
	if o, err := r.Object(ctx, "acme:dev-1"); err != nil || o.Status != StatusActive || len(o.Tags) != 1 {
		t.Errorf("after the refusals: %+v, %v", o, err)
	}

	// A replica is built without the hub's keys.
	db := replica.db
	hubCA := hub.ca
	copyCA, _ := ca.FromCertificate(hubCA.CertPEM())
	for name, opts := range map[string]Options{
		"a signing key":  {DB: db, Replica: true, Signer: hub.signer},
		"the CA's key":   {DB: db, Replica: true, CA: hubCA},
		"no database":    {Replica: true},
		"hub without CA": {DB: db, Signer: hub.signer, Audit: hub.audit, DeploymentID: "d"},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New with %s: no error", name)
		}
	}
	if r, err := New(Options{DB: db, Replica: true, CA: copyCA}); err != nil || r.CA() == nil {
		t.Errorf("New with the CA's certificate: %v", err)
	}
}

// TestApplySnapshotChecksContent: a snapshot the registry cannot hold as
// it is (an edge that is a device, an unknown state, a model document that
// is another model) is refused whole and changes nothing.
func TestApplySnapshotChecksContent(t *testing.T) {
	hub := newTestEnv(t, t.TempDir(), nil)
	hub.mustTenant("acme", "")
	if _, _, err := hub.reg.RegisterModel(hub.ctx, "admin", modelDoc("acme:pump", "1.0.0", "Pump"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.reg.RegisterModel(hub.ctx, "admin", modelDoc("acme:pump", "2.0.0", "Pump"), nil); err != nil {
		t.Fatal(err)
	}
	hub.mustDevice("acme:edge-1", KindEdge, "", nil)
	hub.mustDevice("acme:dev-1", KindDevice, "acme:edge-1", &ModelRef{ID: "acme:pump", Version: "1.0.0"})
	replica := newReplica(t, t.TempDir(), hub.clock.Now)
	other, _ := hub.reg.Model(hub.ctx, "acme:pump", "2.0.0")
	otherDoc, _ := other.JSON()
	cases := []struct {
		name string
		edit func(s *snapshot.Snapshot)
	}{
		{"the edge is a device", func(s *snapshot.Snapshot) { s.Objects[0].Kind = KindDevice }},
		{"an unknown kind", func(s *snapshot.Snapshot) { s.Objects[1].Kind = "robot" }},
		{"an unknown state", func(s *snapshot.Snapshot) { s.Objects[1].Status = "sleepy" }},
		{"an unknown key state", func(s *snapshot.Snapshot) { s.Objects[1].Keys[0].Status = "lost" }},
		{"retiring without an end", func(s *snapshot.Snapshot) { s.Objects[1].Keys[0].Status = KeyRetiring }},
		{"a model document that does not parse", func(s *snapshot.Snapshot) { s.Models[0].Doc = []byte(`{"id":1}`) }},
		{"another model's document", func(s *snapshot.Snapshot) { s.Models[0].Doc = otherDoc }},
		{"inconsistent", func(s *snapshot.Snapshot) { s.Objects[1].Edge = "acme:elsewhere" }},
	}
	for _, tc := range cases {
		s, err := hub.reg.EdgeSnapshot(hub.ctx, "acme:edge-1")
		if err != nil {
			t.Fatal(err)
		}
		tc.edit(s)
		if err := replica.reg.ApplySnapshot(replica.ctx, s); !errors.Is(err, ErrInvalid) || !errors.Is(err, snapshot.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid and snapshot.ErrInvalid", tc.name, err)
		}
	}
	if replica.version() != 0 || len(replica.takeApplied()) != 0 {
		t.Error("a refused snapshot was recorded")
	}
	if _, err := replica.reg.Object(replica.ctx, "acme:dev-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused snapshot left objects: %v", err)
	}
}

// TestReplicaWithoutAudit: an edge that keeps no audit log of its own
// applies snapshots and admits devices all the same (the change is logged).
func TestReplicaWithoutAudit(t *testing.T) {
	hub := newTestEnv(t, t.TempDir(), nil)
	hub.mustTenant("acme", "")
	hub.mustDevice("acme:edge-1", KindEdge, "", nil)
	dev := hub.mustDevice("acme:dev-1", KindDevice, "acme:edge-1", nil)
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "wanwu.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied []SnapshotApplied
	r, err := New(Options{DB: db, Replica: true, Now: hub.clock.Now, Logger: slog.New(slog.DiscardHandler),
		OnSnapshot: func(a SnapshotApplied) { applied = append(applied, a) }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := snapshot.Verify(hub.signedSnapshot("acme:edge-1"), hub.hubKey(), "acme:edge-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ApplySnapshot(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Objects != 2 {
		t.Errorf("OnSnapshot got %+v", applied)
	}
	checkAuth(t, r, hub.clock.Now(), []authCase{{"certificate", dev, true, StatusActive, ""}, {"token", dev, false, StatusActive, ""}})
	if _, _, err := r.CreateToken(context.Background(), "admin", "edge-admin", "admin", "acme"); err != nil {
		t.Errorf("an API token without an audit log: %v", err)
	}
}
