package hub

// The model registry at the hub: model versions (package ml's Meta and
// ONNX bytes) stored, signed with the hub's key and served by the API,
// and listed to each edge whose loops use them (the edge verifies and
// imports them).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// openML opens the model registry in the hub's database.
func (h *Hub) openML(ctx context.Context) error {
	var err error
	if h.mlModels, err = mlreg.Open(ctx, mlreg.Options{
		DB: h.db, Audit: h.audit, Signer: h.signer, OnAudit: h.wakeAuditForwarder, Now: h.opts.Now,
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	// The loops' model scores: registered models run in process, with a
	// bounded cache of loaded sessions.
	h.mlScorer = mlreg.NewScorer(h.mlModels, ml.NewGonnx())
	if err := h.mlScorer.Register(h.metrics); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	// Rollouts stage model versions here and at the edges; the hub's
	// controller moves the stages of the loops the hub runs.
	if h.rollouts, err = rollout.Open(ctx, rollout.Options{DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Now: h.opts.Now}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if h.rolloutCtl, err = rollout.NewController(rollout.ControllerOptions{
		Store: h.rollouts, Node: rollout.HubNode, Meter: h.mlScorer, OnRecord: h.rolloutRecorded, Global: h.judgeLabels,
		Every: time.Duration(h.opts.Config.ML.RolloutEvery), Now: h.opts.Now, Logger: h.log.With("component", "rollout"),
	}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	h.mlScorer.SetStages(h.rolloutCtl.Lookup)
	h.mlScorer.SetFlagged(func(tenant, object, plan, version string, at time.Time, features map[string]float64) {
		h.capturer.Load().Candidate(tenant, object, plan, version, at, features)
	})
	if err := h.openDatasets(ctx); err != nil {
		return err
	}
	return h.rolloutCtl.Start(ctx)
}

// mlStats gives a version's figures: the hub's own, and each edge's as
// its last report says.
func (h *Hub) mlStats(tenant, id, version string) map[string]*mlreg.VersionStats {
	out := map[string]*mlreg.VersionStats{}
	if st := h.mlScorer.Stats(tenant, id, version); st != nil {
		out[rollout.HubNode] = st
	}
	h.edgeFigures.Range(func(k, v any) bool {
		for _, f := range v.([]mlreg.VersionFigures) {
			if f.Tenant == tenant && f.ID == id && f.Version == version {
				out[k.(string)] = f.Figures
			}
		}
		return true
	})
	return out
}

// edgeMLFigures keeps an edge's last report of its models' figures (in
// memory: the next report follows within half a minute).
func (h *Hub) edgeMLFigures(_ context.Context, edgeCode string, data []byte) error {
	var report []mlreg.VersionFigures
	if err := json.Unmarshal(data, &report); err != nil {
		h.log.Warn("an edge's model figures are malformed; passed over", "edge", edgeCode, "err", err)
		return nil
	}
	h.edgeFigures.Store(edgeCode, report)
	return nil
}

// rolloutChanged evaluates the hub's rollouts at once after an operator's
// change, before the API answers: a version registered for a rollout is
// in effect while its plan waits for the next tick.
func (h *Hub) rolloutChanged() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.rolloutCtl.Evaluate(ctx); err != nil {
		h.log.Warn("rollouts could not be evaluated after a change; the next tick will", "err", err)
	}
}

// Rollouts exposes the rollout store (nil before Start).
func (h *Hub) Rollouts() *rollout.Store { return h.rollouts }

// RolloutController exposes the hub's own rollout controller.
func (h *Hub) RolloutController() *rollout.Controller { return h.rolloutCtl }

// rolloutRecorded follows a stage change at any node (the hub's, or an
// edge's sent up): a gate that failed anywhere rolls the plan back
// everywhere; when every target is active, the plan is done.
func (h *Hub) rolloutRecorded(ctx context.Context, rec *rollout.Record) {
	if err := h.settleRollout(ctx, rec); err != nil {
		h.log.Warn("a rollout's state could not be settled; the next stage change settles it", "rollout", rec.Plan, "err", err)
	}
}

func (h *Hub) settleRollout(ctx context.Context, rec *rollout.Record) error {
	p, err := h.rollouts.Get(ctx, rec.Tenant, rec.Plan)
	if err != nil || p.State != rollout.Running {
		return err
	}
	switch rec.To {
	case rollout.RolledBack:
		if rec.By == "" {
			_, err = h.rollouts.SetState(ctx, "rollout", p.Tenant, p.ID, rollout.Aborted, "at "+rec.Node+": "+rec.Reason)
		}
		return err
	case rollout.Active:
		nodes, err := h.rollouts.Nodes(ctx, p.ID)
		if err != nil {
			return err
		}
		active := map[string]bool{}
		for _, n := range nodes {
			active[n.Node] = n.Stage == rollout.Active
		}
		want := slices.Clone(p.Targets.Edges)
		if p.Targets.Hub {
			want = append(want, rollout.HubNode)
		}
		for n := range active {
			if !slices.Contains(want, n) {
				want = append(want, n)
			}
		}
		for _, n := range want {
			if !active[n] {
				return nil
			}
		}
		_, err = h.rollouts.SetState(ctx, "rollout", p.Tenant, p.ID, rollout.Done, "active at "+strings.Join(want, ", "))
		return err
	}
	return nil
}

// edgeRollout keeps a stage change an edge sent up.
func (h *Hub) edgeRollout(ctx context.Context, edge string, data []byte) error {
	var rec rollout.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		h.log.Warn("an edge's rollout record is malformed; passed over", "edge", edge, "err", err)
		return nil
	}
	if err := h.rollouts.Import(ctx, edge, &rec); err != nil {
		if errors.Is(err, rollout.ErrInvalid) || errors.Is(err, rollout.ErrNotFound) {
			h.log.Warn("an edge's rollout record was refused; passed over", "edge", edge, "rollout", rec.Plan, "err", err)
			return nil
		}
		return err
	}
	h.rolloutRecorded(ctx, &rec)
	return nil
}

// MLModels exposes the model registry (nil before Start).
func (h *Hub) MLModels() *mlreg.Registry { return h.mlModels }

// edgeML answers an edge's long poll for the model versions its loops
// use: at once when the list's digest is not after, else when a change
// (registrations and loop changes are audited) makes it so, or nil once
// wait passed.
func (h *Hub) edgeML(ctx context.Context, edge, after string, wait time.Duration) ([]byte, error) {
	obj, err := h.reg.Object(ctx, edge)
	if err != nil {
		return nil, err
	}
	return h.pollAudited(ctx, wait, func() ([]byte, error) {
		l, err := h.edgeModels(ctx, edge, obj.Tenant)
		if err != nil || l.Digest == after {
			return nil, err
		}
		return json.Marshal(l)
	})
}

// edgeModels lists the registered versions that the loops an edge may run
// (its loop bundle's) name in decide.model: the version pinned, or the
// model's first, and those the rollouts staging it at the edge name; a
// model not registered (yet) is left out, and the loop records the error
// at the edge as it would here.
func (h *Hub) edgeModels(ctx context.Context, edge, tenant string) (*api.EdgeModels, error) {
	b, err := h.loops.Store().EdgeBundle(ctx, edge, tenant)
	if err != nil {
		return nil, err
	}
	all, err := h.mlModels.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	first := map[string]*mlreg.Record{}
	byVersion := map[string]*mlreg.Record{}
	for _, rec := range all { // by id and version: the first of an id is in effect without a rollout
		if first[rec.ID] == nil {
			first[rec.ID] = rec
		}
		byVersion[rec.ID+"@"+rec.Version] = rec
	}
	picked := map[string]*mlreg.Record{}
	used := map[string]bool{}
	for _, info := range b.Loops {
		if info.Def == nil || info.Def.Decide.Model == nil {
			continue
		}
		ref := info.Def.Decide.Model
		used[ref.ID] = true
		rec := first[ref.ID]
		if ref.Version > 0 {
			rec = byVersion[ref.ID+"@"+strconv.Itoa(ref.Version)]
		}
		if rec != nil {
			picked[rec.ID+"@"+rec.Version] = rec
		}
	}
	// The rollouts of those models that stage versions at this edge,
	// with the versions they name.
	plans, err := h.rollouts.List(ctx, tenant, "", false)
	if err != nil {
		return nil, err
	}
	var staged []*rollout.Plan
	perModel := map[string]int{}
	for _, p := range plans { // newest first
		if p.Kind != rollout.KindModel || !used[p.Artifact] || !p.TargetsNode(edge, true) || perModel[p.Artifact] >= 20 {
			continue
		}
		perModel[p.Artifact]++
		staged = append(staged, p)
		for _, v := range []string{p.Version, p.Baseline} {
			if rec := byVersion[p.Artifact+"@"+v]; rec != nil {
				picked[rec.ID+"@"+rec.Version] = rec
			}
		}
	}
	slices.Reverse(staged) // oldest first
	l := &api.EdgeModels{Models: []*mlreg.Record{}}
	for _, rec := range all { // in the registry's order
		if p := picked[rec.ID+"@"+rec.Version]; p != nil {
			l.Models = append(l.Models, p)
		}
	}
	l.Rollouts = staged
	content, err := json.Marshal(struct {
		M []*mlreg.Record
		R []*rollout.Plan
	}{l.Models, l.Rollouts})
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(content)
	l.Digest = hex.EncodeToString(d[:])
	return l, nil
}
