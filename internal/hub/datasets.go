package hub

// Datasets at the hub: windows of raw data captured around the hub's
// alarms and loop decisions and on operators' requests (package capture),
// windows the edges captured and sent up (redacted by classification),
// operators' labels, and dataset versions built from them (package
// dataset), which models are trained on.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/capture"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/rollout"
)

// openDatasets opens the dataset store in the hub's database.
func (h *Hub) openDatasets(ctx context.Context) error {
	var err error
	if h.datasets, err = dataset.Open(ctx, dataset.Options{DB: h.db, Audit: h.audit, OnAudit: h.wakeAuditForwarder, Now: h.opts.Now}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// startCapture starts taking windows once the time-series store is open.
func (h *Hub) startCapture(ctx context.Context) error {
	c, err := capture.New(capture.Options{
		TSDB: h.tel.TSDB, Object: capture.Objects(h.reg), Store: h.datasets,
		Before: time.Duration(h.opts.Config.ML.CaptureBefore), After: time.Duration(h.opts.Config.ML.CaptureAfter),
		Registerer: h.metrics, Now: h.opts.Now, Logger: h.log.With("component", "capture"),
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	c.Start(ctx)
	h.capturer.Store(c)
	return nil
}

// Datasets exposes the dataset store (nil before Start).
func (h *Hub) Datasets() *dataset.Store { return h.datasets }

// evidenceWritten is the hub's loop engine's OnEvidence.
func (h *Hub) evidenceWritten(ev *loop.Evidence) { h.capturer.Load().Decision(ev) }

// edgeWindow keeps a window an edge captured and sent up (of a device
// behind it: the receiver checked).
func (h *Hub) edgeWindow(ctx context.Context, edge, device string, data []byte) error {
	w, err := dataset.ParseWindow(data)
	if err == nil && (w.Object != device || w.Edge != edge) {
		err = fmt.Errorf("the window is of %s, captured at %q", w.Object, w.Edge)
	}
	if err == nil {
		_, err = h.datasets.AddWindow(ctx, w)
		if err != nil && !errors.Is(err, dataset.ErrInvalid) && !errors.Is(err, dataset.ErrConflict) {
			return err
		}
	}
	if err != nil {
		h.log.Warn("an edge's data window was refused; passed over", "edge", edge, "device", device, "err", err)
	}
	return nil
}

// captureNow takes a window of an object's data at the hub now (an
// operator's request): for an object behind an edge, what the edge
// forwarded (its important and core values as the rollups the hub got).
func (h *Hub) captureNow(ctx context.Context, object, ref string, from, to time.Time) (*dataset.Window, error) {
	c := h.capturer.Load()
	if c == nil {
		return nil, errors.New("hub: not started")
	}
	o, err := h.reg.Object(ctx, object)
	if err != nil {
		return nil, err
	}
	return c.Capture(ctx, capture.Trigger{Tenant: o.Tenant, Object: o.Code, Reason: dataset.ReasonRequest, Ref: ref, At: to}, from, to)
}

// minFalseAlarmLabels is how many labelled decisions of a candidate the
// false-alarm rate needs before it is judged.
const minFalseAlarmLabels = 5

// falseAlarms counts, among the decisions of the plan's tenant since the
// plan began whose windows operators labelled true_positive or
// false_positive, those the candidate flagged (it decided, or was scored
// beside and flagged, or flagged alone in shadow), and the false ones.
func (h *Hub) falseAlarms(ctx context.Context, p *rollout.Plan) (flagged, falsePos int, err error) {
	rec, err := h.mlModels.Get(ctx, p.Tenant, p.Artifact, p.Version)
	if err != nil {
		return 0, 0, err
	}
	meta, err := ml.ParseMeta(rec.Meta)
	if err != nil {
		return 0, 0, err
	}
	on := func(scores map[string]float64) bool {
		for name := range meta.Thresholds {
			if scores[name] == 1 {
				return true
			}
		}
		return false
	}
	ws, err := h.datasets.Windows(ctx, dataset.Query{Tenant: p.Tenant, Reason: dataset.ReasonDecision, Since: p.CreatedAt, Limit: dataset.MaxLimit})
	if err != nil {
		return 0, 0, err
	}
	alone := capture.CandidateRef(p.ID, p.Version)
	for _, w := range ws {
		labels, err := h.datasets.Labels(ctx, p.Tenant, w.ID)
		if err != nil {
			return 0, 0, err
		}
		verdict := labelVerdict(labels)
		if verdict == "" {
			continue
		}
		candidate := w.Ref == alone
		if !candidate {
			id, err := strconv.ParseInt(w.Ref, 10, 64)
			if err != nil {
				continue
			}
			ev, err := h.loops.Store().EvidenceOf(ctx, w.Edge, id)
			if err != nil || ev.Model == nil || ev.Model.ID != p.Artifact {
				continue
			}
			m := ev.Model
			candidate = m.Version == p.Version && on(m.Scores) || m.Beside != nil && m.Beside.Version == p.Version && on(m.Beside.Scores)
		}
		if candidate {
			flagged++
			if verdict == dataset.KindFalsePositive {
				falsePos++
			}
		}
	}
	return flagged, falsePos, nil
}

// labelVerdict is the labels' majority between true and false positive
// ("" for a tie, or neither).
func labelVerdict(labels []*dataset.Label) string {
	tp, fp := 0, 0
	for _, l := range labels {
		switch l.Kind {
		case dataset.KindTruePositive:
			tp++
		case dataset.KindFalsePositive:
			fp++
		}
	}
	switch {
	case tp > fp:
		return dataset.KindTruePositive
	case fp > tp:
		return dataset.KindFalsePositive
	}
	return ""
}

// judgeLabels rolls a running plan back everywhere when its candidate's
// false-alarm rate against operators' labels is over its gate (once
// minFalseAlarmLabels of its flagged decisions are labelled).
func (h *Hub) judgeLabels(ctx context.Context, p *rollout.Plan) {
	g, ok := p.Gates[rollout.FigureFalseAlarmRate]
	if !ok || p.Kind != rollout.KindModel {
		return
	}
	flagged, fp, err := h.falseAlarms(ctx, p)
	if err != nil {
		h.log.Warn("a rollout's false alarms could not be counted; will retry", "rollout", p.ID, "err", err)
		return
	}
	if flagged < minFalseAlarmLabels {
		return
	}
	rate := float64(fp) / float64(flagged)
	if rate <= g.Max {
		return
	}
	reason := fmt.Sprintf("gate failed: %s %.3g above %.3g (%d of %d labelled decisions the candidate flagged were false positives)",
		rollout.FigureFalseAlarmRate, rate, g.Max, fp, flagged)
	if _, err := h.rollouts.SetState(ctx, "rollout", p.Tenant, p.ID, rollout.Aborted, reason); err != nil {
		h.log.Warn("a rollout could not be rolled back; will retry", "rollout", p.ID, "err", err)
		return
	}
	h.log.Info("rollout rolled back by the operators' labels", "rollout", p.ID, "false_alarm_rate", rate)
	h.rolloutCtl.Wake()
}
