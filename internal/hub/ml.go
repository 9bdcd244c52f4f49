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
	"fmt"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
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
// newest; a model not registered (yet) is left out, and the loop records
// the error at the edge as it would here.
func (h *Hub) edgeModels(ctx context.Context, edge, tenant string) (*api.EdgeModels, error) {
	b, err := h.loops.Store().EdgeBundle(ctx, edge, tenant)
	if err != nil {
		return nil, err
	}
	all, err := h.mlModels.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	newest := map[string]*mlreg.Record{}
	byVersion := map[string]*mlreg.Record{}
	for _, rec := range all { // by id and version: the last of an id is its newest
		newest[rec.ID] = rec
		byVersion[rec.ID+"@"+rec.Version] = rec
	}
	picked := map[string]*mlreg.Record{}
	for _, info := range b.Loops {
		if info.Def == nil || info.Def.Decide.Model == nil {
			continue
		}
		ref := info.Def.Decide.Model
		rec := newest[ref.ID]
		if ref.Version > 0 {
			rec = byVersion[ref.ID+"@"+strconv.Itoa(ref.Version)]
		}
		if rec != nil {
			picked[rec.ID+"@"+rec.Version] = rec
		}
	}
	l := &api.EdgeModels{Models: []*mlreg.Record{}}
	for _, rec := range all { // in the registry's order
		if p := picked[rec.ID+"@"+rec.Version]; p != nil {
			l.Models = append(l.Models, p)
		}
	}
	content, err := json.Marshal(l.Models)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(content)
	l.Digest = hex.EncodeToString(d[:])
	return l, nil
}
