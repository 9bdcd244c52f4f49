package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// maxRolloutBody bounds a rollout plan or a promotion.
const maxRolloutBody = 256 << 10

// rolloutRoutes serve staged rollouts of model versions: create, list,
// show (plan, each node's stage, the records of the gates), promote and
// roll back.
func (s *server) rolloutRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/ml/rollouts", s.authed(auth.Operator, s.createRollout))
	mux.HandleFunc("GET /api/v1/ml/rollouts", s.authed(auth.Viewer, s.listRollouts))
	mux.HandleFunc("GET /api/v1/ml/rollouts/{id}", s.authed(auth.Viewer, s.getRollout))
	mux.HandleFunc("POST /api/v1/ml/rollouts/{id}/promote", s.authed(auth.Operator, s.forceRollout(false)))
	mux.HandleFunc("POST /api/v1/ml/rollouts/{id}/rollback", s.authed(auth.Operator, s.forceRollout(true)))
}

// rolloutErr maps the rollout store's errors.
func rolloutErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rollout.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Message: err.Error()}
	case errors.Is(err, rollout.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, rollout.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	return err
}

// createRollout is POST /api/v1/ml/rollouts: a plan (package rollout's
// Plan as an operator writes it). The candidate must be registered; a
// plan without baseline takes the version in effect (the candidate of the
// newest finished rollout of the model, else the model's first version).
func (s *server) createRollout(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	body, err := readBody(w, r, maxRolloutBody)
	if err != nil {
		return err
	}
	plan, err := rollout.ParsePlan(body)
	if err != nil {
		return rolloutErr(err)
	}
	// The token's tenant, ?tenant=, or the one tenant with that model.
	tenant, err := s.modelTenant(r, p, plan.Artifact)
	if err != nil {
		return err
	}
	if err := p.Allows(auth.Operator, tenant); err != nil {
		return err
	}
	plan.Tenant = tenant
	ctx := r.Context()
	for i, code := range plan.Targets.Edges {
		obj, err := s.Registry.Object(ctx, code)
		if err != nil || obj.Kind != registry.KindEdge || obj.Tenant != tenant {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_argument", Field: fmt.Sprintf("targets.edges[%d]", i),
				Message: fmt.Sprintf("targets.edges[%d]: %q is not an edge of tenant %s", i, code, tenant)}
		}
	}
	if _, err := s.MLModels.Get(ctx, tenant, plan.Artifact, plan.Version); err != nil {
		return mlErr(err)
	}
	if plan.Baseline != "" {
		if _, err := s.MLModels.Get(ctx, tenant, plan.Artifact, plan.Baseline); err != nil {
			return mlErr(fmt.Errorf("baseline: %w", err))
		}
	} else if plan.Baseline, err = s.defaultBaseline(r, tenant, plan); err != nil {
		return err
	}
	if plan.Baseline == plan.Version {
		plan.Baseline = ""
	}
	created, err := s.Rollouts.Create(ctx, p.Name, plan)
	if err != nil {
		return rolloutErr(err)
	}
	if s.RolloutChanged != nil {
		s.RolloutChanged()
	}
	writeJSON(w, http.StatusCreated, map[string]any{"rollout": created})
	return nil
}

func (s *server) defaultBaseline(r *http.Request, tenant string, plan *rollout.Plan) (string, error) {
	plans, err := s.Rollouts.List(r.Context(), tenant, plan.Artifact, false)
	if err != nil {
		return "", err
	}
	for _, old := range plans { // newest first
		switch old.State {
		case rollout.Done:
			return old.Version, nil
		case rollout.Aborted:
			if old.Baseline != "" {
				return old.Baseline, nil
			}
		}
	}
	// No rollout ended: the first version is in effect.
	first, err := s.MLModels.First(r.Context(), tenant, plan.Artifact)
	if err != nil {
		return "", mlErr(err)
	}
	return first, nil
}

func (s *server) listRollouts(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return err
	}
	plans, err := s.Rollouts.List(r.Context(), tenant, r.URL.Query().Get("model"), r.URL.Query().Get("state") == rollout.Running)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"rollouts": plans})
	return nil
}

// RolloutView is GET /api/v1/ml/rollouts/{id}: the plan, each node's
// stage and the records of its stage changes with their gates.
type RolloutView struct {
	Rollout *rollout.Plan            `json:"rollout"`
	Nodes   []rollout.NodeState      `json:"nodes"`
	Records []*rollout.Record        `json:"records"`
	Models  map[string]*mlreg.Record `json:"models,omitempty"`
}

func (s *server) rolloutOf(r *http.Request, p auth.Principal) (*rollout.Plan, error) {
	tenant, err := scopeTenant(p, r.URL.Query().Get("tenant"))
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	if tenant == "" { // a deployment-wide token: the plan's own tenant
		all, err := s.Rollouts.List(r.Context(), "", "", false)
		if err != nil {
			return nil, err
		}
		for _, pl := range all {
			if pl.ID == id {
				return pl, nil
			}
		}
		return nil, rolloutErr(fmt.Errorf("rollout %s: %w", id, rollout.ErrNotFound))
	}
	pl, err := s.Rollouts.Get(r.Context(), tenant, id)
	return pl, rolloutErr(err)
}

func (s *server) getRollout(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	pl, err := s.rolloutOf(r, p)
	if err != nil {
		return err
	}
	v := RolloutView{Rollout: pl}
	if v.Nodes, err = s.Rollouts.Nodes(r.Context(), pl.ID); err != nil {
		return err
	}
	limit := 200
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 {
		limit = l
	}
	if v.Records, err = s.Rollouts.Records(r.Context(), pl.Tenant, pl.ID, limit); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// rolloutForce is the body of a promotion or rollback: the node ("" or
// absent: every target), the stage (a promotion's; default active) and
// why.
type rolloutForce struct {
	Node   string `json:"node,omitempty"`
	Stage  string `json:"stage,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (s *server) forceRollout(back bool) func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		pl, err := s.rolloutOf(r, p)
		if err != nil {
			return err
		}
		if err := p.Allows(auth.Operator, pl.Tenant); err != nil {
			return err
		}
		body, err := readBody(w, r, maxRolloutBody)
		if err != nil {
			return err
		}
		var f rolloutForce
		if len(body) > 0 {
			if err := strictJSON(body, &f); err != nil {
				return err
			}
		}
		switch {
		case back:
			if f.Stage != "" && f.Stage != rollout.RolledBack {
				return badRequest("stage", "a rollback's stage is rolled_back, got %q", f.Stage)
			}
			f.Stage = rollout.RolledBack
		case f.Stage == "":
			f.Stage = rollout.Active
		case f.Stage != rollout.Canary && f.Stage != rollout.Active && f.Stage != rollout.Shadow:
			return badRequest("stage", "a promotion's stage is shadow, canary or active, got %q", f.Stage)
		}
		if len(f.Reason) > 512 {
			return badRequest("reason", "at most 512 bytes")
		}
		out, err := s.Rollouts.ForceStage(r.Context(), p.Name, pl.Tenant, pl.ID, f.Node, f.Stage, f.Reason)
		if err != nil {
			return rolloutErr(err)
		}
		if s.RolloutChanged != nil {
			s.RolloutChanged()
		}
		writeJSON(w, http.StatusOK, map[string]any{"rollout": out})
		return nil
	}
}

// readJSON reads a request's body (at most limit bytes) as one JSON
// object into v, unknown fields refused.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return strictJSON(body, v)
}

// strictJSON decodes one JSON object, unknown fields refused.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("body", "trailing data after the JSON object")
	}
	return nil
}
