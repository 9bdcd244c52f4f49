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
	"github.com/wanwu-iot/wanwu/internal/eventstore"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// storesName is the consumer that writes the ingest log into the stores:
// the time-series store (numbers, booleans, positions) and the event store
// (events, strings, data).
const storesName = "stores"

// stores is the stores' consumer. Its rows are buffers reused from call to
// call by its loop's one goroutine.
type stores struct {
	p       *Pipeline
	samples []tsdb.PreparedSample
	events  []eventstore.Event
	values  []eventstore.Value
	rejects storeRejects
}

// Add maps the batch's messages onto the stores' rows.
func (s *stores) Add(msgs []ingest.Message) {
	for i := range msgs {
		s.samples, s.events, s.values = s.p.appendStored(s.samples, s.events, s.values, &msgs[i], &s.rejects)
	}
}

// Write writes the rows added since the last call into the stores and
// empties them, written or not.
func (s *stores) Write(ctx context.Context) error {
	p := s.p
	defer s.resetRows()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if len(s.samples) > 0 {
		// Durable at the next commit (Options.CommitEvery).
		n, rejects, err := p.opts.TSDB.AppendPreparedNoSync(ctx, s.samples)
		if err != nil {
			p.noSpace("tsdb", err)
			return fmt.Errorf("pipeline: tsdb: %w", err)
		}
		p.m.stored.WithLabelValues("tsdb").Add(float64(n))
		if len(rejects) > 0 {
			s.rejects.add(len(rejects), rejects[0].Reason)
			p.keepRefused(ctx, s.samples, rejects)
		}
	}
	if st := s.rejects; st.n > 0 {
		p.m.storeReject.WithLabelValues("tsdb").Add(float64(st.n))
		p.log.Warn("time-series store refused samples", "count", st.n, "first", st.first)
	}
	if err := p.opts.Events.Write(ctx, s.events, s.values); err != nil {
		p.noSpace("events", err)
		return fmt.Errorf("pipeline: events: %w", err)
	}
	p.m.stored.WithLabelValues("events").Add(float64(len(s.events)))
	p.m.stored.WithLabelValues("values").Add(float64(len(s.values)))
	return nil
}

// Commit makes the samples written durable: events and values are durable
// when written (the event store syncs each transaction), samples once the
// time-series store's log is.
func (s *stores) Commit(context.Context) error {
	if err := s.p.opts.TSDB.Sync(); err != nil {
		s.p.noSpace("tsdb", err)
		return fmt.Errorf("pipeline: tsdb: %w", err)
	}
	return nil
}

// resetRows empties the row buffers, keeping their memory.
func (s *stores) resetRows() {
	s.samples, s.events, s.values = keep(s.samples), keep(s.events), keep(s.values)
	s.rejects = storeRejects{}
}

// noSpace tells Options.OnNoSpace of a store's write that failed for lack
// of disk space. The batches stay in the stream: the stores read them back
// once they write again.
func (p *Pipeline) noSpace(store string, err error) {
	if p.opts.OnNoSpace != nil && diskguard.IsNoSpace(err) {
		p.opts.OnNoSpace(store, err)
	}
}

// maxKeptMessages bounds the message slices kept for reuse, and
// spareSlices how many are kept: batches in the consumers' queues hold their own.
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
// one reads them once every consumer has the batch.
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

// maxKeptRows bounds the rows the stores keep buffers for between calls.
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
