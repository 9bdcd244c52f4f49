package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/learn"
)

// maxWindowBody bounds a window posted whole, maxDatasetBody the rest.
const (
	maxWindowBody  = dataset.MaxWindowBytes
	maxDatasetBody = 64 << 10
)

// datasetRoutes serve the learning loop's data: captured windows (list,
// one with its series, capture now, post one), labels, and dataset
// versions (build, list, manifest, export as Parquet in a zip).
func (s *server) datasetRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/ml/windows", s.authed(auth.Viewer, s.listWindows))
	mux.HandleFunc("POST /api/v1/ml/windows", s.authed(auth.Operator, s.postWindow))
	mux.HandleFunc("POST /api/v1/ml/windows/capture", s.authed(auth.Operator, s.captureWindow))
	mux.HandleFunc("GET /api/v1/ml/windows/{id}", s.authed(auth.Viewer, s.getWindow))
	mux.HandleFunc("POST /api/v1/ml/windows/{id}/labels", s.authed(auth.Operator, s.labelWindow))
	mux.HandleFunc("POST /api/v1/ml/datasets", s.authed(auth.Operator, s.buildDataset))
	mux.HandleFunc("GET /api/v1/ml/datasets", s.authed(auth.Viewer, s.listDatasets))
	mux.HandleFunc("GET /api/v1/ml/datasets/{name}/versions/{version}", s.authed(auth.Viewer, s.getDataset))
	mux.HandleFunc("GET /api/v1/ml/datasets/{name}/versions/{version}/export", s.authed(auth.Viewer, s.exportDataset))
	if s.MLModels != nil {
		mux.HandleFunc("POST /api/v1/ml/train", s.authed(auth.Operator, s.trainModel))
	}
}

// trainModel is POST /api/v1/ml/train: fit a model on a dataset version
// (package learn's Spec) and register it.
func (s *server) trainModel(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := writeTenant(r, p)
	if err != nil {
		return err
	}
	var spec learn.Spec
	if err := readJSON(w, r, maxDatasetBody, &spec); err != nil {
		return err
	}
	rec, rep, err := learn.Train(r.Context(), s.Datasets, s.MLModels, p.Name, tenant, spec)
	if errors.Is(err, learn.ErrInvalid) {
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	}
	if err != nil {
		if e := datasetErr(err); e != err {
			return e
		}
		return mlErr(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"model": rec, "report": rep})
	return nil
}

// datasetErr maps the dataset store's errors.
func datasetErr(err error) error {
	var fe *dataset.FieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Field: fe.Field, Message: err.Error()}
	case errors.Is(err, dataset.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, dataset.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, dataset.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	return err
}

// writeTenant is the tenant a change names: the token's, or ?tenant= for
// a deployment-wide token (required then).
func writeTenant(r *http.Request, p auth.Principal) (string, error) {
	tenant := p.Tenant
	if t := r.URL.Query().Get("tenant"); t != "" {
		tenant = t
	}
	if tenant == "" {
		return "", badRequest("tenant", "a deployment-wide token names the tenant: ?tenant=NAME")
	}
	return tenant, p.Allows(auth.Operator, tenant)
}

// readTenant is the tenant a read names: the token's, or ?tenant=
// (required for a deployment-wide token).
func readTenant(r *http.Request, p auth.Principal) (string, error) {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err == nil && tenant == "" {
		return "", badRequest("tenant", "a deployment-wide token names the tenant: ?tenant=NAME")
	}
	return tenant, err
}

func windowQuery(r *http.Request, tenant string) (dataset.Query, error) {
	v := r.URL.Query()
	q := dataset.Query{Tenant: tenant, Object: v.Get("object"), Reason: v.Get("reason"), Loop: v.Get("loop"), Model: v.Get("model"),
		After: v.Get("after"), Unlabelled: v.Get("unlabelled") == "true"}
	for name, t := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if s := v.Get(name); s != "" {
			var err error
			if *t, err = time.Parse(time.RFC3339, s); err != nil {
				return q, badRequest(name, "want an RFC 3339 time, got %q", s)
			}
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, badRequest("limit", "want a positive number, got %q", s)
		}
		q.Limit = n
	}
	return q, nil
}

func (s *server) listWindows(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := readTenant(r, p)
	if err != nil {
		return err
	}
	q, err := windowQuery(r, tenant)
	if err != nil {
		return err
	}
	ws, err := s.Datasets.Windows(r.Context(), q)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"windows": ws})
	return nil
}

// windowView is one window with its labels.
type windowView struct {
	Window *dataset.Window  `json:"window"`
	Labels []*dataset.Label `json:"labels"`
}

func (s *server) getWindow(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := readTenant(r, p)
	if err != nil {
		return err
	}
	win, err := s.Datasets.Window(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		return datasetErr(err)
	}
	labels, err := s.Datasets.Labels(r.Context(), tenant, win.ID)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusOK, windowView{Window: win, Labels: labels})
	return nil
}

// postWindow stores a window posted whole (captured elsewhere).
func (s *server) postWindow(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := writeTenant(r, p)
	if err != nil {
		return err
	}
	body, err := readBody(w, r, maxWindowBody)
	if err != nil {
		return err
	}
	win, err := dataset.ParseWindow(body)
	if err != nil {
		return datasetErr(err)
	}
	if win.Tenant == "" {
		win.Tenant = tenant
	}
	if win.Tenant != tenant {
		return badRequest("tenant", "the window is of tenant %q, not %q", win.Tenant, tenant)
	}
	stored, err := s.Datasets.AddWindow(r.Context(), win)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"window": stored})
	return nil
}

// captureRequest is the body of POST /api/v1/ml/windows/capture: the
// object and the span (the last `minutes`, default 5, or from/to).
type captureRequest struct {
	Object  string    `json:"object"`
	Minutes float64   `json:"minutes,omitempty"`
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to,omitzero"`
	Note    string    `json:"note,omitempty"`
}

func (s *server) captureWindow(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if s.CaptureNow == nil {
		return &Error{Status: http.StatusNotImplemented, Code: "not_implemented", Message: "this node does not capture windows"}
	}
	var c captureRequest
	if err := readJSON(w, r, maxDatasetBody, &c); err != nil {
		return err
	}
	obj, err := s.Registry.Object(r.Context(), c.Object)
	if err != nil {
		return err
	}
	if err := p.Allows(auth.Operator, obj.Tenant); err != nil {
		return err
	}
	to, from := c.To, c.From
	switch {
	case c.Minutes < 0 || c.Minutes > 24*60:
		return badRequest("minutes", "want 0 to 1440, got %v", c.Minutes)
	case from.IsZero() && to.IsZero():
		to = time.Now()
		m := c.Minutes
		if m == 0 {
			m = 5
		}
		from = to.Add(-time.Duration(m * float64(time.Minute)))
	case from.IsZero() || to.IsZero() || to.Before(from):
		return badRequest("from", "give from and to (from before to), or minutes")
	}
	if len(c.Note) > dataset.MaxNoteBytes {
		return badRequest("note", "at most %d bytes", dataset.MaxNoteBytes)
	}
	win, err := s.CaptureNow(r.Context(), obj.Code, fmt.Sprintf("req-%d", time.Now().UnixMilli()), from, to)
	if err != nil {
		if strings.Contains(err.Error(), "no numeric samples") {
			return &Error{Status: http.StatusUnprocessableEntity, Code: "no_data", Field: "object", Message: err.Error()}
		}
		return datasetErr(err)
	}
	if c.Note != "" {
		if _, err := s.Datasets.AddLabel(r.Context(), p.Name, win.Tenant, dataset.Label{Window: win.ID, Kind: dataset.KindNormal, Note: c.Note}); err != nil {
			return datasetErr(err)
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"window": win})
	return nil
}

func (s *server) labelWindow(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := writeTenant(r, p)
	if err != nil {
		return err
	}
	var l dataset.Label
	if err := readJSON(w, r, maxDatasetBody, &l); err != nil {
		return err
	}
	if l.ID != 0 || l.By != "" || !l.At.IsZero() || l.Window != "" && l.Window != r.PathValue("id") {
		return badRequest("body", "give kind, class and note only")
	}
	l.Window = r.PathValue("id")
	out, err := s.Datasets.AddLabel(r.Context(), p.Name, tenant, l)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"label": out})
	return nil
}

// buildRequest is the body of POST /api/v1/ml/datasets: the dataset's
// name and the windows' selection.
type buildRequest struct {
	Name  string        `json:"name"`
	Query dataset.Query `json:"query"`
}

func (s *server) buildDataset(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := writeTenant(r, p)
	if err != nil {
		return err
	}
	var b buildRequest
	if err := readJSON(w, r, maxDatasetBody, &b); err != nil {
		return err
	}
	if b.Query.Tenant == "" {
		b.Query.Tenant = tenant
	}
	m, err := s.Datasets.Build(r.Context(), p.Name, tenant, b.Name, b.Query)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"dataset": m})
	return nil
}

func (s *server) listDatasets(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := readTenant(r, p)
	if err != nil {
		return err
	}
	ms, err := s.Datasets.Datasets(r.Context(), tenant)
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"datasets": ms})
	return nil
}

func datasetVersion(r *http.Request) string {
	if v := r.PathValue("version"); v != "latest" {
		return v
	}
	return ""
}

func (s *server) getDataset(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := readTenant(r, p)
	if err != nil {
		return err
	}
	m, err := s.Datasets.Manifest(r.Context(), tenant, r.PathValue("name"), datasetVersion(r))
	if err != nil {
		return datasetErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"dataset": m})
	return nil
}

func (s *server) exportDataset(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := readTenant(r, p)
	if err != nil {
		return err
	}
	m, err := s.Datasets.Manifest(r.Context(), tenant, r.PathValue("name"), datasetVersion(r))
	if err != nil {
		return datasetErr(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", "attachment; filename="+url.PathEscape(fmt.Sprintf("%s-%d.zip", m.Name, m.Version)))
	h.Set("X-Dataset-Content-SHA256", m.ContentSHA256)
	w.WriteHeader(http.StatusOK)
	if err := s.Datasets.Export(r.Context(), tenant, m.Name, strconv.Itoa(m.Version), w); err != nil {
		// The status is sent: the archive ends short, which a reader sees.
		s.Logger.Error("a dataset export was cut short", "dataset", m.Name, "version", m.Version, "err", err)
	}
	return nil
}
