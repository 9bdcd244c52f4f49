package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// The ingest stream is a write-ahead log with named consumers: the stores
// (always), and whatever else registers (later the edge's forwarder to the
// hub, loops, exports). Each consumer runs a loop of its own that takes the
// batches its batcher made durable, still decoded, in stream order; a batch
// it did not get that way (its queue was full, the batch was stored under an
// earlier process, or its acknowledgement was lost) it reads back from the
// stream. A cursor file per consumer says up to which batch the consumer's
// own writes are durable; after a restart the loop reads back the batches
// after it. Taking the batches from the batchers spares what a JetStream
// consumer costs per batch: a pull request, a delivery, a subscription, an
// acknowledgement and decoding, each a hand-off between goroutines; with 100
// CoAP devices those hand-offs were most of the hub's goroutine switches.
//
// The stream keeps batches for bus.Options.IngestMaxAge and IngestMaxBytes,
// whether or not every consumer has them: a consumer that falls behind the
// retention window loses the batches that expired, and its loop logs the
// exact range as an error and counts it (wanwu_consumer_lost_batches_total),
// never skipping silently.

// A Consumer takes the ingest log's batches. A loop of the pipeline calls
// it, from one goroutine: Add with each batch's messages, in stream order,
// then Write, then, every Options.CommitEvery, Commit. A batch may be added
// again after an error or a crash, so what a consumer does must be
// idempotent by record (device, property, time) or by batch sequence.
type Consumer interface {
	// Add takes the messages of one batch. They, and their records, are
	// valid only until Add returns (they return to a pool): copy what is
	// kept.
	Add(msgs []ingest.Message)
	// Write does the work for what Add took since the last Write, and
	// forgets it whether or not it succeeded: on an error the loop adds
	// those batches again, read back from the stream.
	Write(ctx context.Context) error
	// Commit makes what was written durable; the consumer's cursor moves
	// past it afterwards.
	Commit(ctx context.Context) error
}

// SeqConsumer is a Consumer told the stream sequence of each batch it is
// added: one that keeps what it did per batch (the edge's forwarder, which
// appends to outboxes that outlive its cursor) skips what it already has.
type SeqConsumer interface {
	Consumer
	// AddSeq is Add with the batch's sequence in the ingest log; the loop
	// calls it instead of Add, in sequence order.
	AddSeq(seq uint64, msgs []ingest.Message)
}

// ConsumerOptions configure a consumer's loop.
type ConsumerOptions struct {
	// Name names the consumer in logs and metrics (label "consumer").
	Name string
	// CursorFile keeps the stream sequence of the last batch the consumer
	// committed; "" keeps it in memory, and every start reads back all the
	// stream retains. A new cursor file starts at the stream's beginning.
	CursorFile string
	// Filter, when set, passes the consumer only the messages it accepts
	// (by tenant and device); the cursor still moves over every batch.
	Filter func(tenant, device string) bool
	// legacyConsumer names a JetStream durable consumer whose
	// acknowledgement floor is the cursor of a data directory written
	// before the cursor file (the stores' only).
	legacyConsumer string
}

// durableBatch is a batch the bus acknowledged, on its way from its batcher
// to the consumers' loops; the last loop done with it recycles its messages.
type durableBatch struct {
	seq  uint64
	msgs []ingest.Message
	refs atomic.Int32
}

var batchPool = sync.Pool{New: func() any { return new(durableBatch) }}

// consumerQueue bounds the batches waiting for a consumer's loop; beyond
// it the batchers leave them for the loop to read back from the stream.
const consumerQueue = 64

// maxConsumeGroup bounds the batches added before one Write.
const maxConsumeGroup = 64

// catchUpCheck is how often an idle loop looks for batches it was not handed.
const catchUpCheck = time.Second

// legacyConsumer is the durable consumer that fed the stores before the
// cursor file; its acknowledgement floor is the cursor of a data directory
// written by such a hub.
const legacyConsumer = "stores"

// consumerLoop runs one consumer.
type consumerLoop struct {
	p     *Pipeline
	c     Consumer
	o     ConsumerOptions
	log   *slog.Logger
	queue chan *durableBatch
	// applied is the highest stream sequence the consumer holds (committed
	// or not); committed the one its cursor holds. Only the loop's
	// goroutine writes them.
	applied   atomic.Uint64
	committed uint64
	cursor    *cursorFile
	reader    ingest.BatchReader
	filtered  []ingest.Message
	// seqc is c when it is a SeqConsumer.
	seqc SeqConsumer

	readBack, lost prometheus.Counter
}

// consumerMetrics are the vectors every loop takes its counters from.
type consumerMetrics struct {
	lag      *prometheus.GaugeVec
	readBack *prometheus.CounterVec
	lost     *prometheus.CounterVec
}

func newConsumerMetrics() consumerMetrics {
	return consumerMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wanwu_consumer_lag_batches", Help: "Ingest batches made durable on the bus that a consumer (stores, ...) does not hold yet.",
		}, []string{"consumer"}),
		readBack: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_consumer_read_back_batches_total", Help: "Ingest batches a consumer read back from the stream (after a restart, or having fallen behind) rather than taking them from the batchers.",
		}, []string{"consumer"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_consumer_lost_batches_total", Help: "Ingest batches that expired from the stream (bus.ingest_max_age, bus.ingest_max_bytes) before a consumer had them.",
		}, []string{"consumer"}),
	}
}

// AddConsumer registers a consumer of the ingest log; it must be called
// before Start. Its loop starts with the pipeline, reads back what the
// stream holds after its cursor, and stops after the batchers on Shutdown.
func (p *Pipeline) AddConsumer(c Consumer, o ConsumerOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("pipeline: consumers are added before Start")
	}
	if o.Name == "" {
		return errors.New("pipeline: a consumer needs a name")
	}
	for _, l := range p.loops {
		if l.o.Name == o.Name {
			return fmt.Errorf("pipeline: a consumer named %q exists", o.Name)
		}
	}
	l := &consumerLoop{
		p: p, c: c, o: o, log: p.log.With("consumer", o.Name), queue: make(chan *durableBatch, consumerQueue),
		readBack: p.cm.readBack.WithLabelValues(o.Name), lost: p.cm.lost.WithLabelValues(o.Name),
	}
	l.seqc, _ = c.(SeqConsumer)
	p.loops = append(p.loops, l)
	return nil
}

// handOver gives a durable batch to every consumer's loop without waiting
// for any.
func (p *Pipeline) handOver(b *durableBatch) {
	b.refs.Store(int32(len(p.loops)))
	for _, l := range p.loops {
		select {
		case l.queue <- b:
		default:
			// This consumer is behind: it reads the batch back from the stream.
			p.release(b)
		}
	}
}

// release is a loop's end with a batch; the last one recycles it.
func (p *Pipeline) release(b *durableBatch) {
	if b.refs.Add(-1) == 0 {
		p.recycle(b.msgs)
		b.msgs, b.seq = nil, 0
		batchPool.Put(b)
	}
}

// lag is how many durable batches the consumer does not hold yet.
func (l *consumerLoop) lag() uint64 {
	pub, app := l.p.published.Load(), l.applied.Load()
	return pub - min(app, pub)
}

// run runs until the batchers are done (the queue is closed) or ctx ends:
// it reads back what the stream holds beyond the cursor, then consumes the
// batches it is handed, and commits every CommitEvery.
func (l *consumerLoop) run(ctx context.Context) {
	defer l.closeCursor()
	gauge := l.p.cm.lag.WithLabelValues(l.o.Name)
	// behind: the last read back failed, so the loop tries again when idle.
	behind := !l.catchUp(ctx, 0)
	commit := time.NewTimer(time.Hour)
	commit.Stop()
	defer commit.Stop()
	armed := false
	check := time.NewTicker(catchUpCheck)
	defer check.Stop()
	lastChecked := l.applied.Load()
	group := make([]*durableBatch, 0, maxConsumeGroup)
	for {
		select {
		case b, ok := <-l.queue:
			if !ok {
				l.finish(ctx)
				return
			}
			group = append(group[:0], b)
			open := true
		more:
			for len(group) < maxConsumeGroup {
				select {
				case b, ok := <-l.queue:
					if !ok {
						open = false
						break more
					}
					group = append(group, b)
				default:
					break more
				}
			}
			l.apply(ctx, group)
			clear(group)
			if !open {
				l.finish(ctx)
				return
			}
		case <-commit.C:
			armed = false
			l.commit(ctx)
		case <-check.C:
			// Batches published but never handed over (the queue was full,
			// or the consumer failed) are read back once the loop is idle.
			if applied := l.applied.Load(); behind || applied == lastChecked && l.p.published.Load() > applied {
				behind = !l.catchUp(ctx, 0)
			}
			lastChecked = l.applied.Load()
			gauge.Set(float64(l.lag()))
		case <-ctx.Done():
			l.commit(context.Background())
			return
		}
		if !armed && l.applied.Load() > l.committed {
			commit.Reset(l.p.opts.CommitEvery)
			armed = true
		}
	}
}

// finish consumes what the stream holds beyond the consumer, briefly, and
// commits: what it does not reach is read back after the next start.
func (l *consumerLoop) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if l.p.published.Load() > l.applied.Load() {
		l.catchUp(ctx, 0)
	}
	l.commit(ctx)
	l.p.cm.lag.WithLabelValues(l.o.Name).Set(float64(l.lag()))
}

// add passes a batch's messages, filtered, to the consumer.
func (l *consumerLoop) add(seq uint64, msgs []ingest.Message) {
	if l.o.Filter == nil {
		l.give(seq, msgs)
		return
	}
	f := l.filtered[:0]
	for i := range msgs {
		if l.o.Filter(msgs[i].Tenant, msgs[i].Device) {
			f = append(f, msgs[i])
		}
	}
	if len(f) > 0 {
		l.give(seq, f)
	}
	clear(f)
	l.filtered = f[:0]
}

func (l *consumerLoop) give(seq uint64, msgs []ingest.Message) {
	if l.seqc != nil {
		l.seqc.AddSeq(seq, msgs)
		return
	}
	l.c.Add(msgs)
}

// apply consumes a group of handed-over batches, in stream order, with any
// batches between them read back from the stream.
func (l *consumerLoop) apply(ctx context.Context, group []*durableBatch) {
	defer func() {
		for _, b := range group {
			l.p.release(b)
		}
	}()
	upto := l.applied.Load()
	for _, b := range group {
		if b.seq <= upto {
			continue // read back already
		}
		if b.seq > upto+1 {
			reached, err := l.readBackRange(ctx, upto+1, b.seq-1)
			if err != nil {
				l.log.Warn("reading ingest batches back from the stream failed; will retry", "from", upto+1, "to", b.seq-1, "err", err)
				// What came before the batch that failed is good to keep.
				if l.c.Write(ctx) == nil {
					l.applied.Store(reached)
				}
				return
			}
			upto = reached
		}
		l.add(b.seq, b.msgs)
		upto = b.seq
	}
	if err := l.c.Write(ctx); err != nil {
		l.log.Warn("a consumer's write failed; it will read the batches back and retry", "through", upto, "err", err)
		return
	}
	l.applied.Store(upto)
}

// catchUp reads back and consumes the batches from the one after the
// consumer's through to (0: the stream's last), and reports whether it got
// there.
func (l *consumerLoop) catchUp(ctx context.Context, to uint64) bool {
	from := l.applied.Load() + 1
	n := 0
	reached, err := l.p.opts.Bus.ReadIngest(ctx, from, to, l.lostRange, func(seq uint64, batch []byte) error {
		l.addEncoded(seq, batch)
		// Counted before the batch is written, as readBackRange counts:
		// whoever sees its effect sees the count.
		l.readBack.Inc()
		if n++; n%maxConsumeGroup == 0 {
			if err := l.c.Write(ctx); err != nil {
				return err
			}
			l.applied.Store(seq)
		}
		return nil
	})
	// Whole batches were added: writing them is right even when reading
	// the next one failed.
	if werr := l.c.Write(ctx); werr != nil {
		err = errors.Join(err, werr)
	} else {
		l.applied.Store(max(reached, l.applied.Load()))
	}
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("reading ingest batches back from the stream failed; will retry", "from", from, "err", err)
		}
		return false
	}
	if n > 0 {
		l.log.Info("ingest batches read back from the stream", "batches", n, "from", from, "through", reached)
	}
	return true
}

// readBackRange adds the batches from through to, read from the stream;
// it returns the sequence it read through.
func (l *consumerLoop) readBackRange(ctx context.Context, from, to uint64) (uint64, error) {
	n := 0
	reached, err := l.p.opts.Bus.ReadIngest(ctx, from, to, l.lostRange, func(seq uint64, batch []byte) error {
		l.addEncoded(seq, batch)
		n++
		return nil
	})
	l.readBack.Add(float64(n))
	return reached, err
}

// lostRange reports batches that expired from the stream before the
// consumer had them.
func (l *consumerLoop) lostRange(from, to uint64) {
	l.lost.Add(float64(to - from + 1))
	l.log.Error("ingest batches expired from the stream before this consumer had them; raise bus.ingest_max_age or bus.ingest_max_bytes, or find why it fell behind",
		"first_lost", from, "last_lost", to, "batches", to-from+1)
}

// addEncoded adds a batch read back from the stream.
func (l *consumerLoop) addEncoded(seq uint64, batch []byte) {
	msgs, err := l.reader.Decode(batch)
	if err != nil {
		// A batch this hub wrote and cannot read is a bug, not a reason to
		// block the stream forever: log it loudly and move on.
		l.log.Error("undecodable ingest batch skipped", "bytes", len(batch), "err", err)
		return
	}
	l.add(seq, msgs)
}

// commit makes what the consumer wrote durable and moves the cursor past it.
func (l *consumerLoop) commit(ctx context.Context) {
	applied := l.applied.Load()
	if applied <= l.committed {
		return
	}
	if err := l.c.Commit(ctx); err != nil {
		l.log.Warn("a consumer's commit failed; will retry", "err", err)
		return
	}
	if l.cursor != nil {
		if err := l.cursor.save(applied); err != nil {
			l.log.Warn("saving the consumer's cursor failed; will retry", "err", err)
			return
		}
	}
	l.committed = applied
}

// openCursor reads where the consumer is: the cursor file's sequence; for
// the stores of a data directory without one, the acknowledgement floor of
// the consumer that fed them before it (which is removed); otherwise
// nothing, and the loop reads the whole stream back.
func (l *consumerLoop) openCursor(ctx context.Context) (uint64, error) {
	var seq uint64
	found := false
	if l.o.CursorFile != "" {
		c, s, ok, err := openCursorFile(l.o.CursorFile)
		if errors.Is(err, errCursorCorrupt) {
			l.log.Warn("consumer cursor unreadable; the consumer reads the whole stream back", "file", l.o.CursorFile, "err", err)
		} else if err != nil {
			return 0, err
		}
		l.cursor, seq, found = c, s, ok
	}
	if l.o.legacyConsumer != "" {
		floor, ok, err := l.p.opts.Bus.DropIngestConsumer(ctx, l.o.legacyConsumer)
		if err != nil {
			l.closeCursor()
			return 0, fmt.Errorf("pipeline: %w", err)
		}
		if ok && !found {
			seq = floor
		}
	}
	l.applied.Store(seq)
	l.committed = seq
	return seq, nil
}

func (l *consumerLoop) closeCursor() {
	if l.cursor != nil {
		_ = l.cursor.f.Close()
		l.cursor = nil
	}
}
