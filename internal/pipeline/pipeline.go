// Package pipeline carries accepted device data from the protocol adapters to
// the stores, without losing what it acknowledged.
//
// Adapters Submit canonical messages (package ingest). A batcher groups the
// messages that arrive while the previous batch is being written into one
// JetStream message, so one fsync covers many devices (group commit), and
// releases each submitter only when its batch is durable. The batcher then
// hands the batch, still decoded, to the store loop, which writes it into the
// time-series store (numbers, booleans, positions) and the event store
// (events, strings, data). The stream is the stores' write-ahead log: a
// cursor file says up to which batch the stores made their writes durable,
// and after a restart, or when the store loop fell behind, the batches after
// it are read back from the stream. Both writes are idempotent, so a batch
// written twice changes nothing. Rejected messages go to the dead-letter
// stream with their reason.
package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/bus"
	"github.com/wanwu-iot/wanwu/internal/diskguard"
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// ErrUnavailable is returned when data could not be made durable; the
// adapter answers with the "unavailable" reason and the device retries.
var ErrUnavailable = errors.New("pipeline: data could not be made durable")

// ErrClosed is returned after Shutdown.
var ErrClosed = errors.New("pipeline: closed")

// refusal is the error for a message refused before it was taken (Admit)
// or because the bus failed for lack of space: the storage_full rejection,
// which adapters answer as such, wrapped in ErrUnavailable.
func refusal(err error) error {
	return fmt.Errorf("%w: %w", ErrUnavailable, &ingest.Rejection{
		Reason: ingest.StorageFull, Message: storageFullMessage(err), Err: err,
	})
}

// storageFullMessage is what a device is told: the guard's words when it
// refused, a general one when a store failed.
func storageFullMessage(err error) string {
	var rej *ingest.Rejection
	switch {
	case errors.As(err, &rej):
		return rej.Message
	case errors.Is(err, diskguard.ErrFull):
		return strings.TrimPrefix(err.Error(), diskguard.ErrFull.Error()+": ")
	}
	return "the hub's disk is full; retry later"
}

// admit returns the refusal of a message when Options.Admit refuses it.
func (p *Pipeline) admit(msg *ingest.Message) error {
	if p.opts.Admit == nil {
		return nil
	}
	if err := p.opts.Admit(msg); err != nil {
		p.m.submitted.WithLabelValues(msg.Source, "refused").Inc()
		return refusal(err)
	}
	return nil
}

// Options configure a Pipeline.
type Options struct {
	Bus    *bus.Bus
	TSDB   *tsdb.Store
	Events *eventstore.Store
	Logger *slog.Logger
	// Metrics receives the pipeline's counters (optional).
	Metrics prometheus.Registerer
	// MaxBatchMessages and MaxBatchBytes bound one bus message (defaults 2048 and 512 KiB).
	MaxBatchMessages int
	MaxBatchBytes    int
	// Flushers is how many batches may be in flight to the bus at once
	// (default 1). JetStream writes and syncs a stream's messages one after
	// the other, so a second flusher mostly splits what one batch would
	// have carried into two syncs: more flushers gave fewer requests per
	// second at more CPU (bench/RESULTS.md, "The store loop replaces the
	// store consumer").
	Flushers int
	// Linger is how long a flusher may hold a batch open for more messages
	// when they arrive often enough to fill it (default 2ms; negative: never).
	// Each batch costs a JetStream write and fsync and a store commit, so at
	// a steady few thousand messages per second batches of one or two cost
	// several times the CPU of batches of ten. A device whose messages come
	// alone is not held, nor a batch whose next message is late (see
	// lingerFor): in a closed loop the senders wait for this batch.
	Linger time.Duration
	// LingerMessages ends the linger once a batch holds this many messages
	// (default 32): by then the batch's fixed cost is spread thin, and in a
	// closed loop every further wait is the devices' wait (bench/RESULTS.md
	// has the measurements that chose 32).
	LingerMessages int
	// CommitEvery is how often the store loop makes what it wrote durable
	// (an fsync of the time-series store's log) and moves the cursor past
	// it (default DefaultCommitEvery). Samples are queryable at once; the
	// batches stay in the stream, so a crash before a commit only means the
	// batches since the last one are written again after the restart.
	CommitEvery time.Duration
	// CursorFile keeps the stream sequence of the last batch the stores made
	// durable, so that a restart reads back only the batches after it. ""
	// keeps it in memory: every start reads back all the stream retains.
	CursorFile string
	// QueueLength bounds waiting submissions (default 65536); beyond it Submit
	// waits and SubmitNoWait drops (QoS 0 only).
	QueueLength int
	// Admit is asked before a message is taken (optional): an error
	// refuses the message at once with the storage_full reason and the
	// error's text (the disk guard's, when the disk is nearly full; at an
	// edge, a forwarding class whose quota is full). It must not keep msg.
	Admit func(msg *ingest.Message) error
	// OnNoSpace is told when a store's write failed for lack of disk space
	// (optional; the disk guard), with the store's name.
	OnNoSpace func(store string, err error)
}

// DefaultCommitEvery is Options.CommitEvery's default.
const DefaultCommitEvery = time.Second

type request struct {
	msg  ingest.Message
	done chan error // Submit waits on it
	cb   Completion // SubmitAsync's
}

// Completion is what SubmitAsync tells once a message is durable (nil) or
// could not be made so. Its Durable runs on a batcher goroutine and must
// not block. An adapter's own per-message record can implement it, so that
// handing a message over allocates no closure.
type Completion interface {
	Durable(err error)
}

// CompletionFunc lets a function be a Completion.
type CompletionFunc func(error)

// Durable calls f.
func (f CompletionFunc) Durable(err error) { f(err) }

// requests recycles the requests of SubmitAsync and SubmitNoWait, which no
// one holds once their batch is flushed.
var requests = sync.Pool{New: func() any { return new(request) }}

// syncRequests recycles Submit's requests with their result channels; one
// whose caller gave up waiting (its context ended) is left to the collector.
var syncRequests = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

func putSyncRequest(r *request) {
	r.msg = ingest.Message{}
	syncRequests.Put(r)
}

func putRequest(r *request) {
	*r = request{}
	requests.Put(r)
}

// Pipeline is the running batchers and store loop.
type Pipeline struct {
	opts   Options
	log    *slog.Logger
	reqs   chan *request
	cancel context.CancelFunc
	// batchers and consumers are waited for separately: on shutdown the
	// batchers drain first, then the consumers' loops take what they made
	// durable.
	batchers  sync.WaitGroup
	consumers sync.WaitGroup

	// loops are the consumers of the ingest log, the stores first; spare
	// carries batches' message slices back for reuse.
	loops []*consumerLoop
	spare chan []ingest.Message
	// published is the highest stream sequence a batcher was given.
	published atomic.Uint64

	mu      sync.RWMutex
	closed  bool
	started bool

	m  metrics
	cm consumerMetrics

	// The flushers' estimate of the arrival rate (lingerFor).
	arrivals  atomic.Int64 // messages taken into batches
	rateMu    sync.Mutex
	rate      float64 // messages per second over the last window
	rateBase  int64
	rateSince time.Time

	// labelSets caches the label sets of the series the stores' consumer
	// saw; only its loop's goroutine uses it.
	labelSets labelSets
}

type metrics struct {
	submitted   *prometheus.CounterVec
	dropped     prometheus.Counter
	batchSize   prometheus.Histogram
	flush       prometheus.Histogram
	deadLetters *prometheus.CounterVec
	stored      *prometheus.CounterVec
	storeReject *prometheus.CounterVec
}

// New checks options and builds a pipeline; Start runs it.
func New(o Options) (*Pipeline, error) {
	if o.Bus == nil || o.TSDB == nil || o.Events == nil {
		return nil, errors.New("pipeline: Bus, TSDB and Events are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBatchMessages <= 0 {
		o.MaxBatchMessages = 2048
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 512 << 10
	}
	if o.Flushers <= 0 {
		o.Flushers = 1
	}
	if o.LingerMessages <= 0 {
		o.LingerMessages = 32
	}
	if o.QueueLength <= 0 {
		o.QueueLength = 65536
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.CommitEvery <= 0 {
		o.CommitEvery = DefaultCommitEvery
	}
	p := &Pipeline{opts: o, log: o.Logger.With("component", "pipeline"), reqs: make(chan *request, o.QueueLength),
		spare: make(chan []ingest.Message, spareSlices)}
	p.m, p.cm = newMetrics(), newConsumerMetrics()
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{p.m.submitted, p.m.dropped, p.m.batchSize, p.m.flush, p.m.deadLetters, p.m.stored, p.m.storeReject,
			p.cm.lag, p.cm.readBack, p.cm.lost} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("pipeline: metrics: %w", err)
			}
		}
	}
	if err := p.AddConsumer(&stores{p: p}, ConsumerOptions{Name: storesName, CursorFile: o.CursorFile, legacyConsumer: legacyConsumer}); err != nil {
		return nil, err
	}
	return p, nil
}

func newMetrics() metrics {
	return metrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_ingest_messages_total", Help: "Device messages submitted for storage, by source and result (durable, failed, dropped).",
		}, []string{"source", "result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_ingest_qos0_dropped_total", Help: "QoS 0 messages dropped because the ingest queue was full.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wanwu_ingest_batch_messages", Help: "Device messages per bus batch (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wanwu_ingest_flush_seconds", Help: "Time to make one batch durable on the bus.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_ingest_dead_letters_total", Help: "Rejected device messages stored in the dead-letter stream, by reason.",
		}, []string{"reason"}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_store_written_total", Help: "Values written by the store loop, by store (tsdb, events, values).",
		}, []string{"store"}),
		storeReject: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_store_rejected_samples_total", Help: "Samples the time-series store refused (e.g. older than its out-of-order window).",
		}, []string{"store"}),
	}
}

// Start reads the cursor and runs the batchers and the store loop.
func (p *Pipeline) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("pipeline: already started")
	}
	for i, l := range p.loops {
		seq, err := l.openCursor(ctx)
		if err != nil {
			for _, o := range p.loops[:i] {
				o.closeCursor()
			}
			return err
		}
		p.published.Store(max(p.published.Load(), seq))
	}
	p.started = true
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for i := 0; i < p.opts.Flushers; i++ {
		p.batchers.Add(1)
		go func() {
			defer p.batchers.Done()
			p.batchLoop()
		}()
	}
	for _, l := range p.loops {
		p.consumers.Add(1)
		go func() {
			defer p.consumers.Done()
			l.run(runCtx)
		}()
	}
	return nil
}

// Submit hands a message over and returns once it is durable on the bus.
// The message is the pipeline's from then on: its records are reused once
// the stores have it, so the caller must not read them again.
func (p *Pipeline) Submit(ctx context.Context, msg ingest.Message) error {
	if err := p.admit(&msg); err != nil {
		return err
	}
	r := syncRequests.Get().(*request)
	r.msg = msg
	if err := p.enqueue(ctx, r); err != nil {
		putSyncRequest(r)
		return err
	}
	select {
	case err := <-r.done:
		// The batcher is done with r once it has sent the result.
		putSyncRequest(r)
		result := "durable"
		if err != nil {
			result = "failed"
		}
		p.m.submitted.WithLabelValues(msg.Source, result).Inc()
		return err
	case <-ctx.Done():
		// The batch may still become durable; the device will resend and the
		// stores deduplicate.
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// SubmitAsync hands a message over and tells done once it is durable or
// could not be made so (see Completion). Adapters use it to keep reading a
// connection while earlier messages are being synced. The message is the
// pipeline's from then on, as with Submit.
func (p *Pipeline) SubmitAsync(msg ingest.Message, done Completion) {
	if err := p.admit(&msg); err != nil {
		done.Durable(err)
		return
	}
	r := requests.Get().(*request)
	r.msg, r.cb = msg, done
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		putRequest(r)
		done.Durable(ErrClosed)
		return
	}
	// Blocking here is backpressure on the connection, as with Submit.
	p.reqs <- r
	p.mu.RUnlock()
}

// SubmitNoWait hands over a QoS 0 message; it is dropped (and counted) when
// the queue is full, so a burst of best-effort data never blocks a device.
// Once queued, the message is the pipeline's, as with Submit.
func (p *Pipeline) SubmitNoWait(msg ingest.Message) bool {
	if p.admit(&msg) != nil {
		return false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	r := requests.Get().(*request)
	r.msg = msg
	select {
	case p.reqs <- r:
		p.m.submitted.WithLabelValues(msg.Source, "queued").Inc()
		return true
	default:
		putRequest(r)
		p.m.dropped.Inc()
		return false
	}
}

func (p *Pipeline) enqueue(ctx context.Context, r *request) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	select {
	case p.reqs <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// batchLoop takes everything that waits (up to the limits) as one batch: at
// low load a message goes out alone and at once; under load batches grow
// while the previous one is being synced.
func (p *Pipeline) batchLoop() {
	var f flusher
	batch := make([]*request, 0, 64)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		r, ok := <-p.reqs
		if !ok {
			return
		}
		first := time.Now()
		batch = append(batch[:0], r)
		size := approxSize(&r.msg)
		wait, gap := p.lingerFor(first)
		deadline := first.Add(wait)
	drain:
		for len(batch) < p.opts.MaxBatchMessages && size < p.opts.MaxBatchBytes {
			select {
			case r, ok := <-p.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				size += approxSize(&r.msg)
				continue
			default:
			}
			if wait <= 0 || len(batch) >= p.opts.LingerMessages {
				break
			}
			// Wait for the next message no longer than a few mean gaps
			// between arrivals: when they stop (their devices wait for
			// this very batch), flush.
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			linger.Reset(min(gap, left))
			select {
			case r, ok := <-p.reqs:
				linger.Stop()
				if !ok {
					break drain
				}
				batch = append(batch, r)
				size += approxSize(&r.msg)
			case <-linger.C:
				break drain
			}
		}
		p.arrivals.Add(int64(len(batch)))
		durable, err := p.flush(&f, batch)
		p.countAsync(&f, batch, err)
		for i, r := range batch {
			switch {
			case r.done != nil:
				r.done <- err
			case r.cb != nil:
				r.cb.Durable(err)
				putRequest(r)
			default:
				putRequest(r)
			}
			batch[i] = nil
		}
		if err == nil {
			p.handOver(durable)
		}
	}
}

// DefaultLinger is Options.Linger's default.
const DefaultLinger = 2 * time.Millisecond

// lingerFor says how long a batch opened at now may wait for more, and how
// long for each next message: Linger, and four mean gaps between arrivals,
// when at the arrival rate of the last rateWindow at least two more
// messages are expected within Linger; otherwise nothing, so that a lone
// message is flushed at once.
func (p *Pipeline) lingerFor(now time.Time) (total, gap time.Duration) {
	if p.opts.Linger <= 0 {
		return 0, 0
	}
	p.rateMu.Lock()
	defer p.rateMu.Unlock()
	if d := now.Sub(p.rateSince); d >= rateWindow {
		n := p.arrivals.Load()
		p.rate = float64(n-p.rateBase) / d.Seconds()
		p.rateBase, p.rateSince = n, now
	}
	if p.rate*p.opts.Linger.Seconds() < 2 {
		return 0, 0
	}
	return p.opts.Linger, max(minGap, time.Duration(4/p.rate*float64(time.Second)))
}

// minGap is the shortest wait for a next message (timers are not finer).
const minGap = 50 * time.Microsecond

// rateWindow is how often lingerFor re-estimates the arrival rate.
const rateWindow = 100 * time.Millisecond

// flusher is a batcher's buffers, reused from batch to batch.
type flusher struct {
	buf   []byte
	tally []sourceCount
}

type sourceCount struct {
	source string
	n      int
}

// countAsync counts the batch's SubmitAsync messages by source, before
// their callbacks run, with one counter update per source rather than
// per message.
func (p *Pipeline) countAsync(f *flusher, batch []*request, err error) {
	tally := f.tally[:0]
next:
	for _, r := range batch {
		if r.cb == nil {
			continue
		}
		for i := range tally {
			if tally[i].source == r.msg.Source {
				tally[i].n++
				continue next
			}
		}
		tally = append(tally, sourceCount{r.msg.Source, 1})
	}
	result := "durable"
	if err != nil {
		result = "failed"
	}
	for i, c := range tally {
		p.m.submitted.WithLabelValues(c.source, result).Add(float64(c.n))
		tally[i] = sourceCount{}
	}
	f.tally = tally[:0]
}

func approxSize(m *ingest.Message) int {
	n := 64 + len(m.Device) + len(m.EventData)
	for _, r := range m.Records {
		n += 32 + len(r.Property) + len(r.String) + len(r.Data)
	}
	return n
}

// maxKeptBuffer bounds the encoded batch a flusher keeps for the next one.
const maxKeptBuffer = 4 << 20

// flush makes a batch durable on the bus and returns it, with its stream
// sequence, for the store loop.
func (p *Pipeline) flush(f *flusher, batch []*request) (*durableBatch, error) {
	msgs := p.messageSlice()
	for _, r := range batch {
		msgs = append(msgs, r.msg)
	}
	data, err := ingest.AppendBatch(f.buf[:0], msgs)
	if err != nil {
		p.recycle(msgs)
		p.log.Error("encoding an ingest batch failed", "messages", len(batch), "err", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if cap(data) <= maxKeptBuffer {
		// The bus copies the batch into its connection's buffer before
		// PublishIngest returns, so the next batch may reuse it.
		f.buf = data[:0]
	}
	start := time.Now()
	id := nuid.Next()
	// Retries keep the batch id, so JetStream stores the batch once even if
	// only the acknowledgement was lost.
	var seq uint64
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		seq, err = p.opts.Bus.PublishIngest(ctx, id, data)
		cancel()
		if err == nil || attempt == 2 || errors.Is(err, bus.ErrStoreFailed) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	if err != nil {
		p.recycle(msgs)
		if errors.Is(err, bus.ErrStoreFailed) || diskguard.IsNoSpace(err) {
			// The bus told the disk guard; the devices are told why.
			return nil, refusal(err)
		}
		p.log.Error("storing an ingest batch failed", "messages", len(batch), "err", err)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for { // with several flushers, batches are acknowledged in any order
		old := p.published.Load()
		if seq <= old || p.published.CompareAndSwap(old, seq) {
			break
		}
	}
	p.m.flush.Observe(time.Since(start).Seconds())
	p.m.batchSize.Observe(float64(len(batch)))
	d := batchPool.Get().(*durableBatch)
	d.seq, d.msgs = seq, msgs
	return d, nil
}

// appendStored maps one canonical message onto the stores' rows.
func (p *Pipeline) appendStored(samples []tsdb.PreparedSample, events []eventstore.Event, values []eventstore.Value, m *ingest.Message, st *storeRejects) ([]tsdb.PreparedSample, []eventstore.Event, []eventstore.Value) {
	if m.Kind == ingest.Event {
		return samples, append(events, eventstore.Event{
			Tenant: m.Tenant, Device: m.Device, Name: m.Event, Time: eventTime(m), Data: m.EventData, Received: m.Received,
		}), values
	}
	dev := p.labelSets.device(m.Tenant, m.Device)
	sample := func(property string, part seriesPart, t int64, v float64) {
		ls, err := p.labelSets.get(dev, property, part)
		if err != nil {
			st.add(1, err.Error())
			return
		}
		samples = append(samples, tsdb.PreparedSample{Labels: ls, T: t, V: v})
	}
	for i := range m.Records {
		r := &m.Records[i]
		switch r.Kind {
		case ingest.KindFloat:
			sample(r.Property, partValue, r.Time, r.Float)
		case ingest.KindBool:
			v := 0.0
			if r.Bool {
				v = 1
			}
			sample(r.Property, partValue, r.Time, v)
		case ingest.KindPosition:
			sample(r.Property, partLat, r.Time, r.Lat)
			sample(r.Property, partLon, r.Time, r.Lon)
			if r.HasAlt {
				sample(r.Property, partAlt, r.Time, r.Alt)
			}
		case ingest.KindString:
			values = append(values, eventstore.Value{Tenant: m.Tenant, Device: m.Device, Property: r.Property, Time: r.Time, Kind: "string", Text: r.String})
		case ingest.KindData:
			values = append(values, eventstore.Value{Tenant: m.Tenant, Device: m.Device, Property: r.Property, Time: r.Time, Kind: "data", Text: base64.StdEncoding.EncodeToString(r.Data)})
		}
	}
	return samples, events, values
}

// seriesPart says which series of a property a sample belongs to: its
// value, or a coordinate of a position (metric name suffixed _lat, _lon, _alt).
type seriesPart uint8

const (
	partValue seriesPart = iota
	partLat
	partLon
	partAlt
)

var partSuffix = [...]string{partValue: "", partLat: "_lat", partLon: "_lon", partAlt: "_alt"}

// labelSets caches the prepared label set of each series the store loop
// appends to, by device and then by property, so that a message costs one
// lookup by device and one by property name per value.
type labelSets struct {
	devices map[string]*deviceSets
	n       int // label sets held, for the bound
}

type deviceSets struct {
	tenant, device string
	props          map[propKey]*tsdb.LabelSet
}

type propKey struct {
	property string
	part     seriesPart
}

// maxLabelSets bounds the label set cache; beyond it the cache is emptied
// and filled again, at the price of rebuilding label sets.
const maxLabelSets = 1 << 16

// device returns the device's entry, made if new. Its keys are copies: the
// strings given may point into a whole decoded batch.
func (c *labelSets) device(tenant, device string) *deviceSets {
	d := c.devices[device]
	if d != nil {
		if d.tenant == tenant {
			return d
		}
		c.n -= len(d.props) // a code names one tenant's device; not seen in practice
	}
	if c.devices == nil || c.n >= maxLabelSets {
		c.devices, c.n = make(map[string]*deviceSets), 0
	}
	d = &deviceSets{tenant: strings.Clone(tenant), device: strings.Clone(device), props: make(map[propKey]*tsdb.LabelSet)}
	c.devices[d.device] = d
	return d
}

// get returns the label set of one series of the device, made once.
func (c *labelSets) get(d *deviceSets, property string, part seriesPart) (*tsdb.LabelSet, error) {
	if ls, ok := d.props[propKey{property, part}]; ok {
		return ls, nil
	}
	ls, err := tsdb.NewLabelSet(map[string]string{"__name__": property + partSuffix[part], "tenant": d.tenant, "device": d.device})
	if err != nil {
		return nil, err
	}
	d.props[propKey{strings.Clone(property), part}] = ls
	c.n++
	return ls, nil
}

func eventTime(m *ingest.Message) int64 {
	if len(m.Records) > 0 && m.Records[0].Time != 0 {
		return m.Records[0].Time
	}
	return m.Received
}

// DeadLetter is a rejected device message as stored in the dead-letter stream.
type DeadLetter struct {
	Time        time.Time     `json:"time"`
	Tenant      string        `json:"tenant"`
	Device      string        `json:"device"`
	Source      string        `json:"source"`
	Topic       string        `json:"topic,omitempty"`
	ContentType string        `json:"content_type,omitempty"`
	Reason      ingest.Reason `json:"reason"`
	Message     string        `json:"message"`
	Payload     []byte        `json:"payload"` // base64 in JSON
}

// keepRefused turns samples the store refused after their message was
// acknowledged into dead letters, so that no value a device sent is lost
// without a trace. A batch redelivered after a crash may add them again.
func (p *Pipeline) keepRefused(ctx context.Context, samples []tsdb.PreparedSample, rejects []tsdb.Reject) {
	for _, r := range rejects {
		if r.Index < 0 || r.Index >= len(samples) || samples[r.Index].Labels == nil {
			continue
		}
		s := samples[r.Index]
		body, err := json.Marshal(map[string]any{
			"property": s.Labels.Get("__name__"), "time": time.UnixMilli(s.T).UTC(), "value": s.V,
		})
		if err != nil {
			continue // a NaN or Inf value cannot be written as JSON; counted above
		}
		if err := p.Reject(ctx, DeadLetter{
			Tenant: s.Labels.Get("tenant"), Device: s.Labels.Get("device"), Source: "store",
			ContentType: ingest.ContentJSON, Reason: ingest.StoreRefused, Message: r.Reason, Payload: body,
		}); err != nil {
			p.log.Warn("refused sample not kept as a dead letter", "device", s.Labels.Get("device"), "err", err)
		}
	}
}

// Reject stores a rejected message in the dead-letter stream and counts it.
func (p *Pipeline) Reject(ctx context.Context, dl DeadLetter) error {
	if dl.Time.IsZero() {
		dl.Time = time.Now().UTC()
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("pipeline: dead letter: %w", err)
	}
	tenant, id := splitCode(dl.Device)
	if err := p.opts.Bus.PublishDeadLetter(ctx, tenant, id, b); err != nil {
		return err
	}
	p.m.deadLetters.WithLabelValues(string(dl.Reason)).Inc()
	return nil
}

// DeadLetters lists the newest dead letters of a device, a tenant or all.
func (p *Pipeline) DeadLetters(ctx context.Context, tenant, device string, limit int) ([]DeadLetter, error) {
	id := ""
	if device != "" {
		tenant, id = splitCode(device)
	}
	raw, err := p.opts.Bus.DeadLetters(ctx, tenant, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, 0, len(raw))
	for _, b := range raw {
		var dl DeadLetter
		if err := json.Unmarshal(b, &dl); err != nil {
			p.log.Warn("unreadable dead letter skipped", "err", err)
			continue
		}
		out = append(out, dl)
	}
	return out, nil
}

func splitCode(c string) (string, string) {
	for i := 0; i < len(c); i++ {
		if c[i] == ':' {
			return c[:i], c[i+1:]
		}
	}
	return "", c
}

// Shutdown stops accepting messages, flushes what waits, and lets the store
// loop write and commit what was made durable.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || !p.started {
		p.closed = true
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.reqs) // batchers drain the queue, then exit
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.batchers.Wait()
		for _, l := range p.loops {
			close(l.queue) // each loop consumes what is left, commits, and exits
		}
		p.consumers.Wait()
		p.cancel()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Stop reading back and committing, and still wait: the stores
		// are closed after this returns, and must not be written then.
		// What was not committed stays in the stream and is read back at
		// the next start.
		p.cancel()
		<-done
		return fmt.Errorf("pipeline: shutdown: %w", ctx.Err())
	}
}
