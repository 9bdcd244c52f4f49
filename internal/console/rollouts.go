package console

// Rollouts of model versions (package rollout): the list on the ML models
// page, a rollout's page (its plan, each node's stage, every stage change
// with the figures and gate results that decided it; promote and roll
// back), and the deploy form on a version's page.

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

func (c *Console) rolloutRoutes() {
	c.mux.HandleFunc("GET /ml/rollouts/{id}", c.page(c.rolloutPage))
	c.mux.HandleFunc("POST /ml/rollouts/{id}/promote", c.page(c.rolloutForce(false)))
	c.mux.HandleFunc("POST /ml/rollouts/{id}/rollback", c.page(c.rolloutForce(true)))
	c.mux.HandleFunc("POST /ml/{tenant}/{id}/{version}/deploy", c.page(c.rolloutDeploy))
}

// rolloutRow is one rollout in a list.
type rolloutRow struct {
	ID, Tenant, Model, Version, Baseline, State, Targets string
	Stages                                               []countText // node → stage
	CreatedAt                                            time.Time
}

func (c *Console) rolloutRows(r *http.Request, q *request, query url.Values) ([]rolloutRow, error) {
	var out struct {
		Rollouts []*rollout.Plan `json:"rollouts"`
	}
	if err := c.call(r, q, "GET", "/api/v1/ml/rollouts", query, nil, &out); err != nil {
		return nil, err
	}
	var rows []rolloutRow
	for _, p := range out.Rollouts {
		row := rolloutRow{ID: p.ID, Tenant: p.Tenant, Model: p.Artifact, Version: p.Version, Baseline: p.Baseline, State: p.State,
			Targets: p.Targets.String(), CreatedAt: p.CreatedAt}
		if len(rows) < 20 { // the stages of the newest
			var v rolloutAPIView
			if err := c.call(r, q, "GET", "/api/v1/ml/rollouts/"+url.PathEscape(p.ID), url.Values{"tenant": {p.Tenant}, "limit": {"1"}}, nil, &v); err == nil {
				for _, n := range v.Nodes {
					row.Stages = append(row.Stages, countText{Name: n.Node, Text: n.Stage})
				}
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// rolloutAPIView is the API's answer for one rollout.
type rolloutAPIView struct {
	Rollout *rollout.Plan       `json:"rollout"`
	Nodes   []rollout.NodeState `json:"nodes"`
	Records []*rollout.Record   `json:"records"`
}

// rolloutView is a rollout's page.
type rolloutView struct {
	Plan    *rollout.Plan
	Targets string
	Gates   []countText
	Nodes   []rollout.NodeState
	Records []recordRow
	Done    string
	Error   string
}

type recordRow struct {
	At              time.Time
	Node, From, To  string
	Reason, By      string
	Samples         int
	Results         []gateRow
	RolledBack, Ups bool
}

type gateRow struct {
	Figure, Value, Max, Verdict string
	Fail                        bool
}

func (c *Console) rolloutData(r *http.Request, q *request) (*rolloutView, error) {
	var a rolloutAPIView
	if err := c.call(r, q, "GET", "/api/v1/ml/rollouts/"+url.PathEscape(r.PathValue("id")), url.Values{"limit": {"500"}}, nil, &a); err != nil {
		return nil, err
	}
	p := a.Rollout
	v := &rolloutView{Plan: p, Targets: p.Targets.String(), Nodes: a.Nodes}
	for _, name := range slices.Sorted(mapKeys(p.Gates)) {
		v.Gates = append(v.Gates, countText{Name: name, Text: "≤ " + num(p.Gates[name].Max)})
	}
	for i := len(a.Records) - 1; i >= 0; i-- { // newest first
		rec := a.Records[i]
		row := recordRow{At: rec.At, Node: rec.Node, From: rec.From, To: rec.To, Reason: rec.Reason, By: rec.By,
			Samples: rec.Figures.Samples, RolledBack: rec.To == rollout.RolledBack, Ups: rec.To == rollout.Canary || rec.To == rollout.Active}
		for _, g := range rec.Results {
			gr := gateRow{Figure: g.Figure, Max: num(g.Max)}
			switch {
			case !g.Measured:
				gr.Value, gr.Verdict = "–", "not measured"
			case !g.Judged:
				gr.Value, gr.Verdict = num(g.Value), "not judged yet"
			case g.Pass:
				gr.Value, gr.Verdict = num(g.Value), "pass"
			default:
				gr.Value, gr.Verdict, gr.Fail = num(g.Value), "fail", true
			}
			row.Results = append(row.Results, gr)
		}
		v.Records = append(v.Records, row)
	}
	return v, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (c *Console) rolloutPage(w http.ResponseWriter, r *http.Request, q *request) error {
	v, err := c.rolloutData(r, q)
	if err != nil {
		return err
	}
	v.Done = doneMessage(r)
	c.render(w, r, q, http.StatusOK, "rollout", view{Title: "Rollout " + v.Plan.ID, Nav: "ml", Data: v})
	return nil
}

// rolloutForce promotes (to the stage asked) or rolls back, at every
// target or one node.
func (c *Console) rolloutForce(back bool) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, q *request) error {
		id := r.PathValue("id")
		body := map[string]string{"node": strings.TrimSpace(r.PostFormValue("node")), "reason": strings.TrimSpace(r.PostFormValue("reason"))}
		verb, done := "rollback", "rolled-back"
		if !back {
			verb, done = "promote", "promoted"
			body["stage"] = r.PostFormValue("stage")
		}
		err := c.call(r, q, "POST", "/api/v1/ml/rollouts/"+url.PathEscape(id)+"/"+verb, nil, body, nil)
		if ae, ok := refusal(err); ok {
			v, err := c.rolloutData(r, q)
			if err != nil {
				return err
			}
			v.Error = refusalText(ae)
			c.render(w, r, q, ae.Status, "rollout", view{Title: "Rollout " + id, Nav: "ml", Data: v})
			return nil
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, "/ml/rollouts/"+url.PathEscape(id)+"?done="+done, http.StatusSeeOther)
		return nil
	}
}

// deployForm is the deploy form's values, put back after a refusal.
type deployForm struct {
	Edges, Sites, CanaryObjects string
	AllEdges, Hub               bool
	Canary                      string // percent
	ShadowFor, CanaryFor        string
	MinSamples                  string
	Error                       string
}

func defaultDeployForm() deployForm {
	return deployForm{AllEdges: true, Canary: "10", ShadowFor: "10m", CanaryFor: "10m", MinSamples: strconv.Itoa(rollout.DefaultMinSamples)}
}

func (c *Console) rolloutDeploy(w http.ResponseWriter, r *http.Request, q *request) error {
	tenant, id, version := r.PathValue("tenant"), r.PathValue("id"), r.PathValue("version")
	f := deployForm{Edges: r.PostFormValue("edges"), Sites: r.PostFormValue("sites"), CanaryObjects: r.PostFormValue("canary_objects"),
		AllEdges: r.PostFormValue("all_edges") != "", Hub: r.PostFormValue("hub") != "", Canary: r.PostFormValue("canary"),
		ShadowFor: r.PostFormValue("shadow_for"), CanaryFor: r.PostFormValue("canary_for"), MinSamples: r.PostFormValue("min_samples")}
	var err error
	plan := map[string]any{"artifact": id, "version": version}
	frac, ferr := strconv.ParseFloat(strings.TrimSpace(f.Canary), 64)
	samples, serr := strconv.Atoi(strings.TrimSpace(f.MinSamples))
	switch {
	case ferr != nil:
		err = &apiError{Status: http.StatusBadRequest, Message: "canary: a percentage of the objects, such as 10"}
	case serr != nil:
		err = &apiError{Status: http.StatusBadRequest, Message: "minimum samples: a whole number"}
	default:
		plan["targets"] = map[string]any{"hub": f.Hub, "all_edges": f.AllEdges, "edges": fields(f.Edges), "sites": fields(f.Sites)}
		plan["canary"] = map[string]any{"fraction": frac / 100, "objects": fields(f.CanaryObjects)}
		plan["stages"] = map[string]any{"shadow": map[string]any{"min_samples": samples, "min_duration": strings.TrimSpace(f.ShadowFor)},
			"canary": map[string]any{"min_samples": samples, "min_duration": strings.TrimSpace(f.CanaryFor)}}
		var out struct {
			Rollout *rollout.Plan `json:"rollout"`
		}
		err = c.call(r, q, "POST", "/api/v1/ml/rollouts", url.Values{"tenant": {tenant}}, plan, &out)
		if err == nil {
			http.Redirect(w, r, "/ml/rollouts/"+url.PathEscape(out.Rollout.ID)+"?tenant="+url.QueryEscape(tenant)+"&done=deployed", http.StatusSeeOther)
			return nil
		}
	}
	ae, ok := refusal(err)
	if !ok {
		return err
	}
	f.Error = refusalText(ae)
	return c.mlVersionWith(w, r, q, ae.Status, &f)
}

// fields splits a list typed with commas or spaces.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
}

// nodeFigures is one node's figures of a version, for the page.
type nodeFigures struct {
	Node        string
	F           *mlreg.VersionStats
	Drift       []countText
	Flagged     string
	Latency     string
	Score       string
	DriftHigher bool
}

func figuresRows(m map[string]*mlreg.VersionStats) []nodeFigures {
	var out []nodeFigures
	for _, node := range slices.Sorted(mapKeys(m)) {
		f := m[node]
		if f == nil {
			continue
		}
		nf := nodeFigures{Node: node, F: f,
			Latency: fmt.Sprintf("%s / %s", num(f.LatencyMS["p50"]), num(f.LatencyMS["p99"])),
			Score:   fmt.Sprintf("%s / %s / %s", num(f.Score["p50"]), num(f.Score["p90"]), num(f.Score["p99"]))}
		for _, in := range slices.Sorted(mapKeys(f.PSI)) {
			nf.Drift = append(nf.Drift, countText{Name: in, Text: fmt.Sprintf("%.2f", f.PSI[in])})
			if f.PSI[in] > 0.25 {
				nf.DriftHigher = true
			}
		}
		var flagged []string
		for _, name := range slices.Sorted(mapKeys(f.Flagged)) {
			flagged = append(flagged, fmt.Sprintf("%s %.1f%%", name, 100*f.Flagged[name]))
		}
		nf.Flagged = strings.Join(flagged, ", ")
		out = append(out, nf)
	}
	return out
}
