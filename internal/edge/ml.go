package edge

// Models at the edge: the model versions the hub's loops for this edge
// use (decide.model), taken from the hub with a long poll, each checked
// against the hub's signature before it is stored in the edge's own
// registry (its database, so the models are there through outages and
// restarts); the loop engine scores with them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/wanwu-iot/wanwu/internal/api"
	"github.com/wanwu-iot/wanwu/internal/capture"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/forward"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// maxModelList bounds the hub's answer listing the models (records
// without their bytes).
const maxModelList = 16 << 20

// openML opens the edge's model registry (no signing key: it only
// imports what the hub signed) and the loops' scorer.
func (e *Edge) openML(ctx context.Context) error {
	var err error
	if e.mlModels, err = mlreg.Open(ctx, mlreg.Options{DB: e.db, Audit: e.audit, Now: e.opts.Now}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.mlScorer = mlreg.NewScorer(e.mlModels, ml.NewGonnx())
	if err := e.mlScorer.Register(e.metrics); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	// The hub's rollouts of those models: this edge moves its own stage in
	// each by the gates, offline too, and sends every change up.
	if e.rollouts, err = rollout.Open(ctx, rollout.Options{DB: e.db, Audit: e.audit, Now: e.opts.Now}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if e.rolloutCtl, err = rollout.NewController(rollout.ControllerOptions{
		Store: e.rollouts, Node: e.id.Code, Meter: e.mlScorer, OnRecord: e.rolloutRecorded,
		Every: time.Duration(e.opts.Config.ML.RolloutEvery), Now: e.opts.Now, Logger: e.log.With("component", "rollout"),
	}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.mlScorer.SetStages(e.rolloutCtl.Lookup)
	e.mlScorer.SetFlagged(func(tenant, object, plan, version string, at time.Time, features map[string]float64) {
		e.capturer.Load().Candidate(tenant, object, plan, version, at, features)
	})
	if e.datasets, err = dataset.Open(ctx, dataset.Options{DB: e.db, Audit: e.audit, Now: e.opts.Now}); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return e.rolloutCtl.Start(ctx)
}

// startCapture starts taking windows around the edge's alarms and loop
// decisions once the time-series store is open: kept whole here, sent up
// without the series of what is classified important or core (unless
// edge.share grants it).
func (e *Edge) startCapture(ctx context.Context) error {
	shared := map[string]bool{}
	for _, s := range e.opts.Config.Edge.Share {
		shared[s] = true
	}
	c, err := capture.New(capture.Options{
		TSDB: e.tel.TSDB, Object: capture.Objects(e.reg), Store: e.datasets, Edge: e.id.Code,
		Shared: func(model, prop string) bool { return shared[model+"/"+prop] },
		Up: func(w *dataset.Window) {
			data, err := json.Marshal(w)
			if err != nil {
				return
			}
			e.sendUp(w.Object, forward.DatasetWindowEvent, data)
		},
		Before: time.Duration(e.opts.Config.ML.CaptureBefore), After: time.Duration(e.opts.Config.ML.CaptureAfter),
		Registerer: e.metrics, Now: e.opts.Now, Logger: e.log.With("component", "capture"),
	})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	c.Start(ctx)
	e.capturer.Store(c)
	return nil
}

// Datasets is the edge's store of the windows captured here.
func (e *Edge) Datasets() *dataset.Store { return e.datasets }

// Rollouts is the edge's copy of the hub's rollouts, with its own stages
// and records.
func (e *Edge) Rollouts() *rollout.Store { return e.rollouts }

// reportML sends the figures of the model versions that scored here up
// the link every six rollout evaluations (30 s by default), so the hub
// shows them per edge.
func (e *Edge) reportML(ctx context.Context) {
	t := time.NewTicker(6 * time.Duration(e.opts.Config.ML.RolloutEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var report []mlreg.VersionFigures
		for _, v := range e.mlScorer.Scored() {
			if st := e.mlScorer.Stats(v.Tenant, v.ID, v.Version); st != nil {
				report = append(report, mlreg.VersionFigures{VersionRef: v, Figures: st})
			}
		}
		if len(report) == 0 {
			continue
		}
		data, err := json.Marshal(report)
		if err != nil {
			continue
		}
		e.sendUp(e.id.Code, forward.MLFiguresEvent, data)
	}
}

// rolloutRecorded sends a stage change made here up the link.
func (e *Edge) rolloutRecorded(_ context.Context, rec *rollout.Record) {
	data, err := json.Marshal(rec)
	if err != nil {
		return
	}
	e.sendUp(e.id.Code, forward.RolloutEvent, data)
}

// MLModels is the edge's model registry: the versions taken from the hub.
func (e *Edge) MLModels() *mlreg.Registry { return e.mlModels }

// syncML keeps the models the loops use in step with the hub.
func (e *Edge) syncML(ctx context.Context) {
	e.keepPolling(ctx, "the hub's models could not be taken; will retry", e.fetchML)
}

// fetchML asks for a list other than the one taken, downloads the
// versions the edge lacks and imports each once it verifies. A refused
// version is counted, logged and skipped; the list is then not taken, so
// it is asked for again (after a backoff).
func (e *Edge) fetchML(ctx context.Context) error {
	key := e.hubKeyNow()
	if key == nil {
		return errors.New("the hub's signing key is not known yet")
	}
	resp, body, err := e.poll(ctx, "/api/v1/edge/ml?after="+url.QueryEscape(e.mlDigest), maxModelList)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil
	case http.StatusOK:
	default:
		return fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
	}
	var l api.EdgeModels
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("the hub's model list: %w", err)
	}
	tenant := tenantOf(e.id.Code)
	// The plans first, evaluated at once: a version a plan stages is
	// never in effect before its plan is.
	changed := false
	for _, p := range l.Rollouts {
		if p == nil || p.Tenant != tenant {
			continue
		}
		stored, err := e.rollouts.Put(ctx, p)
		if err != nil {
			return fmt.Errorf("rollout %s: %w", p.ID, err)
		}
		changed = changed || stored
	}
	if changed {
		if err := e.rolloutCtl.Evaluate(ctx); err != nil {
			e.log.Warn("rollouts could not be evaluated after the hub's change; the next tick will", "err", err)
		}
	}
	var refused []error
	refuse := func(rec *mlreg.Record, err error) {
		e.syncM.refused.WithLabelValues("ml_model").Inc()
		e.log.Warn("a model version from the hub was refused", "model", rec.ID, "version", rec.Version, "err", err)
		refused = append(refused, err)
	}
	for _, rec := range l.Models {
		if rec == nil {
			continue
		}
		if rec.Tenant != tenant {
			refuse(rec, fmt.Errorf("model %s@%s is of tenant %q, not this edge's", rec.ID, rec.Version, rec.Tenant))
			continue
		}
		has, err := e.mlModels.Has(ctx, rec.Tenant, rec.ID, rec.Version, rec.MetaSHA256, rec.ONNXSHA256)
		if err != nil {
			return err
		}
		if has {
			continue
		}
		onnx, err := e.downloadModel(ctx, rec)
		if err != nil {
			return fmt.Errorf("model %s@%s: %w", rec.ID, rec.Version, err)
		}
		if err := e.mlModels.Import(ctx, rec, onnx, key); err != nil {
			if errors.Is(err, mlreg.ErrBadSignature) || errors.Is(err, mlreg.ErrInvalid) || errors.Is(err, mlreg.ErrConflict) {
				refuse(rec, err)
				continue
			}
			return err
		}
		e.log.Info("a model version from the hub taken", "model", rec.ID, "version", rec.Version, "bytes", len(onnx))
	}
	if len(refused) > 0 {
		return errors.Join(refused...)
	}
	e.mlDigest = l.Digest
	return nil
}

// downloadModel reads a version's bytes from the hub, at most the size
// the record says (Import checks them against its digest).
func (e *Edge) downloadModel(ctx context.Context, rec *mlreg.Record) ([]byte, error) {
	if rec.Size <= 0 || rec.Size > ml.MaxModelBytesLimit {
		return nil, fmt.Errorf("the record says %d bytes (at most %d)", rec.Size, ml.MaxModelBytesLimit)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u := e.hubURL + "/api/v1/edge/ml/" + url.PathEscape(rec.ID) + "/versions/" + url.PathEscape(rec.Version) + "/onnx"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(rec.Size)+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
	}
	return body, nil
}
