package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// maxMLBody bounds a model registration: the largest model a Meta may
// allow (ml.MaxModelBytesLimit), in base64, and 1 MiB for the Meta and
// the JSON around them.
const maxMLBody = (ml.MaxModelBytesLimit+2)/3*4 + 1<<20

// mlRoutes serve the model registry: register a model version, list,
// show and download them.
func (s *server) mlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/ml/models", s.authed(auth.Operator, s.registerML))
	mux.HandleFunc("GET /api/v1/ml/models", s.authed(auth.Viewer, s.listML))
	mux.HandleFunc("GET /api/v1/ml/models/{id}", s.authed(auth.Viewer, s.mlVersions))
	mux.HandleFunc("GET /api/v1/ml/models/{id}/versions/{version}", s.authed(auth.Viewer, s.getML))
	mux.HandleFunc("GET /api/v1/ml/models/{id}/versions/{version}/onnx", s.authed(auth.Viewer, s.getMLONNX))
}

// mlUpload is the body of POST /api/v1/ml/models.
type mlUpload struct {
	Meta json.RawMessage `json:"meta"`
	ONNX []byte          `json:"onnx"` // standard base64
}

// parseMLUpload reads a registration body strictly: one JSON object with
// the Meta (an object) and the ONNX bytes (standard base64), both
// present; errors name the field.
func parseMLUpload(body []byte) (meta, onnx []byte, err error) {
	var u mlUpload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field == "":
			return nil, nil, badRequest("body", "want a JSON object {\"meta\": {...}, \"onnx\": \"<base64>\"}, got %s", te.Value)
		case errors.As(err, &te):
			return nil, nil, badRequest(te.Field, "%s: want %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return nil, nil, badRequest("body", "malformed JSON at byte %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			if f == "" {
				return nil, nil, badRequest("body", "unknown field \"\"")
			}
			return nil, nil, badRequest(f, "unknown field %q", f)
		case strings.Contains(err.Error(), "base64"), strings.Contains(err.Error(), "illegal"):
			return nil, nil, badRequest("onnx", "must be the model's bytes in standard base64: %v", err)
		}
		return nil, nil, badRequest("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return nil, nil, badRequest("body", "trailing data after the JSON object")
	}
	if m := strings.TrimSpace(string(u.Meta)); m == "" || m == "null" || !strings.HasPrefix(m, "{") {
		return nil, nil, badRequest("meta", "must be the model's document, a JSON object")
	}
	if len(u.ONNX) == 0 {
		return nil, nil, badRequest("onnx", "must be the model's bytes in standard base64")
	}
	return u.Meta, u.ONNX, nil
}

// mlErr maps the registry's errors.
func mlErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ml.ErrInvalidMeta):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_model", Field: "meta", Message: err.Error()}
	case errors.Is(err, ml.ErrRefused):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_model", Field: "onnx", Message: err.Error()}
	case errors.Is(err, mlreg.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, mlreg.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, mlreg.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	return err
}

func (s *server) registerML(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant := p.Tenant
	if t := r.URL.Query().Get("tenant"); t != "" {
		tenant = t
	}
	if tenant == "" {
		return badRequest("tenant", "a deployment-wide token names the model's tenant: ?tenant=NAME")
	}
	if err := p.Allows(auth.Operator, tenant); err != nil {
		return err
	}
	if _, err := s.Registry.Tenant(r.Context(), tenant); err != nil {
		return err
	}
	body, err := readBody(w, r, maxMLBody)
	if err != nil {
		return err
	}
	meta, onnx, err := parseMLUpload(body)
	if err != nil {
		return err
	}
	rec, created, err := s.MLModels.Register(r.Context(), p.Name, tenant, meta, onnx)
	if err != nil {
		return mlErr(err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"model": rec, "created": created})
	return nil
}

func (s *server) listML(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	recs, err := s.MLModels.List(r.Context(), tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": recs})
	return nil
}

// mlTenant returns the tenant of the model a request names: the
// principal's, ?tenant=, or for a deployment-wide token without it the
// one tenant that has a model of that id.
func (s *server) mlTenant(r *http.Request, p auth.Principal) (string, error) {
	return s.modelTenant(r, p, r.PathValue("id"))
}

// modelTenant is mlTenant for model id.
func (s *server) modelTenant(r *http.Request, p auth.Principal, id string) (string, error) {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil || tenant != "" {
		return tenant, err
	}
	all, err := s.MLModels.List(r.Context(), "")
	if err != nil {
		return "", err
	}
	var tenants []string
	for _, rec := range all {
		if rec.ID == id && (len(tenants) == 0 || tenants[len(tenants)-1] != rec.Tenant) {
			tenants = append(tenants, rec.Tenant)
		}
	}
	switch len(tenants) {
	case 0:
		return "", mlErr(fmt.Errorf("model %s: %w", id, mlreg.ErrNotFound))
	case 1:
		return tenants[0], nil
	}
	return "", badRequest("tenant", "model %s is in several tenants (%s): give ?tenant=", id, strings.Join(tenants, ", "))
}

func (s *server) mlVersions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := s.mlTenant(r, p)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	recs, err := s.MLModels.Versions(r.Context(), tenant, id)
	if err != nil {
		return mlErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "id": id, "versions": recs})
	return nil
}

// mlRecord returns the version the request names ("latest": the newest).
func (s *server) mlRecord(r *http.Request, p auth.Principal) (*mlreg.Record, error) {
	tenant, err := s.mlTenant(r, p)
	if err != nil {
		return nil, err
	}
	version := r.PathValue("version")
	if version == "latest" {
		version = ""
	}
	rec, err := s.MLModels.Get(r.Context(), tenant, r.PathValue("id"), version)
	return rec, mlErr(err)
}

func (s *server) getML(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	rec, err := s.mlRecord(r, p)
	if err != nil {
		return err
	}
	out := map[string]any{"model": rec}
	if s.MLStats != nil {
		out["figures"] = s.MLStats(rec.Tenant, rec.ID, rec.Version)
	}
	if s.Rollouts != nil {
		plans, err := s.Rollouts.List(r.Context(), rec.Tenant, rec.ID, false)
		if err != nil {
			return err
		}
		var named []*rollout.Plan
		for _, pl := range plans {
			if pl.Version == rec.Version || pl.Baseline == rec.Version {
				named = append(named, pl)
			}
		}
		out["rollouts"] = named
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) getMLONNX(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	rec, err := s.mlRecord(r, p)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "attachment; filename="+url.PathEscape(rec.ID+"-"+rec.Version+".onnx"))
	h.Set("ETag", `"sha256:`+rec.ONNXSHA256+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rec.ONNX)
	return nil
}
