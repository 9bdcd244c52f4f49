package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/csvimport"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

func (s *server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				s.Logger.Warn("not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return nil
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return nil
	}))
	mux.Handle("GET /metrics", s.promHandler())

	// Public: what anyone needs to verify credentials, certificates and tree heads.
	mux.HandleFunc("GET /api/v1/info", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Info) })
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	mux.HandleFunc("GET /api/v1/ca.pem", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.CA.CertPEM())
	})
	mux.HandleFunc("GET /api/v1/ca/crl", s.handle(s.crl))

	mux.HandleFunc("POST /api/v1/tenants", s.authed(auth.Admin, s.createTenant))
	mux.HandleFunc("GET /api/v1/tenants", s.authed(auth.Viewer, s.listTenants))
	mux.HandleFunc("GET /api/v1/tenants/{name}", s.authed(auth.Viewer, s.getTenant))

	mux.HandleFunc("POST /api/v1/models", s.authed(auth.Operator, s.registerModel))
	mux.HandleFunc("GET /api/v1/models", s.authed(auth.Viewer, s.listModels))
	mux.HandleFunc("GET /api/v1/models/{id}", s.authed(auth.Viewer, s.getModel))
	mux.HandleFunc("GET /api/v1/models/{id}/versions/{version}", s.authed(auth.Viewer, s.getModel))
	mux.HandleFunc("GET /api/v1/models/{id}/versions/{version}/td", s.authed(auth.Viewer, s.modelTD))
	mux.HandleFunc("POST /api/v1/models/{id}/versions/{version}/deprecate", s.authed(auth.Operator, s.deprecateModel))

	mux.HandleFunc("POST /api/v1/objects", s.authed(auth.Operator, s.registerObject))
	mux.HandleFunc("GET /api/v1/objects", s.authed(auth.Viewer, s.listObjects))
	mux.HandleFunc("POST /api/v1/objects/import", s.authed(auth.Operator, s.importObjects))
	mux.HandleFunc("POST /api/v1/objects/delete", s.authed(auth.Operator, s.deleteObjects))
	mux.HandleFunc("GET /api/v1/objects/{code}", s.authed(auth.Viewer, s.getObject))
	mux.HandleFunc("PATCH /api/v1/objects/{code}", s.authed(auth.Operator, s.updateObject))
	mux.HandleFunc("POST /api/v1/objects/{code}/decommission", s.authed(auth.Operator, s.decommission))
	mux.HandleFunc("GET /api/v1/objects/{code}/credential", s.authed(auth.Viewer, s.getCredential))
	mux.HandleFunc("GET /api/v1/objects/{code}/certificate", s.authed(auth.Viewer, s.getCertificate))
	mux.HandleFunc("GET /api/v1/objects/{code}/admission", s.authed(auth.Viewer, s.admission))
	mux.HandleFunc("POST /api/v1/objects/{code}/rotate", s.authed(auth.Operator, s.rotate))
	mux.HandleFunc("POST /api/v1/objects/{code}/revoke", s.authed(auth.Operator, s.lifecycle("revoke")))
	mux.HandleFunc("POST /api/v1/objects/{code}/quarantine", s.authed(auth.Operator, s.lifecycle("quarantine")))
	mux.HandleFunc("POST /api/v1/objects/{code}/reinstate", s.authed(auth.Operator, s.lifecycle("reinstate")))
	mux.HandleFunc("GET /api/v1/resolve/{key}", s.authed(auth.Viewer, s.resolve))

	mux.HandleFunc("POST /api/v1/claims", s.authed(auth.Operator, s.createClaim))
	mux.HandleFunc("GET /api/v1/claims", s.authed(auth.Viewer, s.listClaims))
	mux.HandleFunc("POST /api/v1/claims/{id}/revoke", s.authed(auth.Operator, s.revokeClaim))
	// Devices claim with their claim token, not an API token.
	mux.HandleFunc("POST /api/v1/claim", s.handle(s.useClaim))

	mux.HandleFunc("POST /api/v1/tokens", s.authed(auth.Admin, s.createToken))
	mux.HandleFunc("GET /api/v1/tokens", s.authed(auth.Admin, s.listTokens))
	mux.HandleFunc("DELETE /api/v1/tokens/{name}", s.authed(auth.Admin, s.revokeToken))

	mux.HandleFunc("GET /api/v1/audit/head", s.authed(auth.Viewer, s.auditHead))
	mux.HandleFunc("GET /api/v1/audit/entries", s.authed(auth.Viewer, s.auditEntries))
	mux.HandleFunc("GET /api/v1/audit/proof/inclusion", s.authed(auth.Viewer, s.inclusionProof))
	mux.HandleFunc("GET /api/v1/audit/proof/consistency", s.authed(auth.Viewer, s.consistencyProof))

	mux.HandleFunc("/api/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path)}
	}))
}

// allow returns a tenant check for principal p needing role min. The
// shared model namespace belongs to the deployment: only an admin of no
// single tenant writes there.
func allow(p auth.Principal, min auth.Role) func(string) error {
	return func(tenant string) error {
		if tenant == registry.SharedNamespace {
			return p.Allows(auth.Admin, "")
		}
		return p.Allows(min, tenant)
	}
}

// visible loads an object and hides it from tokens of other tenants (404, so
// existence does not leak).
func (s *server) visible(ctx context.Context, p auth.Principal, codeStr string) (*registry.Object, error) {
	o, err := s.Registry.Object(ctx, codeStr)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			if _, perr := code.Parse(codeStr); perr != nil {
				return nil, badRequest("code", "%v", perr)
			}
		}
		return nil, err
	}
	if !p.Sees(o.Tenant) {
		return nil, fmt.Errorf("%w: object %q", registry.ErrNotFound, codeStr)
	}
	return o, nil
}

// operable is visible for a change: the object, when the principal may
// operate on its tenant.
func (s *server) operable(ctx context.Context, p auth.Principal, codeStr string) (*registry.Object, error) {
	o, err := s.visible(ctx, p, codeStr)
	if err != nil {
		return nil, err
	}
	if err := p.Allows(auth.Operator, o.Tenant); err != nil {
		return nil, err
	}
	return o, nil
}

func (s *server) crl(w http.ResponseWriter, r *http.Request) error {
	revoked, err := s.Registry.RevokedCertificates(r.Context())
	if err != nil {
		return err
	}
	// The CRL number must grow with every new list; the time does.
	der, err := s.CA.CRL(revoked, big.NewInt(time.Now().UnixMilli()), 24*time.Hour)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
	return nil
}

type tenantBody struct {
	Name   string `json:"name"`
	Title  string `json:"title"`
	Prefix string `json:"prefix"`
}

func (s *server) createTenant(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b tenantBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if err := p.Allows(auth.Admin, ""); err != nil {
		return err
	}
	t, err := s.Registry.CreateTenant(r.Context(), p.Name, b.Name, b.Title, b.Prefix)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *server) listTenants(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ts, err := s.Registry.Tenants(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": nonNil(ts)})
	return nil
}

func (s *server) getTenant(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	name := r.PathValue("name")
	if !p.Sees(name) {
		return fmt.Errorf("%w: tenant %q", registry.ErrNotFound, name)
	}
	t, err := s.Registry.Tenant(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *server) registerModel(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	doc, err := readBody(w, r, maxJSONBody)
	if err != nil {
		return err
	}
	m, created, err := s.Registry.RegisterModel(r.Context(), p.Name, doc, allow(p, auth.Operator))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"model": m, "created": created})
	return nil
}

func (s *server) listModels(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	ms, err := s.Registry.Models(r.Context(), tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": nonNil(ms)})
	return nil
}

func (s *server) modelFor(r *http.Request, p auth.Principal) (string, string, error) {
	id := r.PathValue("id")
	c, err := code.Parse(id)
	if err != nil {
		return "", "", badRequest("id", "%v", err)
	}
	if !p.Sees(c.Namespace) && c.Namespace != registry.SharedNamespace {
		return "", "", fmt.Errorf("%w: model %s", registry.ErrNotFound, id)
	}
	version := r.PathValue("version")
	if version == "" {
		version = r.URL.Query().Get("version")
	}
	return id, version, nil
}

func (s *server) getModel(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, version, err := s.modelFor(r, p)
	if err != nil {
		return err
	}
	m, err := s.Registry.Model(r.Context(), id, version)
	if err != nil {
		return err
	}
	doc, err := m.JSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
	return nil
}

func (s *server) modelTD(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, version, err := s.modelFor(r, p)
	if err != nil {
		return err
	}
	m, err := s.Registry.Model(r.Context(), id, version)
	if err != nil {
		return err
	}
	td, err := m.ThingDescription()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/td+json")
	_, _ = w.Write(td)
	return nil
}

// keyBody is how requests carry a key: a CSR, a public key, or neither (the hub generates one).
type keyBody struct {
	CSR       string `json:"csr,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
	KeyAlg    string `json:"key_alg,omitempty"`
}

func (k keyBody) source() (registry.KeySource, error) {
	var ks registry.KeySource
	if k.CSR != "" && k.PublicKey != "" {
		return ks, badRequest("public_key", "give a csr or a public_key, not both")
	}
	if k.KeyAlg != "" {
		alg, err := keys.ParseAlg(k.KeyAlg)
		if err != nil {
			return ks, badRequest("key_alg", "%v", err)
		}
		ks.Alg = alg
	}
	if k.CSR != "" {
		ks.CSR = []byte(k.CSR)
	}
	if k.PublicKey != "" {
		pub, err := keys.ParsePublicKey(k.PublicKey)
		if err != nil {
			return ks, badRequest("public_key", "%v", err)
		}
		ks.PublicKey = pub
	}
	return ks, nil
}

type objectBody struct {
	Code     string             `json:"code"`
	Kind     string             `json:"kind,omitempty"`
	Model    *registry.ModelRef `json:"model,omitempty"`
	Path     string             `json:"path,omitempty"`
	Tags     map[string]string  `json:"tags,omitempty"`
	Edge     string             `json:"edge,omitempty"`
	Network  string             `json:"network,omitempty"`
	Validity string             `json:"validity,omitempty"`
	keyBody
}

func (s *server) registerObject(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b objectBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	c, err := code.Parse(b.Code)
	if err != nil {
		return badRequest("code", "%v", err)
	}
	if err := p.Allows(auth.Operator, c.Namespace); err != nil {
		return err
	}
	req := registry.RegisterRequest{Code: b.Code, Kind: b.Kind, Model: b.Model, Tags: b.Tags, Edge: b.Edge, Network: b.Network}
	if b.Path != "" {
		if req.Path, err = code.ParsePath(b.Path); err != nil {
			return badRequest("path", "%v", err)
		}
	}
	if req.Validity, err = parseDuration("validity", b.Validity); err != nil {
		return err
	}
	if req.Key, err = b.source(); err != nil {
		return err
	}
	reg, err := s.Registry.Register(r.Context(), p.Name, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, reg)
	return nil
}

func (s *server) listObjects(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	f, err := objectFilter(r, p)
	if err != nil {
		return err
	}
	f.Status, f.After = r.URL.Query().Get("status"), r.URL.Query().Get("after")
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := queryUint(r, "limit", 100)
		if err != nil {
			return err
		}
		f.Limit = int(min(n, 1000))
	}
	objs, next, err := s.Registry.List(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"objects": nonNil(objs), "next": next})
	return nil
}

// maxJSONImportRows bounds an import answered as one JSON document, which
// holds every row's result (with generated keys) until the end; longer files
// stream as NDJSON.
const maxJSONImportRows = 1000

// importObjects registers the rows of a bulk CSV (docs/ARCHITECTURE.md,
// "Bulk import"). A client that accepts application/x-ndjson gets each row's
// result as a line the moment the row is done, and a summary line at the
// end, in memory bounded by one row; others get one JSON document, for at
// most maxJSONImportRows rows.
func (s *server) importObjects(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxCSVBody)
	limit := s.ImportMaxRows
	if strings.Contains(r.Header.Get("Accept"), ndjson) {
		return s.importNDJSON(w, r, p, limit)
	}
	jsonLimit := min(limit, maxJSONImportRows)
	sum, err := s.Registry.Import(r.Context(), p.Name, r.Body, registry.ImportOptions{MaxRows: jsonLimit, Allow: allow(p, auth.Operator)})
	if sum == nil || err != nil && len(sum.Rows) == 0 {
		return err
	}
	body := map[string]any{"created": sum.Created, "unchanged": sum.Unchanged, "errors": sum.Errors, "rows": sum.Rows}
	status := http.StatusOK
	if sum.Errors > 0 || err != nil {
		// Good rows are registered; the status tells scripts that some rows were not.
		status = http.StatusMultiStatus
	}
	if err != nil {
		// Rows before the failure are registered, and their results (keys
		// included) must reach the caller: answer them with the reason the
		// rest was not imported.
		msg := err.Error()
		if errors.Is(err, csvimport.ErrTooManyRows) && jsonLimit < limit {
			msg = fmt.Sprintf("a JSON answer holds at most %d rows; the rest of the file was not imported: ask for %s (as 'wanwu ctl object import' does) to stream larger files", jsonLimit, ndjson)
		}
		body["stopped"] = msg
	}
	writeJSON(w, status, body)
	return nil
}

const ndjson = "application/x-ndjson"

// importLine is one line of an NDJSON import answer: a row's result
// (type "row"), or the summary that ends a complete answer (type
// "summary", with "stopped" when the rest of the file was not imported).
type importLine struct {
	Type string `json:"type"`
	*registry.RowResult
	Created   *int   `json:"created,omitempty"`
	Unchanged *int   `json:"unchanged,omitempty"`
	Errors    *int   `json:"errors,omitempty"`
	Stopped   string `json:"stopped,omitempty"`
}

func (s *server) importNDJSON(w http.ResponseWriter, r *http.Request, p auth.Principal, limit int) error {
	rc := http.NewResponseController(w)
	// Answer rows while the body is still arriving: without this, an
	// HTTP/1.1 server stops reading the request once the answer starts.
	if err := rc.EnableFullDuplex(); err != nil {
		s.Logger.Debug("csv import: full duplex unsupported", "err", err)
	}
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		if !started {
			w.Header().Set("Content-Type", ndjson)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
			started = true
		}
	}
	sum, err := s.Registry.ImportStream(r.Context(), p.Name, r.Body, registry.ImportOptions{
		MaxRows: limit, Allow: allow(p, auth.Operator),
		Emit: func(res registry.RowResult) error {
			start()
			if err := enc.Encode(importLine{Type: "row", RowResult: &res}); err != nil {
				return fmt.Errorf("api: import answer: %w", err)
			}
			// A row's generated key exists nowhere else: send it now.
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("api: import answer: %w", err)
			}
			return nil
		},
	})
	if !started && err != nil {
		return err // the header was unusable: nothing imported
	}
	start()
	line := importLine{Type: "summary", Created: &sum.Created, Unchanged: &sum.Unchanged, Errors: &sum.Errors}
	if err != nil {
		if r.Context().Err() != nil {
			s.Logger.Info("csv import stopped: the client went away", "actor", p.Name, "created", sum.Created)
			return nil
		}
		line.Stopped = err.Error()
		s.Logger.Info("csv import stopped", "actor", p.Name, "created", sum.Created, "err", err)
	}
	_ = enc.Encode(line)
	return nil
}

func (s *server) getObject(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

func (s *server) getCredential(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	cred, err := s.Registry.Credential(r.Context(), o.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"code": o.Code, "credential": cred})
	return nil
}

func (s *server) getCertificate(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.visible(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	pem, err := s.Registry.Certificate(r.Context(), o.Code)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write([]byte(pem))
	return nil
}

func (s *server) admission(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	codeStr := r.PathValue("code")
	if _, err := code.Parse(codeStr); err != nil {
		return badRequest("code", "%v", err)
	}
	c, _ := code.Parse(codeStr)
	if !p.Sees(c.Namespace) {
		writeJSON(w, http.StatusOK, registry.Admission{Status: registry.StatusUnknown, Reason: "no object with this code"})
		return nil
	}
	a, err := s.Registry.Admit(r.Context(), codeStr, registry.Presented{CertSerial: r.URL.Query().Get("cert_serial"), DID: r.URL.Query().Get("did")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

type rotateBody struct {
	keyBody
	Overlap      string `json:"overlap,omitempty"`
	RevokeOldNow bool   `json:"revoke_old_now,omitempty"`
	Validity     string `json:"validity,omitempty"`
}

func (s *server) rotate(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b rotateBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	o, err := s.operable(r.Context(), p, r.PathValue("code"))
	if err != nil {
		return err
	}
	ks, err := b.source()
	if err != nil {
		return err
	}
	overlap, err := parseDuration("overlap", b.Overlap)
	if err != nil {
		return err
	}
	if overlap < 0 {
		return badRequest("overlap", "must not be negative (use revoke_old_now)")
	}
	if b.RevokeOldNow {
		overlap = -1
	}
	validity, err := parseDuration("validity", b.Validity)
	if err != nil {
		return err
	}
	reg, err := s.Registry.Rotate(r.Context(), p.Name, o.Code, ks, overlap, validity)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reg)
	return nil
}

type reasonBody struct {
	Reason string `json:"reason"`
}

func (s *server) lifecycle(action string) func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		var b reasonBody
		if r.ContentLength != 0 {
			if err := decodeJSON(w, r, &b); err != nil {
				return err
			}
		}
		o, err := s.operable(r.Context(), p, r.PathValue("code"))
		if err != nil {
			return err
		}
		switch action {
		case "revoke":
			o, err = s.Registry.Revoke(r.Context(), p.Name, o.Code, b.Reason)
		case "quarantine":
			o, err = s.Registry.Quarantine(r.Context(), p.Name, o.Code, b.Reason)
		default:
			o, err = s.Registry.Reinstate(r.Context(), p.Name, o.Code, b.Reason)
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, o)
		return nil
	}
}

func (s *server) resolve(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	o, err := s.Registry.Resolve(r.Context(), r.PathValue("key"))
	if err != nil {
		return err
	}
	if !p.Sees(o.Tenant) {
		return fmt.Errorf("%w: %s", registry.ErrNotFound, r.PathValue("key"))
	}
	writeJSON(w, http.StatusOK, o)
	return nil
}

type tokenBody struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
}

func (s *server) createToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var b tokenBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	role, err := auth.ParseRole(b.Role)
	if err != nil {
		return badRequest("role", "%v", err)
	}
	if p.Tenant != "" {
		// A tenant admin mints tokens only for its own tenant.
		if b.Tenant != "" && b.Tenant != p.Tenant {
			return p.Allows(auth.Admin, b.Tenant)
		}
		b.Tenant = p.Tenant
	}
	tok, secret, err := s.Registry.CreateToken(r.Context(), p.Name, b.Name, role, b.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "secret": secret})
	return nil
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ts, err := s.Registry.Tokens(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(ts)})
	return nil
}

func (s *server) revokeToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tok, err := s.Registry.RevokeToken(r.Context(), p.Name, r.PathValue("name"), p.Tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tok)
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// scopeTenant confines a request to the caller's tenant: a tenant-bound token
// gets its own tenant whatever it asked for, or a 403 if it asked for another.
func scopeTenant(p auth.Principal, requested string) (string, error) {
	if p.Tenant == "" {
		return requested, nil
	}
	if requested != "" && requested != p.Tenant {
		return "", p.Allows(auth.Viewer, requested)
	}
	return p.Tenant, nil
}

// objectFilter reads the registry selection shared by object listings and
// fleet queries: tenant, kind, edge, network ("-" = none), hierarchy (under)
// and tags (tag=k=v, repeatable).
func objectFilter(r *http.Request, p auth.Principal) (registry.ListFilter, error) {
	q := r.URL.Query()
	f := registry.ListFilter{Kind: q.Get("kind"), Edge: q.Get("edge"), Network: q.Get("network")}
	var err error
	if f.Tenant, err = scopeTenant(p, q.Get("tenant")); err != nil {
		return f, err
	}
	if under := q.Get("under"); under != "" {
		if f.Under, err = code.ParsePath(under); err != nil {
			return f, badRequest("under", "%v", err)
		}
	}
	for _, t := range q["tag"] {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return f, badRequest("tag", "%q: want key=value", t)
		}
		if f.Tags == nil {
			f.Tags = map[string]string{}
		}
		f.Tags[k] = v
	}
	return f, nil
}
