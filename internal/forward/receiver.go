package forward

import (
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/audit"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/store"
)

// migrations are the receiver's tables in the hub's metadata database:
// the high-water mark of each edge's epoch and class, and what each edge
// last said of itself.
var migrations = []store.Migration{{
	Name: "edge forwarding marks and status",
	Statements: []string{
		`CREATE TABLE IF NOT EXISTS edge_forward (
			edge       TEXT NOT NULL,
			epoch      TEXT NOT NULL,
			class      INTEGER NOT NULL,
			hwm        BIGINT NOT NULL,
			messages   BIGINT NOT NULL DEFAULT 0,
			updated_at BIGINT NOT NULL,
			PRIMARY KEY (edge, epoch, class))`,
		`CREATE TABLE IF NOT EXISTS edge_status (
			edge       TEXT PRIMARY KEY,
			tenant     TEXT NOT NULL,
			epoch      TEXT NOT NULL,
			seen_at    BIGINT NOT NULL,
			status     TEXT NOT NULL DEFAULT '{}',
			gaps       BIGINT NOT NULL DEFAULT 0,
			messages   BIGINT NOT NULL DEFAULT 0,
			bytes_up   BIGINT NOT NULL DEFAULT 0)`,
	},
}}

// Edge is the authenticated sender of an uplink.
type Edge struct {
	Code, Tenant string
	// Key is the public key of its client certificate: gap records are
	// verified with it.
	Key crypto.PublicKey
}

// ReceiverOptions configure the hub's side of edge links.
type ReceiverOptions struct {
	DB *store.DB
	// Submit makes the messages durable in the hub's ingest log, in order
	// (pipeline), and returns once all are or one failed.
	Submit func(ctx context.Context, msgs []ingest.Message) error
	// Member reports whether a device (of a tenant) is the edge or placed
	// behind it.
	Member func(ctx context.Context, edge, tenant, device string) (bool, error)
	// CommandResult applies a device's result for a command the hub issued
	// (the data of a CommandResultEvent), after the message is durable;
	// nil: results are only stored as events.
	CommandResult func(ctx context.Context, device string, data []byte) error
	// TwinReported applies a device's reported state (the data of a
	// TwinReportedEvent, a merge patch), likewise.
	TwinReported func(ctx context.Context, device string, data []byte) error
	// LoopEvidence takes an evidence record of a loop that ran at the edge
	// (the data of a LoopEvidenceEvent), Alarm an alarm of the edge (of an
	// AlarmEvent), likewise; both are told the edge.
	LoopEvidence func(ctx context.Context, edge, device string, data []byte) error
	Alarm        func(ctx context.Context, edge, device string, data []byte) error
	// Rollout takes a rollout's stage change at the edge (the data of a
	// RolloutEvent of the edge object), likewise.
	Rollout func(ctx context.Context, edge string, data []byte) error
	// DatasetWindow takes a window the edge captured (the data of a
	// DatasetWindowEvent of the window's object), likewise.
	DatasetWindow func(ctx context.Context, edge, device string, data []byte) error
	// MLFigures takes the edge's report of its models' figures (the data
	// of an MLFiguresEvent), likewise.
	MLFigures func(ctx context.Context, edge string, data []byte) error
	// Audit records every gap record an edge sends; OnAudit is told after
	// such entries were committed (the hub's audit forwarder).
	Audit   *audit.Log
	OnAudit func()
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Receiver takes edges' uplinks into the hub's ingest log exactly once:
// it stores what is above the (edge, epoch, class) high-water mark, then
// moves the mark; a message sent again after a lost answer is answered
// from the mark. A crash between the two stores a batch twice in the
// ingest log, which the stores take idempotently.
type Receiver struct {
	o   ReceiverOptions
	log *slog.Logger

	locks sync.Map // edge code → *sync.Mutex: one uplink of an edge at a time

	records  *prometheus.CounterVec
	dups     *prometheus.CounterVec
	refused  *prometheus.CounterVec
	gapsRecv *prometheus.CounterVec
}

// OpenReceiver migrates the receiver's tables.
func OpenReceiver(ctx context.Context, o ReceiverOptions) (*Receiver, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := o.DB.Migrate(ctx, "forward", migrations); err != nil {
		return nil, err
	}
	r := &Receiver{o: o, log: o.Logger.With("component", "edge-receiver"),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_received_messages_total", Help: "Device messages edges forwarded into the hub's ingest log, by edge and class.",
		}, []string{"edge", "class"}),
		dups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_duplicate_messages_total", Help: "Outbox messages an edge sent again that the hub already held (answered from the mark), by edge.",
		}, []string{"edge"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_refused_messages_total", Help: "Device messages in edges' uplinks refused, by reason.",
		}, []string{"reason"}),
		gapsRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_gap_records_received_total", Help: "Gap records edges sent (each audited), by edge and whether the signature verified.",
		}, []string{"edge", "verified"}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{r.records, r.dups, r.refused, r.gapsRecv, &edgesCollector{r}} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("forward: metrics: %w", err)
			}
		}
	}
	return r, nil
}

func (r *Receiver) lock(edge string) func() {
	m, _ := r.locks.LoadOrStore(edge, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// State reports what the hub holds of an edge's epoch.
func (r *Receiver) State(ctx context.Context, e Edge, epoch string) (*State, error) {
	if epoch == "" || len(epoch) > maxEpochLen {
		return nil, fmt.Errorf("%w: epoch must be 1 to %d bytes", ErrUplink, maxEpochLen)
	}
	st := &State{Epoch: epoch}
	rows, err := r.o.DB.R.QueryContext(ctx, `SELECT class, hwm FROM edge_forward WHERE edge = ? AND epoch = ?`, e.Code, epoch)
	if err != nil {
		return nil, fmt.Errorf("forward: marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c int
		var hwm uint64
		if err := rows.Scan(&c, &hwm); err != nil {
			return nil, fmt.Errorf("forward: marks: %w", err)
		}
		if c >= 0 && c < NumClasses {
			st.HWM[c] = hwm
		}
	}
	return st, rows.Err()
}

func (r *Receiver) mark(ctx context.Context, edge, epoch string, c Class) (uint64, error) {
	var hwm uint64
	err := r.o.DB.W.QueryRowContext(ctx, `SELECT hwm FROM edge_forward WHERE edge = ? AND epoch = ? AND class = ?`, edge, epoch, int(c)).Scan(&hwm)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("forward: mark: %w", err)
	}
	return hwm, nil
}

// Forward takes one uplink and answers with the class's mark.
func (r *Receiver) Forward(ctx context.Context, e Edge, u *Uplink) (*Ack, error) {
	unlock := r.lock(e.Code)
	defer unlock()
	c := Class(u.Class)
	hwm, err := r.mark(ctx, e.Code, u.Epoch, c)
	if err != nil {
		return nil, err
	}
	var msgs []ingest.Message
	var gaps []audit.Entry
	var results []controlRecord
	top := hwm
	dups := 0
	for i, seq := range u.Seqs {
		if seq <= hwm {
			dups++
			continue
		}
		batch, err := Decode(u.Data[i])
		if err != nil {
			// An edge that cannot encode is a bug there: refusing the
			// uplink would stall its link for good, so the message is
			// counted, logged and passed over.
			r.refused.WithLabelValues("malformed").Inc()
			r.log.Error("an edge sent an outbox message the hub cannot decode; passed over", "edge", e.Code, "class", c, "seq", seq, "err", err)
			top = seq
			continue
		}
		for _, m := range batch {
			ok, err := r.o.Member(ctx, e.Code, m.Tenant, m.Device)
			if err != nil {
				return nil, err
			}
			if !ok {
				r.refused.WithLabelValues("not_behind_edge").Inc()
				r.log.Warn("an edge forwarded data of a device not placed behind it; refused", "edge", e.Code, "device", m.Device)
				continue
			}
			if m.Kind == ingest.Event && m.Event == GapEvent && m.Device == e.Code {
				gaps = append(gaps, r.gapEntry(e, m.EventData))
			}
			if m.Kind == ingest.Event && m.Device == e.Code {
				switch {
				case m.Event == RolloutEvent && r.o.Rollout != nil:
					results = append(results, controlRecord{r.o.Rollout, m.Device, m.EventData})
				case m.Event == MLFiguresEvent && r.o.MLFigures != nil:
					results = append(results, controlRecord{r.o.MLFigures, m.Device, m.EventData})
				}
			}
			if m.Kind == ingest.Event && m.Device != e.Code {
				switch {
				case m.Event == CommandResultEvent && r.o.CommandResult != nil:
					results = append(results, controlRecord{r.o.CommandResult, m.Device, m.EventData})
				case m.Event == TwinReportedEvent && r.o.TwinReported != nil:
					results = append(results, controlRecord{r.o.TwinReported, m.Device, m.EventData})
				case m.Event == LoopEvidenceEvent && r.o.LoopEvidence != nil:
					results = append(results, controlRecord{edgeHook(r.o.LoopEvidence, e.Code), m.Device, m.EventData})
				case m.Event == AlarmEvent && r.o.Alarm != nil:
					results = append(results, controlRecord{edgeHook(r.o.Alarm, e.Code), m.Device, m.EventData})
				case m.Event == DatasetWindowEvent && r.o.DatasetWindow != nil:
					results = append(results, controlRecord{edgeHook(r.o.DatasetWindow, e.Code), m.Device, m.EventData})
				}
			}
			m.Source = "edge"
			msgs = append(msgs, m)
		}
		top = seq
	}
	if dups > 0 {
		r.dups.WithLabelValues(e.Code).Add(float64(dups))
	}
	if len(msgs) > 0 {
		if err := r.o.Submit(ctx, msgs); err != nil {
			return nil, err
		}
	}
	// Applied once the messages are durable (the pipeline owns them now:
	// results were set aside before).
	for _, res := range results {
		if err := res.apply(ctx, res.device, res.data); err != nil {
			return nil, err
		}
	}
	now := r.o.Now().UnixMilli()
	// What is durable is marked even when the edge has gone meanwhile (a
	// cut link): it is not sent again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = r.o.DB.Tx(ctx, func(tx *sql.Tx) error {
		if top > hwm {
			if _, err := tx.ExecContext(ctx, `INSERT INTO edge_forward(edge, epoch, class, hwm, messages, updated_at) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT(edge, epoch, class) DO UPDATE SET hwm = excluded.hwm, messages = edge_forward.messages + excluded.messages, updated_at = excluded.updated_at`,
				e.Code, u.Epoch, int(c), top, len(msgs), now); err != nil {
				return err
			}
		}
		status := "{}"
		if len(u.Status) > 0 && json.Valid(u.Status) && len(u.Status) <= 64<<10 {
			status = string(u.Status)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO edge_status(edge, tenant, epoch, seen_at, status, gaps, messages, bytes_up) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(edge) DO UPDATE SET tenant = excluded.tenant, epoch = excluded.epoch, seen_at = excluded.seen_at,
				status = CASE WHEN ? THEN excluded.status ELSE edge_status.status END,
				gaps = edge_status.gaps + excluded.gaps, messages = edge_status.messages + excluded.messages, bytes_up = edge_status.bytes_up + excluded.bytes_up`,
			e.Code, e.Tenant, u.Epoch, now, status, len(gaps), len(msgs), uplinkBytes(u), len(u.Status) > 0)
		if err != nil {
			return err
		}
		for _, g := range gaps {
			if _, err := r.o.Audit.AppendTx(ctx, tx, g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("forward: mark: %w", err)
	}
	if len(gaps) > 0 && r.o.OnAudit != nil {
		r.o.OnAudit()
	}
	if len(msgs) > 0 {
		r.records.WithLabelValues(e.Code, c.String()).Add(float64(len(msgs)))
	}
	return &Ack{HWM: max(top, hwm)}, nil
}

// controlRecord is a command result or reported state to apply.
type controlRecord struct {
	apply  func(ctx context.Context, device string, data []byte) error
	device string
	data   []byte
}

func uplinkBytes(u *Uplink) int {
	n := 0
	for _, d := range u.Data {
		n += len(d)
	}
	return n
}

// gapEntry is the audit entry of a gap record: the record as the edge
// signed it, and whether its signature verified with the edge's key.
func (r *Receiver) gapEntry(e Edge, data []byte) audit.Entry {
	body, err := VerifyRecord(data, e.Key)
	verified := err == nil
	r.gapsRecv.WithLabelValues(e.Code, fmt.Sprint(verified)).Inc()
	if !verified {
		r.log.Warn("an edge's gap record did not verify with its key; audited as unverified", "edge", e.Code, "err", err)
	}
	detail := map[string]any{"verified": verified, "signed": json.RawMessage(data)}
	if len(body) > 0 && json.Valid(body) {
		detail["gap"] = json.RawMessage(body)
	}
	raw, _ := json.Marshal(detail)
	return audit.Entry{Actor: "edge:" + e.Code, Tenant: e.Tenant, Kind: "edge.gap", Subject: e.Code, Data: raw}
}

// EdgeInfo is what the hub knows of one edge's link.
type EdgeInfo struct {
	Code     string            `json:"code"`
	Tenant   string            `json:"tenant"`
	Epoch    string            `json:"epoch"`
	SeenAt   time.Time         `json:"seen_at"`
	Messages int64             `json:"messages"`
	BytesUp  int64             `json:"bytes_up"`
	Gaps     int64             `json:"gap_records"`
	Marks    map[string]uint64 `json:"marks"`
	// Status is what the edge last said of itself (backlog by class,
	// devices online, link).
	Status json.RawMessage `json:"status"`
}

// Edges lists what the hub knows of every edge that ever forwarded, of one
// tenant or ("") all.
func (r *Receiver) Edges(ctx context.Context, tenant string) ([]EdgeInfo, error) {
	rows, err := r.o.DB.R.QueryContext(ctx, `SELECT edge, tenant, epoch, seen_at, status, gaps, messages, bytes_up FROM edge_status
		WHERE ? = '' OR tenant = ? ORDER BY edge`, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("forward: edges: %w", err)
	}
	defer rows.Close()
	var out []EdgeInfo
	for rows.Next() {
		var e EdgeInfo
		var seen int64
		var status string
		if err := rows.Scan(&e.Code, &e.Tenant, &e.Epoch, &seen, &status, &e.Gaps, &e.Messages, &e.BytesUp); err != nil {
			return nil, fmt.Errorf("forward: edges: %w", err)
		}
		e.SeenAt = time.UnixMilli(seen).UTC()
		e.Status = json.RawMessage(status)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		st, err := r.State(ctx, Edge{Code: out[i].Code}, out[i].Epoch)
		if err != nil {
			return nil, err
		}
		out[i].Marks = map[string]uint64{}
		for _, c := range Classes() {
			out[i].Marks[c.String()] = st.HWM[c]
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out, nil
}

// edgesCollector exports, per edge, what it last said of itself: the
// same backlog gauges the edge exports, with its code, and when it was
// last heard of.
type edgesCollector struct{ r *Receiver }

var (
	hubBacklogRecordsDesc = prometheus.NewDesc("wanwu_edge_backlog_records", "Values and events waiting at the edge for the hub, by class, as the edge last said.", []string{"edge", "class"}, nil)
	hubBacklogBytesDesc   = prometheus.NewDesc("wanwu_edge_backlog_bytes", "Bytes of outbox waiting at the edge for the hub, by class, as the edge last said.", []string{"edge", "class"}, nil)
	hubBacklogAgeDesc     = prometheus.NewDesc("wanwu_edge_backlog_oldest_seconds", "Age of the oldest message waiting at the edge, by class, as the edge last said.", []string{"edge", "class"}, nil)
	lastSeenDesc          = prometheus.NewDesc("wanwu_edge_last_seen_timestamp_seconds", "When the hub last heard from the edge (an uplink or a heartbeat).", []string{"edge"}, nil)
	devicesOnlineDesc     = prometheus.NewDesc("wanwu_edge_devices_online", "Devices online at the edge, as it last said.", []string{"edge"}, nil)
)

func (c *edgesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hubBacklogRecordsDesc, hubBacklogBytesDesc, hubBacklogAgeDesc, lastSeenDesc, devicesOnlineDesc} {
		ch <- d
	}
}

func (c *edgesCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	edges, err := c.r.Edges(ctx, "")
	if err != nil {
		return
	}
	for _, e := range edges {
		ch <- prometheus.MustNewConstMetric(lastSeenDesc, prometheus.GaugeValue, float64(e.SeenAt.UnixMilli())/1000, e.Code)
		var st struct {
			Backlog       []Backlog `json:"backlog"`
			DevicesOnline int       `json:"devices_online"`
		}
		if json.Unmarshal(e.Status, &st) != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(devicesOnlineDesc, prometheus.GaugeValue, float64(st.DevicesOnline), e.Code)
		for _, b := range st.Backlog {
			ch <- prometheus.MustNewConstMetric(hubBacklogRecordsDesc, prometheus.GaugeValue, float64(b.Records), e.Code, b.Class)
			ch <- prometheus.MustNewConstMetric(hubBacklogBytesDesc, prometheus.GaugeValue, float64(b.Bytes), e.Code, b.Class)
			ch <- prometheus.MustNewConstMetric(hubBacklogAgeDesc, prometheus.GaugeValue, b.OldestS, e.Code, b.Class)
		}
	}
}

// edgeHook binds a hook that is told the edge.
func edgeHook(fn func(ctx context.Context, edge, device string, data []byte) error, edge string) func(ctx context.Context, device string, data []byte) error {
	return func(ctx context.Context, device string, data []byte) error { return fn(ctx, edge, device, data) }
}
