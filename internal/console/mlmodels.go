package console

// The machine-learning models the hub holds (package mlreg): the versions
// registered per tenant, one version's document (inputs with their
// training statistics, outputs, thresholds, budget, training facts), its
// digests and the hub's signature, and its ONNX bytes as a download.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// mlRow is one registered version in the list.
type mlRow struct {
	Tenant, ID, Version string
	Kind                string
	Inputs              int
	Thresholds          string
	Size                int
	Actor               string
	CreatedAt           time.Time
}

type mlListView struct {
	Scope    string
	Rows     []mlRow
	Rollouts []rolloutRow
}

// mlVersionView is one version's page.
type mlVersionView struct {
	Rec       *mlreg.Record
	Meta      ml.Meta
	MetaError string
	Thresh    []mlThreshold
	Signature string
	Versions  []string
	Figures   []nodeFigures
	Rollouts  []rolloutRow
	Deploy    deployForm
}

type mlThreshold struct {
	Name, Output string
	Above        string
}

func (c *Console) mlRoutes() {
	c.mux.HandleFunc("GET /ml", c.page(c.mlList))
	c.mux.HandleFunc("GET /ml/{tenant}/{id}", c.page(c.mlVersion))
	c.mux.HandleFunc("GET /ml/{tenant}/{id}/{version}", c.page(c.mlVersion))
	c.mux.HandleFunc("GET /ml/{tenant}/{id}/{version}/onnx", c.page(c.mlONNX))
	c.rolloutRoutes()
	c.datasetRoutes()
}

func (c *Console) mlList(w http.ResponseWriter, r *http.Request, q *request) error {
	var out struct {
		Models []*mlreg.Record `json:"models"`
	}
	if err := c.call(r, q, "GET", "/api/v1/ml/models", nil, nil, &out); err != nil {
		return err
	}
	v := &mlListView{Scope: q.p.Tenant}
	for _, rec := range out.Models {
		row := mlRow{Tenant: rec.Tenant, ID: rec.ID, Version: rec.Version, Size: rec.Size, Actor: rec.Actor, CreatedAt: rec.CreatedAt}
		if m, err := ml.ParseMeta(rec.Meta); err == nil {
			row.Kind, row.Inputs, row.Thresholds = m.Kind, len(m.Inputs), thresholdsText(m)
		}
		v.Rows = append(v.Rows, row)
	}
	var err error
	if v.Rollouts, err = c.rolloutRows(r, q, nil); err != nil {
		return err
	}
	c.render(w, r, q, http.StatusOK, "ml", view{Title: "ML models", Nav: "ml", Data: v})
	return nil
}

func thresholdsText(m ml.Meta) string {
	var parts []string
	for _, t := range thresholds(m) {
		parts = append(parts, t.Name+": "+t.Output+" > "+t.Above)
	}
	return strings.Join(parts, "; ")
}

func thresholds(m ml.Meta) []mlThreshold {
	var out []mlThreshold
	for name, t := range m.Thresholds {
		out = append(out, mlThreshold{Name: name, Output: t.Output, Above: num(t.Above)})
	}
	slices.SortFunc(out, func(a, b mlThreshold) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// mlPath is the API's path of a model (or one of its versions), with the
// tenant as the query a deployment-wide token needs.
func mlPath(tenant, id string, rest ...string) (string, url.Values) {
	p := "/api/v1/ml/models/" + url.PathEscape(id)
	for _, s := range rest {
		p += "/" + url.PathEscape(s)
	}
	return p, url.Values{"tenant": {tenant}}
}

func (c *Console) mlVersion(w http.ResponseWriter, r *http.Request, q *request) error {
	f := defaultDeployForm()
	return c.mlVersionWith(w, r, q, http.StatusOK, &f)
}

// mlVersionWith renders a version's page with the deploy form's values
// (and its refusal) and the status.
func (c *Console) mlVersionWith(w http.ResponseWriter, r *http.Request, q *request, status int, deploy *deployForm) error {
	tenant, id, version := r.PathValue("tenant"), r.PathValue("id"), r.PathValue("version")
	if version == "" {
		version = "latest"
	}
	var versions struct {
		Versions []*mlreg.Record `json:"versions"`
	}
	p, query := mlPath(tenant, id)
	if err := c.call(r, q, "GET", p, query, nil, &versions); err != nil {
		return err
	}
	var one struct {
		Model    *mlreg.Record                  `json:"model"`
		Figures  map[string]*mlreg.VersionStats `json:"figures"`
		Rollouts []*rollout.Plan                `json:"rollouts"`
	}
	p, query = mlPath(tenant, id, "versions", version)
	if err := c.call(r, q, "GET", p, query, nil, &one); err != nil {
		return err
	}
	v := &mlVersionView{Rec: one.Model, Signature: fmt.Sprintf("%x", one.Model.Signature), Figures: figuresRows(one.Figures), Deploy: *deploy}
	for _, p := range one.Rollouts {
		v.Rollouts = append(v.Rollouts, rolloutRow{ID: p.ID, Tenant: p.Tenant, Model: p.Artifact, Version: p.Version, Baseline: p.Baseline,
			State: p.State, Targets: p.Targets.String(), CreatedAt: p.CreatedAt})
	}
	if m, err := ml.ParseMeta(one.Model.Meta); err != nil {
		v.MetaError = err.Error()
	} else {
		v.Meta, v.Thresh = m, thresholds(m)
	}
	for _, rec := range versions.Versions {
		v.Versions = append(v.Versions, rec.Version)
	}
	c.render(w, r, q, status, "ml_version", view{Title: id + " v" + one.Model.Version, Nav: "ml", Data: v})
	return nil
}

// mlONNX serves a version's ONNX bytes as the API gives them, as a
// download.
func (c *Console) mlONNX(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant, id, version := r.PathValue("tenant"), r.PathValue("id"), r.PathValue("version")
	p, query := mlPath(tenant, id, "versions", version, "onnx")
	a, err := c.apiRaw(r, q, "GET", p, query, nil)
	if err != nil {
		return err
	}
	if a.Status >= 400 {
		return decodeAPIError(a)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.onnx"`, strings.ReplaceAll(id, `"`, ""), strings.ReplaceAll(version, `"`, "")))
	_, _ = w.Write(a.Body)
	return nil
}
