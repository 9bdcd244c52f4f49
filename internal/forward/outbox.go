package forward

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Default quotas per class, in bytes of outbox.
var DefaultQuota = [NumClasses]int64{Alarm: 64 << 20, Control: 256 << 20, Telemetry: 4 << 30, Bulk: 1 << 30}

// OutboxOptions configure an edge's outboxes.
type OutboxOptions struct {
	Bus *bus.Bus
	// Edge and Tenant name the edge: gap records and rollups are its
	// events.
	Edge, Tenant string
	// Models returns the model "id@version" names, nil if unknown.
	Models func(key string) *thingmodel.Model
	// Quota bounds each class's outbox, in bytes; 0 takes DefaultQuota.
	Quota [NumClasses]int64
	// Key signs gap records (the edge's private key); nil leaves them
	// unsigned.
	Key    crypto.Signer
	Logger *slog.Logger
	// Metrics registers the backlog gauges and reduction counters.
	Metrics prometheus.Registerer
	Now     func() time.Time
	// RollupGrace is how long, after its minute ended and its last value
	// came, a rollup waits for late values (default 10 s); it goes up with
	// the next batch the edge takes after that.
	RollupGrace time.Duration
	// Shared are sharing grants: "<model id>/<property>" names a property
	// classified important or core whose raw values may still go to the
	// hub. Without one, such values stay at the edge and the hub gets
	// their per-minute rollups.
	Shared []string
}

// Outboxes is the edge's store-and-forward side of the ingest log: a
// pipeline consumer that appends every durable batch, split by class, to
// the class's outbox, applies each class's quota policy, and refuses
// devices' messages of a class whose quota is full when its policy is
// back-pressure (Admit). The link (Link) sends what the outboxes hold.
type Outboxes struct {
	o     OutboxOptions
	log   *slog.Logger
	boxes [NumClasses]*bus.Outbox

	// Only the consumer loop's goroutine uses these.
	have     [NumClasses]uint64 // the ingest-log sequence each class holds through
	pending  [NumClasses][]byte // framed batches for the next Write
	pendRecs [NumClasses]int
	// pendEnds marks where each batch's frame ends in pending, with its
	// sequence and records: Write splits pending there when it is larger
	// than one outbox message may be.
	pendEnds [NumClasses][]frameEnd
	pendSeq  uint64
	scratch  [NumClasses][]ingest.Message
	enc      []byte
	// local accumulates the values that stay at the edge (classified
	// important or core, not shared) into the rollups the hub gets.
	local  rollups
	keep   []ingest.Message
	shared map[string]bool
	kept   prometheus.Counter

	full    [NumClasses]atomic.Bool // back-pressure: Admit refuses the class
	records [NumClasses]atomic.Int64
	// acked is, per class, what the hub has (the link sets it).
	acked [NumClasses]atomic.Uint64
	wake  chan struct{}

	mu     sync.Mutex // one reduction at a time (the loop; the link clears full)
	reduce *prometheus.CounterVec
	gaps   prometheus.Counter
	refuse *prometheus.CounterVec
}

// ErrClassFull is the reason Admit refuses a message: its class's outbox
// is at its quota and its policy keeps everything.
var ErrClassFull = errors.New("the edge holds as much of this class as its quota allows until the hub link returns; retry later")

// OpenOutboxes opens the outboxes of every class.
func OpenOutboxes(ctx context.Context, o OutboxOptions) (*Outboxes, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RollupGrace <= 0 {
		o.RollupGrace = 10 * time.Second
	}
	if o.Models == nil {
		o.Models = func(string) *thingmodel.Model { return nil }
	}
	for c := range o.Quota {
		if o.Quota[c] <= 0 {
			o.Quota[c] = DefaultQuota[c]
		}
	}
	x := &Outboxes{o: o, log: o.Logger.With("component", "outbox"), wake: make(chan struct{}, 1),
		reduce: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_reduced_records_total", Help: "Values the edge reduced because a class's quota was full, by class and policy (downsampled into rollups, dropped); each reduction leaves a gap record.",
		}, []string{"class", "policy"}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_edge_gap_records_total", Help: "Gap records the edge wrote (each accounts for one reduction).",
		}),
		refuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_class_refused_total", Help: "Device messages refused because their class's outbox was full (back-pressure), by class.",
		}, []string{"class"}),
		kept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_edge_kept_local_values_total", Help: "Values classified important or core, without a sharing grant, kept at the edge (the hub gets their per-minute rollups).",
		}),
		shared: map[string]bool{},
	}
	x.local.now = func() int64 { return o.Now().UnixMilli() }
	for _, g := range o.Shared {
		x.shared[g] = true
	}
	for _, c := range Classes() {
		b, err := o.Bus.Outbox(ctx, c.String())
		if err != nil {
			return nil, err
		}
		x.boxes[c] = b
		_, src, err := b.Last(ctx)
		if err != nil && !errors.Is(err, bus.ErrOutboxEmpty) {
			return nil, err
		}
		x.have[c] = src
		// Count what is held, so that the backlog's records are right
		// after a restart.
		st, err := b.State(ctx)
		if err != nil {
			return nil, err
		}
		if st.Messages > 0 {
			var n int64
			if _, err := b.Read(ctx, st.First, math.MaxInt, func(_ uint64, data []byte) bool {
				msgs, err := Decode(data)
				if err == nil {
					n += int64(countRecords(msgs))
				}
				return true
			}); err != nil {
				return nil, err
			}
			x.records[c].Store(n)
		}
	}
	if o.Metrics != nil {
		for _, col := range []prometheus.Collector{x.reduce, x.gaps, x.refuse, x.kept, &backlogCollector{x}} {
			if err := o.Metrics.Register(col); err != nil {
				return nil, fmt.Errorf("forward: metrics: %w", err)
			}
		}
	}
	return x, nil
}

// Box returns a class's outbox.
func (x *Outboxes) Box(c Class) *bus.Outbox { return x.boxes[c] }

// Appended is signalled after every append.
func (x *Outboxes) Appended() <-chan struct{} { return x.wake }

// Admit refuses a device message whose class is at its quota under
// back-pressure (pipeline.Options.Admit).
func (x *Outboxes) Admit(m *ingest.Message) error {
	if !x.full[Alarm].Load() && !x.full[Control].Load() {
		return nil
	}
	model := x.o.Models(m.Model)
	var c Class
	if m.Kind == ingest.Event {
		c = eventClass(m, model)
	} else {
		c = Telemetry
		for i := range m.Records {
			if rc := recordClass(m.Records[i].Property, model); rc < c {
				c = rc
			}
		}
	}
	if c <= Control && x.full[c].Load() {
		x.refuse.WithLabelValues(c.String()).Inc()
		return fmt.Errorf("%s: %w", c, ErrClassFull)
	}
	return nil
}

// AddSeq takes one durable ingest batch (pipeline.SeqConsumer).
func (x *Outboxes) AddSeq(seq uint64, msgs []ingest.Message) {
	fresh := seq > x.have[Telemetry]
	for i := range msgs {
		model := x.o.Models(msgs[i].Model)
		m := x.keepLocal(&msgs[i], model, fresh)
		if m == nil {
			continue
		}
		split(m, model, &x.scratch)
	}
	// Minutes that ended (with a grace for late values) go up as rollups.
	if x.local.len() > 0 && fresh {
		closed := x.local.takeClosed(x.o.Now().UnixMilli(), x.o.RollupGrace.Milliseconds())
		x.scratch[Telemetry] = append(x.scratch[Telemetry], closed...)
	}
	x.pendSeq = seq
	for c := range x.scratch {
		part := x.scratch[c]
		if len(part) == 0 {
			continue
		}
		if seq > x.have[c] {
			var err error
			x.enc, err = ingest.AppendBatch(x.enc[:0], part)
			if err != nil {
				x.log.Error("a batch could not be encoded for the outbox; skipped", "class", Class(c), "seq", seq, "err", err)
			} else {
				x.pending[c] = appendFrame(x.pending[c], x.enc)
				n := countRecords(part)
				x.pendRecs[c] += n
				x.pendEnds[c] = append(x.pendEnds[c], frameEnd{end: len(x.pending[c]), seq: seq, records: n})
			}
		}
		clear(part)
		x.scratch[c] = part[:0]
	}
}

// keepLocal takes out of m the values that stay at the edge (a property
// classified important or core without a sharing grant), adding them to
// the rollups when fresh (a batch the telemetry outbox does not hold yet);
// it returns what goes on, nil for nothing.
func (x *Outboxes) keepLocal(m *ingest.Message, model *thingmodel.Model, fresh bool) *ingest.Message {
	if m.Kind != ingest.Telemetry || model == nil {
		return m
	}
	local := func(r *ingest.Record) bool {
		p := model.Properties[r.Property]
		return p != nil && (p.Classification == thingmodel.ClassImportant || p.Classification == thingmodel.ClassCore) &&
			!x.shared[model.ID+"/"+r.Property]
	}
	n := 0
	for i := range m.Records {
		if local(&m.Records[i]) {
			n++
		}
	}
	if n == 0 {
		return m
	}
	if fresh {
		for i := range m.Records {
			r := &m.Records[i]
			if local(r) && r.Kind == ingest.KindFloat {
				x.local.addValue(m.Tenant, m.Device, m.Model, r.Property, r.Time, r.Float)
			}
		}
		x.kept.Add(float64(n))
	}
	if n == len(m.Records) {
		return nil
	}
	out := *m
	out.Records = make([]ingest.Record, 0, len(m.Records)-n)
	for i := range m.Records {
		if !local(&m.Records[i]) {
			out.Records = append(out.Records, m.Records[i])
		}
	}
	x.keep = append(x.keep[:0], out)
	return &x.keep[0]
}

// Add is AddSeq without a sequence; the loop calls AddSeq.
func (x *Outboxes) Add(msgs []ingest.Message) { x.AddSeq(x.pendSeq+1, msgs) }

// MaxMessage bounds one outbox message: the batches a Write appends go
// in several messages past it, each headed by its last batch's sequence
// (the bus refuses a message over its payload limit, 1 MiB; one message
// of many read-back batches went over it and the forwarder retried the
// same batches for ever).
const MaxMessage = 512 << 10

// frameEnd is where one batch's frame ends in a pending buffer.
type frameEnd struct {
	end     int
	seq     uint64
	records int
}

// Write appends what AddSeq took to the outboxes, each class after its
// quota policy made room, in messages of at most MaxMessage bytes (a
// single larger batch goes alone).
func (x *Outboxes) Write(ctx context.Context) error {
	defer func() {
		for c := range x.pending {
			x.pending[c] = x.pending[c][:0]
			x.pendRecs[c] = 0
			x.pendEnds[c] = x.pendEnds[c][:0]
		}
	}()
	for _, c := range Classes() {
		data := x.pending[c]
		if len(data) == 0 {
			if x.pendSeq > x.have[c] {
				x.have[c] = x.pendSeq
			}
			continue
		}
		start, recs := 0, 0
		ends := x.pendEnds[c]
		for i, fe := range ends {
			last := i == len(ends)-1
			recs += fe.records
			if !last && ends[i+1].end-start <= MaxMessage {
				continue
			}
			// The last message is headed by the batch Write is at: the
			// class holds through it, whether or not it had data in it.
			seq := fe.seq
			if last {
				seq = x.pendSeq
			}
			if err := x.append(ctx, c, seq, data[start:fe.end], recs); err != nil {
				return err
			}
			start, recs = fe.end, 0
		}
		x.signal()
	}
	return nil
}

// append appends one outbox message after the quota policy made room.
func (x *Outboxes) append(ctx context.Context, c Class, seq uint64, data []byte, records int) error {
	if err := x.makeRoom(ctx, c, int64(len(data))); err != nil {
		return err
	}
	if _, err := x.boxes[c].Append(ctx, seq, data); err != nil {
		return err
	}
	x.have[c] = seq
	x.records[c].Add(int64(records))
	x.checkFull(ctx, c)
	return nil
}

// Commit has nothing to do: every append was durable when Write returned.
func (x *Outboxes) Commit(context.Context) error { return nil }

func (x *Outboxes) signal() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// checkFull sets or clears a back-pressure class's full flag.
func (x *Outboxes) checkFull(ctx context.Context, c Class) {
	if c > Control {
		return
	}
	st, err := x.boxes[c].State(ctx)
	if err != nil {
		return
	}
	full := int64(st.Bytes) >= x.o.Quota[c]
	if x.full[c].Swap(full) != full {
		if full {
			x.log.Warn("a class's outbox reached its quota; its device messages are refused until the hub takes some", "class", c, "bytes", st.Bytes, "quota", x.o.Quota[c])
		} else {
			x.log.Info("a class's outbox has room again", "class", c)
		}
	}
}

// Acked records that the hub holds a class through seq, records values
// more than before, and removes what it holds from the outbox (keeping the
// newest message, whose header says which ingest batch the class holds
// through).
func (x *Outboxes) Acked(ctx context.Context, c Class, seq uint64, records int64) error {
	if seq <= x.acked[c].Load() {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.records[c].Add(-records)
	x.acked[c].Store(seq)
	st, err := x.boxes[c].State(ctx)
	if err != nil {
		return err
	}
	if through := min(seq, st.Last-1); through >= st.First && st.Messages > 1 {
		if err := x.boxes[c].Remove(ctx, through); err != nil {
			return err
		}
	}
	if seq >= st.Last {
		x.records[c].Store(0) // all at the hub: no drift survives a drained backlog
	}
	x.checkFull(ctx, c)
	return nil
}

// countRange counts the values of a class's messages from through to.
func (x *Outboxes) countRange(ctx context.Context, c Class, from, to uint64) (int64, error) {
	var n int64
	_, err := x.boxes[c].Read(ctx, from, math.MaxInt, func(seq uint64, data []byte) bool {
		if seq > to {
			return false
		}
		msgs, err := Decode(data)
		if err == nil {
			n += int64(countRecords(msgs))
		}
		return true
	})
	return n, err
}

// Backlog is what waits in one class for the hub.
type Backlog struct {
	Class    string  `json:"class"`
	Messages uint64  `json:"messages"` // outbox messages (each many device messages)
	Records  int64   `json:"records"`  // values and events
	Bytes    uint64  `json:"bytes"`
	OldestS  float64 `json:"oldest_age_s"` // age of the oldest not yet at the hub
	Quota    int64   `json:"quota_bytes"`
	Full     bool    `json:"full,omitempty"`
}

// Backlogs reports every class's backlog, most urgent first.
func (x *Outboxes) Backlogs(ctx context.Context) ([]Backlog, error) {
	out := make([]Backlog, 0, NumClasses)
	for _, c := range Classes() {
		st, err := x.boxes[c].State(ctx)
		if err != nil {
			return nil, err
		}
		b := Backlog{Class: c.String(), Quota: x.o.Quota[c], Full: x.full[c].Load()}
		acked := x.acked[c].Load()
		if st.Last > acked {
			b.Messages = st.Last - max(acked, st.First-1)
			b.Records = max(x.records[c].Load(), 0)
			b.Bytes = st.Bytes
			next := max(acked+1, st.First)
			if _, t, err := x.boxes[c].Get(ctx, next); err == nil {
				b.OldestS = x.o.Now().Sub(t).Seconds()
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// makeRoom applies the class's quota policy before size more bytes go in.
func (x *Outboxes) makeRoom(ctx context.Context, c Class, size int64) error {
	if c <= Control {
		return nil // back-pressure: what was accepted is kept (Admit refuses more)
	}
	st, err := x.boxes[c].State(ctx)
	if err != nil {
		return err
	}
	quota := x.o.Quota[c]
	if int64(st.Bytes)+size <= quota {
		return nil
	}
	// Free a tenth of the quota beyond what is needed, so that a full
	// class is not reduced at every write.
	need := int64(st.Bytes) + size - quota + quota/10
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.reduceOldest(ctx, c, need)
}

// gap is a signed account of one reduction.
type gap struct {
	Edge      string `json:"edge"`
	Class     string `json:"class"`
	Policy    string `json:"policy"` // "downsampled" or "dropped"
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Messages  int    `json:"messages"` // device messages reduced
	Records   int    `json:"records"`  // values and events reduced
	Rolled    int    `json:"rolled_up,omitempty"`
	Rollups   int    `json:"rollups,omitempty"` // summary messages written in their place
	From      int64  `json:"from_ms"`           // the oldest value's time
	To        int64  `json:"to_ms"`             // the newest value's time
	Reduced   int64  `json:"reduced_at_ms"`
	Algorithm string `json:"alg,omitempty"`
}

// Events the edge itself writes, named outside the grammar of a model's
// event names (no dots there), so that no device's event is taken for one:
// GapEvent is a gap record (of the edge object), CommandResultEvent a
// device's result for a command the hub issued
// ({"id", "status", "reason", "output"}), TwinReportedEvent a device's
// reported state as a merge patch, LoopEvidenceEvent an evidence record
// of a loop that ran at the edge (package loop's Evidence, as JSON; each
// new state of the record again), AlarmEvent an alarm raised or changed
// at the edge (package alarm's Alarm, as JSON; it travels in the alarm
// class), RolloutEvent a stage change of a rollout at the edge (of the
// edge object; package rollout's Record, as JSON), MLFiguresEvent the
// figures of the model versions that scored at the edge (of the edge
// object; a JSON array of {tenant, id, version, figures}).
const (
	GapEvent           = "wanwu.gap"
	CommandResultEvent = "wanwu.command_result"
	TwinReportedEvent  = "wanwu.twin_reported"
	LoopEvidenceEvent  = "wanwu.loop_evidence"
	AlarmEvent         = "wanwu.alarm"
	RolloutEvent       = "wanwu.rollout_stage"
	MLFiguresEvent     = "wanwu.ml_figures"
	// DatasetWindowEvent is a window of raw data the edge captured (of
	// the window's object; package dataset's Window, redacted).
	DatasetWindowEvent = "wanwu.dataset_window"
)

// reduceOldest reduces the oldest messages of a telemetry or bulk outbox
// until need bytes are free, writing the rollups and one gap record to the
// control class first.
func (x *Outboxes) reduceOldest(ctx context.Context, c Class, need int64) error {
	box := x.boxes[c]
	st, err := box.State(ctx)
	if err != nil {
		return err
	}
	if st.Messages <= 1 {
		return nil // one message over the quota is kept: its header is the class's place
	}
	g := gap{Edge: x.o.Edge, Class: c.String(), Policy: "dropped", From: math.MaxInt64, Reduced: x.o.Now().UnixMilli()}
	if c == Telemetry {
		g.Policy = "downsampled"
	}
	var ru rollups
	var freed int64
	var decodeErr error
	reached, err := box.Read(ctx, st.First, math.MaxInt, func(seq uint64, data []byte) bool {
		if freed >= need || seq >= st.Last {
			return false
		}
		msgs, err := Decode(data)
		if err != nil {
			decodeErr = err
		}
		if g.FirstSeq == 0 {
			g.FirstSeq = seq
		}
		g.LastSeq = seq
		g.Messages += len(msgs)
		g.Records += countRecords(msgs)
		for i := range msgs {
			m := &msgs[i]
			g.From, g.To = min(g.From, m.Received), max(g.To, m.Received)
			for _, r := range m.Records {
				g.From, g.To = min(g.From, r.Time), max(g.To, r.Time)
			}
			if c == Telemetry {
				g.Rolled += ru.add(m)
			}
		}
		freed += int64(len(data))
		return true
	})
	if err != nil {
		return err
	}
	if g.FirstSeq == 0 {
		return nil
	}
	if decodeErr != nil {
		x.log.Error("an outbox message could not be decoded while reducing; it is counted as one message", "class", c, "err", decodeErr)
	}
	ctrl := ru.take(math.MaxInt64)
	g.Rollups = len(ctrl)
	ev, err := x.gapEvent(g)
	if err != nil {
		return err
	}
	ctrl = append(ctrl, ev)
	// Rollups and the gap record are durable before the raw values go.
	batch, err := ingest.AppendBatch(nil, ctrl)
	if err != nil {
		return fmt.Errorf("forward: gap record: %w", err)
	}
	if _, err := x.boxes[Control].Append(ctx, x.have[Control], appendFrame(nil, batch)); err != nil {
		return err
	}
	x.records[Control].Add(int64(countRecords(ctrl)))
	n, err := x.countRange(ctx, c, st.First, reached)
	if err != nil {
		return err
	}
	if err := box.Remove(ctx, reached); err != nil {
		return err
	}
	x.records[c].Add(-n)
	x.reduce.WithLabelValues(c.String(), g.Policy).Add(float64(g.Records))
	x.gaps.Inc()
	x.log.Warn("a class's outbox was full: its oldest values were reduced, and a gap record says so",
		"class", c, "policy", g.Policy, "records", g.Records, "first_seq", g.FirstSeq, "last_seq", g.LastSeq, "rollups", g.Rollups)
	x.signal()
	return nil
}

// gapEvent is the edge's event carrying a signed gap record: data is
// {"gap": {...}, "sig": "<base64>"}, the signature over the gap's exact
// JSON bytes (SignRecord).
func (x *Outboxes) gapEvent(g gap) (ingest.Message, error) {
	body, err := json.Marshal(g)
	if err != nil {
		return ingest.Message{}, err
	}
	data, err := SignRecord(body, x.o.Key)
	if err != nil {
		return ingest.Message{}, err
	}
	return ingest.Message{Device: x.o.Edge, Tenant: x.o.Tenant, Kind: ingest.Event, Event: GapEvent,
		EventData: data, Received: g.Reduced, Source: "edge"}, nil
}

// backlogCollector exports the backlog per class.
type backlogCollector struct{ x *Outboxes }

var (
	backlogRecordsDesc = prometheus.NewDesc("wanwu_edge_backlog_records", "Values and events waiting at the edge for the hub, by class.", []string{"class"}, nil)
	backlogBytesDesc   = prometheus.NewDesc("wanwu_edge_backlog_bytes", "Bytes of outbox waiting at the edge for the hub, by class.", []string{"class"}, nil)
	backlogAgeDesc     = prometheus.NewDesc("wanwu_edge_backlog_oldest_seconds", "Age of the oldest message waiting at the edge for the hub, by class.", []string{"class"}, nil)
)

func (b *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogRecordsDesc
	ch <- backlogBytesDesc
	ch <- backlogAgeDesc
}

func (b *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bl, err := b.x.Backlogs(ctx)
	if err != nil {
		return
	}
	for _, c := range bl {
		ch <- prometheus.MustNewConstMetric(backlogRecordsDesc, prometheus.GaugeValue, float64(c.Records), c.Class)
		ch <- prometheus.MustNewConstMetric(backlogBytesDesc, prometheus.GaugeValue, float64(c.Bytes), c.Class)
		ch <- prometheus.MustNewConstMetric(backlogAgeDesc, prometheus.GaugeValue, c.OldestS, c.Class)
	}
}
