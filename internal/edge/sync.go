package edge

// The identity snapshot: the hub's signed copy of the identities of the
// devices behind this edge, asked for over the link (a long poll that the
// hub answers when its identities change) and applied to the edge's
// replica registry, so that devices authenticate here with the hub away.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/snapshot"
)

// snapshotPoll is how long the hub may hold a request for a newer snapshot.
const snapshotPoll = 25 * time.Second

type syncMetrics struct {
	applied prometheus.Counter
	refused *prometheus.CounterVec
	version prometheus.Gauge
}

func newSyncMetrics(reg prometheus.Registerer) (*syncMetrics, error) {
	m := &syncMetrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_edge_snapshots_applied_total", Help: "Identity snapshots from the hub the edge verified and applied.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_snapshots_refused_total", Help: "What the edge refused from the hub, by reason: identity snapshots (forged, stale, wrong_edge, malformed, apply), loop bundles (loop_bundle), downlinks (downlink_signature), model versions (ml_model).",
		}, []string{"reason"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_edge_snapshot_version", Help: "Version of the identity snapshot the edge holds.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applied, m.refused, m.version} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("edge: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// refusalReason names a snapshot refusal for the metric.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, snapshot.ErrForged):
		return "forged"
	case errors.Is(err, snapshot.ErrStale):
		return "stale"
	case errors.Is(err, snapshot.ErrWrongEdge):
		return "wrong_edge"
	}
	return "malformed"
}

// syncIdentities keeps the replica registry at the hub's newest snapshot
// until ctx ends.
func (e *Edge) syncIdentities(ctx context.Context) {
	wait := 100 * time.Millisecond
	retryMax := time.Duration(e.opts.Config.Edge.RetryMax)
	if retryMax <= 0 {
		retryMax = time.Second
	}
	backoff := func() {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, max(retryMax, 5*time.Second))
	}
	for ctx.Err() == nil {
		applied, err := e.reg.AppliedSnapshotVersion(ctx)
		if err != nil {
			e.log.Warn("reading the applied snapshot's version failed; will retry", "err", err)
			backoff()
			continue
		}
		e.syncM.version.Set(float64(applied))
		data, err := e.fetchSnapshot(ctx, applied)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Debug("asking the hub for a newer identity snapshot failed; will retry", "err", err)
			}
			backoff()
			continue
		}
		if data == nil {
			wait = 100 * time.Millisecond
			continue
		}
		s, err := snapshot.Verify(data, e.hubKeyNow(), e.id.Code, applied)
		if err != nil {
			reason := refusalReason(err)
			e.syncM.refused.WithLabelValues(reason).Inc()
			e.log.Warn("an identity snapshot from the hub was refused", "reason", reason, "err", err)
			backoff()
			continue
		}
		if s.Version <= applied {
			continue
		}
		if err := e.reg.ApplySnapshot(ctx, s); err != nil {
			e.syncM.refused.WithLabelValues("apply").Inc()
			e.log.Warn("applying an identity snapshot failed; will retry", "version", s.Version, "err", err)
			backoff()
			continue
		}
		e.syncM.applied.Inc()
		e.syncM.version.Set(float64(s.Version))
		wait = 100 * time.Millisecond
	}
}

// fetchSnapshot asks the hub for a snapshot newer than after; nil when
// none came within the poll.
func (e *Edge) fetchSnapshot(ctx context.Context, after uint64) ([]byte, error) {
	resp, body, err := e.poll(ctx, "/api/v1/edge/snapshot?after="+strconv.FormatUint(after, 10), snapshot.MaxSize)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusNoContent:
		return nil, nil
	}
	return nil, fmt.Errorf("hub answered %s: %.200s", resp.Status, body)
}

// poll is one long poll of the hub (path, with its query), its answer read
// up to limit bytes.
func (e *Edge) poll(ctx context.Context, path string, limit int64) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotPoll+15*time.Second)
	defer cancel()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	url := e.hubURL + path + sep + "wait=" + strconv.Itoa(int(snapshotPoll/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}
