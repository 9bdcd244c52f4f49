package hub

// The model registry at the hub: model versions (package ml's Meta and
// ONNX bytes) stored, signed with the hub's key and served by the API.

import (
	"context"
	"fmt"

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
	return nil
}

// MLModels exposes the model registry (nil before Start).
func (h *Hub) MLModels() *mlreg.Registry { return h.mlModels }
