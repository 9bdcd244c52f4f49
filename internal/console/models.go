package console

// This file serves the thing-model pages: /models, the models the token
// sees with their versions; /models/{id} (the latest version) and
// /models/{id}/{version}, a version's properties, actions and events, its
// versions and their deprecation (POST .../deprecate); and
// /models/{id}/{version}/td, the version as a W3C WoT Thing Description
// download. Everything comes from the node's API (GET /api/v1/models...),
// which decides what a token sees and may change.

import (
	"errors"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// modelRow is one model in the list: its versions, oldest first.
type modelRow struct {
	ID, Title, Tenant string
	Shared            bool
	Latest            string
	Versions          []registry.ModelInfo
	// AllDeprecated: no version may be used for new objects.
	AllDeprecated bool
}

// modelsView is /models' data.
type modelsView struct {
	Models []modelRow
	Scope  string // the tenant a bound token sees
}

// schemaRow is a property, an argument or an event's data field.
type schemaRow struct {
	Name, Type, Unit, Range, Description string
	Enum                                 []string
}

type propertyRow struct {
	schemaRow
	Writable                           bool
	Classification, Sampling, Priority string
}

type actionRow struct {
	Name, Description, Classification string
	Input, Output                     []schemaRow
}

type modelEventRow struct {
	Name, Description, Classification, Priority string
	Data                                        []schemaRow
}

// modelView is a model version's page.
type modelView struct {
	M          *thingmodel.Model
	Info       *registry.ModelInfo // this version's row; nil if the list lacks it
	Versions   []registry.ModelInfo
	Latest     string
	Properties []propertyRow
	Actions    []actionRow
	Events     []modelEventRow
	// Error is the deprecate form's refusal, Reason what was typed.
	Error  string
	Reason string
}

// modelPath is the API path of a model (and version).
func modelPath(id, version string) string {
	p := "/api/v1/models/" + url.PathEscape(id)
	if version != "" {
		p += "/versions/" + url.PathEscape(version)
	}
	return p
}

// modelInfos lists the model versions the token sees.
func (c *Console) modelInfos(r *http.Request, q *request) ([]registry.ModelInfo, error) {
	var out struct {
		Models []registry.ModelInfo `json:"models"`
	}
	if err := c.call(r, q, http.MethodGet, "/api/v1/models", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Models, nil
}

// models is /models.
func (c *Console) models(w http.ResponseWriter, r *http.Request, q *request) error {
	infos, err := c.modelInfos(r, q)
	if err != nil {
		return err
	}
	v := modelsView{Scope: q.p.Tenant}
	for _, mi := range infos { // grouped by id, versions ascending (the API's order)
		if n := len(v.Models); n == 0 || v.Models[n-1].ID != mi.ID {
			v.Models = append(v.Models, modelRow{ID: mi.ID, Tenant: mi.Tenant, Shared: mi.Shared, AllDeprecated: true})
		}
		row := &v.Models[len(v.Models)-1]
		row.Versions = append(row.Versions, mi)
		row.Latest, row.Title = mi.Version, mi.Title
		row.AllDeprecated = row.AllDeprecated && mi.Deprecated
	}
	c.render(w, r, q, http.StatusOK, "models", view{Title: "Thing models", Nav: "models", Data: v})
	return nil
}

// modelData reads a model version (the latest when version is "") and its
// list of versions.
func (c *Console) modelData(r *http.Request, q *request, id, version string) (*modelView, error) {
	var m thingmodel.Model
	if err := c.call(r, q, http.MethodGet, modelPath(id, version), nil, nil, &m); err != nil {
		return nil, err
	}
	infos, err := c.modelInfos(r, q)
	if err != nil {
		return nil, err
	}
	v := &modelView{M: &m}
	for i := range infos {
		if infos[i].ID != m.ID {
			continue
		}
		v.Versions = append(v.Versions, infos[i])
		v.Latest = infos[i].Version
		if infos[i].Version == m.Version {
			v.Info = &infos[i]
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Properties)) {
		p := m.Properties[name]
		v.Properties = append(v.Properties, propertyRow{schemaRow: schemaRowOf(name, &p.Schema), Writable: !p.ReadOnly,
			Classification: p.Classification, Sampling: p.Sampling, Priority: p.Priority})
	}
	for _, name := range slices.Sorted(maps.Keys(m.Actions)) {
		a := m.Actions[name]
		v.Actions = append(v.Actions, actionRow{Name: name, Description: a.Description, Classification: a.Classification,
			Input: schemaRows(a.Input), Output: schemaRows(a.Output)})
	}
	for _, name := range slices.Sorted(maps.Keys(m.Events)) {
		e := m.Events[name]
		row := modelEventRow{Name: name, Description: e.Description, Classification: e.Classification, Priority: e.Priority}
		if d := e.Data; d != nil {
			if d.Type == "object" && len(d.Properties) > 0 {
				row.Data = schemaRows(d.Properties)
			} else {
				row.Data = []schemaRow{schemaRowOf("", d)}
			}
		}
		v.Events = append(v.Events, row)
	}
	return v, nil
}

func schemaRows(m map[string]*thingmodel.Schema) []schemaRow {
	var out []schemaRow
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, schemaRowOf(name, m[name]))
	}
	return out
}

func schemaRowOf(name string, s *thingmodel.Schema) schemaRow {
	row := schemaRow{Name: name, Type: typeText(s), Unit: s.Unit, Description: s.Description, Enum: s.Enum}
	if s.Type == "array" && s.Items != nil && row.Unit == "" {
		row.Unit = s.Items.Unit
	}
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	switch {
	case s.Minimum != nil && s.Maximum != nil:
		row.Range = num(*s.Minimum) + " … " + num(*s.Maximum)
	case s.Minimum != nil:
		row.Range = "≥ " + num(*s.Minimum)
	case s.Maximum != nil:
		row.Range = "≤ " + num(*s.Maximum)
	}
	return row
}

// typeText names a schema's type: "array of number", "object {a, b}".
func typeText(s *thingmodel.Schema) string {
	switch {
	case s.Type == "array" && s.Items != nil:
		return "array of " + typeText(s.Items)
	case s.Type == "object" && len(s.Properties) > 0:
		return "object {" + strings.Join(slices.Sorted(maps.Keys(s.Properties)), ", ") + "}"
	}
	return s.Type
}

// modelPage is /models/{id} and /models/{id}/{version}.
func (c *Console) modelPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.modelData(r, q, r.PathValue("id"), r.PathValue("version"))
	if err != nil {
		return err
	}
	c.showModel(w, r, q, http.StatusOK, v)
	return nil
}

func (c *Console) showModel(w http.ResponseWriter, r *http.Request, q *request, status int, v *modelView) {
	c.render(w, r, q, status, "model", view{Title: v.M.Key(), Nav: "models", Data: v})
}

// modelDeprecate deprecates a model version through the API; a refusal is
// shown on the version's page, in the API's words.
func (c *Console) modelDeprecate(w http.ResponseWriter, r *http.Request, q *request) error {
	id, version := r.PathValue("id"), r.PathValue("version")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	refuse := func(status int, msg string) error {
		v, err := c.modelData(r, q, id, version)
		if err != nil {
			return err
		}
		v.Error, v.Reason = msg, reason
		c.showModel(w, r, q, status, v)
		return nil
	}
	if r.PostFormValue("confirm") != "yes" {
		return refuse(http.StatusBadRequest, "Tick the box to confirm that new objects may no longer use "+id+"@"+version+".")
	}
	err := c.call(r, q, http.MethodPost, modelPath(id, version)+"/deprecate", nil, map[string]string{"reason": reason}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusNotFound && ae.Status < 500 {
		return refuse(ae.Status, ae.Error())
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/models/"+url.PathEscape(id)+"/"+url.PathEscape(version), http.StatusSeeOther)
	return nil
}

// modelTD serves a model version's WoT Thing Description as a download,
// the API's bytes as they are.
func (c *Console) modelTD(w http.ResponseWriter, r *http.Request, q *request) error {
	id, version := r.PathValue("id"), r.PathValue("version")
	a, err := c.apiRaw(r, q, http.MethodGet, modelPath(id, version)+"/td", nil, nil)
	if err != nil {
		return err
	}
	if a.Status >= 400 {
		return decodeAPIError(a)
	}
	w.Header().Set("Content-Type", "application/td+json")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id + "-" + version + ".td.json"}))
	w.Header().Set("Content-Length", strconv.Itoa(len(a.Body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(a.Body)
	return nil
}
