package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/wanwu-iot/wanwu/internal/diskguard"
	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// The store loop writes what the batchers made durable into the stores.
// It takes each batch from its batcher, still decoded, in stream order; a
// batch it did not get that way (the hand-over queue was full, the batch
// was stored under an earlier process, or its acknowledgement was lost) it
// reads back from the stream, which is the stores' write-ahead log. Taking
// the batches from the batchers spares what a JetStream consumer costs per
// batch: a pull request, a delivery, a subscription, an acknowledgement and
// decoding, each a hand-off between goroutines; with 100 CoAP devices those
// hand-offs were most of the hub's goroutine switches.

// durableBatch is a batch the bus acknowledged, on its way from its batcher
// to the store loop.
type durableBatch struct {
	seq  uint64
	msgs []ingest.Message
}

// storeQueue bounds the batches waiting for the store loop; beyond it the
// batchers leave them for the store loop to read back from the stream.
const storeQueue = 64

// maxStoreGroup bounds the batches written to the stores at once.
const maxStoreGroup = 64

// catchUpCheck is how often an idle store loop looks for batches it was not
// handed.
const catchUpCheck = time.Second

// legacyConsumer is the durable consumer that fed the stores before the
// cursor file; its acknowledgement floor is the cursor of a data directory
// written by such a hub.
const legacyConsumer = "stores"

// maxKeptMessages bounds the message slices kept for reuse, and
// spareSlices how many are kept: batches in the store queue hold their own.
const (
	maxKeptMessages = 4096
	spareSlices     = 8
)

// messageSlice returns an empty slice for a batch's messages.
func (p *Pipeline) messageSlice() []ingest.Message {
	select {
	case s := <-p.spare:
		return s
	default:
		return make([]ingest.Message, 0, 64)
	}
}

// recycle hands the messages' records back for reuse, and the slice: no
// one reads them once the stores have the batch.
func (p *Pipeline) recycle(msgs []ingest.Message) {
	for i := range msgs {
		ingest.ReleaseRecords(msgs[i].Records)
	}
	clear(msgs)
	if cap(msgs) > maxKeptMessages {
		return
	}
	select {
	case p.spare <- msgs[:0]:
	default:
	}
}

// handOver gives a durable batch to the store loop without waiting for it.
func (p *Pipeline) handOver(b durableBatch) {
	select {
	case p.durable <- b:
	default:
		// The stores are behind: they read this batch back from the stream.
		p.recycle(b.msgs)
	}
}

// storeLoop runs until the batchers are done (p.durable is closed) or ctx
// ends: it reads back what the stream holds beyond the cursor, then writes
// the batches it is handed, and commits every CommitEvery.
func (p *Pipeline) storeLoop(ctx context.Context) {
	defer p.closeCursor()
	// behind: the last read back failed, so the loop tries again when idle.
	behind := !p.catchUp(ctx, 0)
	commit := time.NewTimer(time.Hour)
	commit.Stop()
	defer commit.Stop()
	armed := false
	check := time.NewTicker(catchUpCheck)
	defer check.Stop()
	lastChecked := p.applied.Load()
	group := make([]durableBatch, 0, maxStoreGroup)
	for {
		select {
		case b, ok := <-p.durable:
			if !ok {
				p.finish(ctx)
				return
			}
			group = append(group[:0], b)
			open := true
		more:
			for len(group) < maxStoreGroup {
				select {
				case b, ok := <-p.durable:
					if !ok {
						open = false
						break more
					}
					group = append(group, b)
				default:
					break more
				}
			}
			p.apply(ctx, group)
			clear(group)
			if !open {
				p.finish(ctx)
				return
			}
		case <-commit.C:
			armed = false
			p.commit()
		case <-check.C:
			// Batches published but never handed over (the queue was full,
			// or the store failed) are read back once the loop is idle.
			if applied := p.applied.Load(); behind || applied == lastChecked && p.published.Load() > applied {
				behind = !p.catchUp(ctx, 0)
			}
			lastChecked = p.applied.Load()
		case <-ctx.Done():
			p.commit()
			return
		}
		if !armed && p.applied.Load() > p.committed {
			commit.Reset(p.opts.CommitEvery)
			armed = true
		}
	}
}

// finish writes what the stream holds beyond the stores, briefly, and
// commits: what it does not reach is read back after the next start.
func (p *Pipeline) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if p.published.Load() > p.applied.Load() {
		p.catchUp(ctx, 0)
	}
	p.commit()
}

// apply writes a group of handed-over batches, in stream order, with any
// batches between them read back from the stream.
func (p *Pipeline) apply(ctx context.Context, group []durableBatch) {
	defer func() {
		for _, b := range group {
			p.recycle(b.msgs)
		}
	}()
	upto := p.applied.Load()
	for _, b := range group {
		if b.seq <= upto {
			continue // read back already
		}
		if b.seq > upto+1 {
			reached, err := p.readBack(ctx, upto+1, b.seq-1)
			if err != nil {
				p.log.Warn("reading ingest batches back from the stream failed; will retry", "from", upto+1, "to", b.seq-1, "err", err)
				// What came before the batch that failed is good to keep.
				if p.writeRows(ctx) == nil {
					p.applied.Store(reached)
				}
				return
			}
			upto = reached
		}
		p.addMessages(b.msgs)
		upto = b.seq
	}
	if err := p.writeRows(ctx); err != nil {
		p.log.Warn("writing ingest batches to the stores failed; will read them back and retry", "through", upto, "err", err)
		return
	}
	p.applied.Store(upto)
}

// catchUp reads back and writes the batches from the one after the stores'
// through to (0: the stream's last), and reports whether it got there.
func (p *Pipeline) catchUp(ctx context.Context, to uint64) bool {
	from := p.applied.Load() + 1
	n := 0
	reached, err := p.opts.Bus.ReadIngest(ctx, from, to, func(seq uint64, batch []byte) error {
		p.addEncoded(batch)
		// Counted before its rows are written, as readBack counts: whoever
		// sees the rows sees the count.
		p.m.readBack.Inc()
		if n++; n%maxStoreGroup == 0 {
			if err := p.writeRows(ctx); err != nil {
				return err
			}
			p.applied.Store(seq)
		}
		return nil
	})
	if err == nil {
		err = p.writeRows(ctx)
	}
	if err != nil {
		p.resetRows()
		if ctx.Err() == nil {
			p.log.Warn("reading ingest batches back from the stream failed; will retry", "from", from, "err", err)
		}
		return false
	}
	p.applied.Store(max(reached, p.applied.Load()))
	if n > 0 {
		p.log.Info("ingest batches read back from the stream into the stores", "batches", n, "from", from, "through", reached)
	}
	return true
}

// readBack adds the rows of batches from through to, read from the stream;
// it returns the sequence it read through.
func (p *Pipeline) readBack(ctx context.Context, from, to uint64) (uint64, error) {
	n := 0
	reached, err := p.opts.Bus.ReadIngest(ctx, from, to, func(_ uint64, batch []byte) error {
		p.addEncoded(batch)
		n++
		return nil
	})
	p.m.readBack.Add(float64(n))
	return reached, err
}

// commit makes what the stores wrote durable and moves the cursor past it.
func (p *Pipeline) commit() {
	applied := p.applied.Load()
	if applied <= p.committed {
		return
	}
	// Events and values are durable when written (the event store syncs
	// each transaction); samples once the time-series store's log is.
	if err := p.opts.TSDB.Sync(); err != nil {
		p.noSpace("tsdb", err)
		p.log.Warn("committing the time-series store failed; will retry", "err", err)
		return
	}
	if p.cursor != nil {
		if err := p.cursor.save(applied); err != nil {
			p.log.Warn("saving the ingest cursor failed; will retry", "err", err)
			return
		}
	}
	p.committed = applied
}

// noSpace tells Options.OnNoSpace of a store's write that failed for lack
// of disk space. The batches stay in the stream: the stores read them back
// once they write again.
func (p *Pipeline) noSpace(store string, err error) {
	if p.opts.OnNoSpace != nil && diskguard.IsNoSpace(err) {
		p.opts.OnNoSpace(store, err)
	}
}

// addEncoded adds the rows of a batch read back from the stream.
func (p *Pipeline) addEncoded(batch []byte) {
	msgs, err := p.reader.Decode(batch)
	if err != nil {
		// A batch this hub wrote and cannot read is a bug, not a reason to
		// block the stream forever: log it loudly and move on.
		p.log.Error("undecodable ingest batch skipped", "bytes", len(batch), "err", err)
		return
	}
	p.addMessages(msgs)
}

// addMessages adds the rows of a batch's messages.
func (p *Pipeline) addMessages(msgs []ingest.Message) {
	for i := range msgs {
		p.samples, p.events, p.values = p.appendStored(p.samples, p.events, p.values, &msgs[i], &p.rejects)
	}
}

// writeRows writes the rows added since the last call into the stores and
// empties them, written or not.
func (p *Pipeline) writeRows(ctx context.Context) error {
	defer p.resetRows()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if len(p.samples) > 0 {
		// Durable at the next commit (Options.CommitEvery).
		n, rejects, err := p.opts.TSDB.AppendPreparedNoSync(ctx, p.samples)
		if err != nil {
			p.noSpace("tsdb", err)
			return fmt.Errorf("pipeline: tsdb: %w", err)
		}
		p.m.stored.WithLabelValues("tsdb").Add(float64(n))
		if len(rejects) > 0 {
			p.rejects.add(len(rejects), rejects[0].Reason)
			p.keepRefused(ctx, p.samples, rejects)
		}
	}
	if st := p.rejects; st.n > 0 {
		p.m.storeReject.WithLabelValues("tsdb").Add(float64(st.n))
		p.log.Warn("time-series store refused samples", "count", st.n, "first", st.first)
	}
	if err := p.opts.Events.Write(ctx, p.events, p.values); err != nil {
		p.noSpace("events", err)
		return fmt.Errorf("pipeline: events: %w", err)
	}
	p.m.stored.WithLabelValues("events").Add(float64(len(p.events)))
	p.m.stored.WithLabelValues("values").Add(float64(len(p.values)))
	return nil
}

// resetRows empties the row buffers, keeping their memory.
func (p *Pipeline) resetRows() {
	p.samples, p.events, p.values = keep(p.samples), keep(p.events), keep(p.values)
	p.rejects = storeRejects{}
}

// maxKeptRows bounds the rows the store loop keeps buffers for between calls.
const maxKeptRows = 1 << 16

// keep empties a buffer for reuse, or drops it when a rare large call grew it.
func keep[T any](s []T) []T {
	if cap(s) > maxKeptRows {
		return nil
	}
	clear(s)
	return s[:0]
}

// storeRejects counts the samples the time-series store refused, with the
// first reason.
type storeRejects struct {
	n     int
	first string
}

func (r *storeRejects) add(n int, reason string) {
	if r.n == 0 {
		r.first = reason
	}
	r.n += n
}

// openCursor reads where the stores are: the cursor file's sequence; for a
// data directory without one, the acknowledgement floor of the consumer
// that fed the stores before it (which is removed); otherwise nothing, and
// the store loop reads the whole stream back.
func (p *Pipeline) openCursor(ctx context.Context) error {
	var seq uint64
	found := false
	if p.opts.CursorFile != "" {
		c, s, ok, err := openCursorFile(p.opts.CursorFile)
		if errors.Is(err, errCursorCorrupt) {
			p.log.Warn("ingest cursor unreadable; the stores read the whole stream back", "file", p.opts.CursorFile, "err", err)
		} else if err != nil {
			return err
		}
		p.cursor, seq, found = c, s, ok
	}
	floor, ok, err := p.opts.Bus.DropIngestConsumer(ctx, legacyConsumer)
	if err != nil {
		p.closeCursor()
		return fmt.Errorf("pipeline: %w", err)
	}
	if ok && !found {
		seq = floor
	}
	p.applied.Store(seq)
	p.published.Store(seq)
	p.committed = seq
	return nil
}

func (p *Pipeline) closeCursor() {
	if p.cursor != nil {
		_ = p.cursor.f.Close()
		p.cursor = nil
	}
}

// cursorFile holds one record, rewritten in place at each commit: a magic,
// the sequence, and a CRC-32C of both. It is not synced: it is written only
// after the stores' own sync, so a record lost in a power failure only
// means more batches are read back, and one that is torn fails its check.
type cursorFile struct {
	f   *os.File
	rec [cursorSize]byte
}

const cursorSize = 16

var cursorMagic = [4]byte{'w', 'w', 'c', '1'}

var errCursorCorrupt = errors.New("pipeline: ingest cursor corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openCursorFile opens (or creates) the cursor file and reads its sequence;
// found is false for a new, empty file. A corrupt record comes back as
// errCursorCorrupt with the file open, to be overwritten.
func openCursorFile(path string) (c *cursorFile, seq uint64, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, false, fmt.Errorf("pipeline: ingest cursor: %w", err)
	}
	c = &cursorFile{f: f}
	n, err := f.ReadAt(c.rec[:], 0)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return c, 0, false, nil
	case err != nil && !errors.Is(err, io.EOF):
		f.Close()
		return nil, 0, false, fmt.Errorf("pipeline: ingest cursor: %w", err)
	case n != cursorSize || [4]byte(c.rec[:4]) != cursorMagic ||
		binary.BigEndian.Uint32(c.rec[12:]) != crc32.Checksum(c.rec[:12], castagnoli):
		return c, 0, false, fmt.Errorf("%w: %s", errCursorCorrupt, path)
	}
	return c, binary.BigEndian.Uint64(c.rec[4:12]), true, nil
}

func (c *cursorFile) save(seq uint64) error {
	copy(c.rec[:4], cursorMagic[:])
	binary.BigEndian.PutUint64(c.rec[4:12], seq)
	binary.BigEndian.PutUint32(c.rec[12:], crc32.Checksum(c.rec[:12], castagnoli))
	if _, err := c.f.WriteAt(c.rec[:], 0); err != nil {
		return fmt.Errorf("pipeline: ingest cursor: %w", err)
	}
	return nil
}
