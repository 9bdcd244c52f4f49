package device

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// The buffer keeps what Publish accepted until the hub acknowledged it, in
// one append-only file, so that nothing is lost across reconnects, process
// restarts and power loss.
//
// File layout: the 4 bytes "WWB1", then entries, each
//
//	kind    1 byte   1 = data, 2 = done
//	length  4 bytes  big-endian, the body's length
//	crc     4 bytes  big-endian CRC-32C of kind, length and body
//	body    length bytes: the sequence number (8 bytes, big-endian), and for
//	        data the message (a SenML JSON pack)
//
// A data entry is synced before Publish waits for the hub; a done entry
// (acknowledged, or refused for good) is not: losing one in a crash only
// means that message is sent again, and the hub stores a record sent twice
// once, since it carries its time. Opening the file reads every entry; a
// torn or corrupt tail (a crash during a write) is cut off, since nothing
// after it was synced. When nothing is pending the file is emptied, and
// when finished entries make up most of it, it is rewritten with only the
// pending ones (to a new file, synced, renamed over the old).

const (
	bufferMagic     = "WWB1"
	bufferFileName  = "buffer.wwb"
	entryData       = 1
	entryDone       = 2
	entryHeaderSize = 9
	// maxEntryBody bounds one entry: a message is at most the hub's payload
	// limit (64 KiB by default); this leaves room for larger ones.
	maxEntryBody = 8 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks an entry that cannot be read: the end of the valid file.
var errCorrupt = errors.New("device: buffer entry corrupt or torn")

// entry is one record of the buffer file.
type entry struct {
	kind    byte
	seq     uint64
	payload []byte // data entries only
}

// appendEntry encodes e onto b.
func appendEntry(b []byte, e entry) []byte {
	n := 8 + len(e.payload)
	start := len(b)
	b = append(b, e.kind)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, 0, 0, 0, 0) // crc, below
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = append(b, e.payload...)
	crc := crc32.Update(0, crcTable, b[start:start+5])
	crc = crc32.Update(crc, crcTable, b[start+entryHeaderSize:])
	binary.BigEndian.PutUint32(b[start+5:], crc)
	return b
}

// decodeEntry reads the entry at the start of b and returns it with its size.
// It returns io.ErrUnexpectedEOF when b holds only part of an entry and
// errCorrupt when the bytes are not an entry; the payload aliases b.
func decodeEntry(b []byte) (entry, int, error) {
	if len(b) < entryHeaderSize {
		return entry{}, 0, io.ErrUnexpectedEOF
	}
	kind := b[0]
	n := binary.BigEndian.Uint32(b[1:5])
	if kind != entryData && kind != entryDone || n < 8 || n > maxEntryBody || kind == entryDone && n != 8 {
		return entry{}, 0, errCorrupt
	}
	if uint64(len(b)-entryHeaderSize) < uint64(n) {
		return entry{}, 0, io.ErrUnexpectedEOF
	}
	body := b[entryHeaderSize : entryHeaderSize+int(n)]
	crc := crc32.Update(0, crcTable, b[:5])
	crc = crc32.Update(crc, crcTable, body)
	if crc != binary.BigEndian.Uint32(b[5:9]) {
		return entry{}, 0, errCorrupt
	}
	e := entry{kind: kind, seq: binary.BigEndian.Uint64(body)}
	if kind == entryData {
		e.payload = body[8:]
	}
	return e, entryHeaderSize + int(n), nil
}

// pending is a message not yet finished.
type pending struct {
	seq     uint64
	payload []byte
}

// buffer is the durable queue of messages. It is safe for concurrent use.
type buffer struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	noSync  bool
	size    int64 // bytes in the file
	live    int64 // bytes of pending entries (their data entries)
	queue   []pending
	nextSeq uint64
	max     int64 // bound on live bytes; 0 = none
	mem     bool  // no file: the queue lives in memory only
	closed  bool
}

// ErrBufferFull is returned by Publish when the buffer holds
// Options.MaxBuffer bytes of unacknowledged messages.
var ErrBufferFull = errors.New("device: buffer full")

// openBuffer opens (creating) the buffer file in dir and reads what is
// pending in it.
func openBuffer(dir string, max int64, noSync bool) (*buffer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device: buffer: %w", err)
	}
	path := filepath.Join(dir, bufferFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device: buffer: %w", err)
	}
	b := &buffer{f: f, path: path, noSync: noSync, max: max, nextSeq: 1}
	if err := b.load(); err != nil {
		f.Close()
		return nil, err
	}
	return b, nil
}

// memoryBuffer is a buffer without a file, for devices that may lose what
// they did not send when they stop (simulated ones).
func memoryBuffer(max int64) *buffer {
	return &buffer{mem: true, max: max, nextSeq: 1}
}

// load reads the file, keeps the pending messages in order, and cuts off a
// torn tail.
func (b *buffer) load() error {
	data, err := io.ReadAll(bufio.NewReader(b.f))
	if err != nil {
		return fmt.Errorf("device: buffer: read %s: %w", b.path, err)
	}
	if len(data) < len(bufferMagic) || string(data[:len(bufferMagic)]) != bufferMagic {
		if len(data) > len(bufferMagic) {
			return fmt.Errorf("device: buffer: %s is not a buffer file", b.path)
		}
		// New, or torn while being created.
		return b.reset(nil)
	}
	entries, good := decodeAll(data[len(bufferMagic):])
	done := map[uint64]bool{}
	for _, e := range entries {
		if e.kind == entryDone {
			done[e.seq] = true
		}
	}
	var queue []pending
	for _, e := range entries {
		if e.seq >= b.nextSeq {
			b.nextSeq = e.seq + 1
		}
		if e.kind == entryData && !done[e.seq] {
			queue = append(queue, pending{seq: e.seq, payload: append([]byte(nil), e.payload...)})
		}
	}
	end := int64(len(bufferMagic) + good)
	if end < int64(len(data)) {
		if err := b.f.Truncate(end); err != nil {
			return fmt.Errorf("device: buffer: cut the torn tail of %s: %w", b.path, err)
		}
	}
	b.queue, b.size = queue, end
	for _, p := range queue {
		b.live += int64(entryHeaderSize + 8 + len(p.payload))
	}
	if _, err := b.f.Seek(end, io.SeekStart); err != nil {
		return fmt.Errorf("device: buffer: %w", err)
	}
	return b.compactLocked()
}

// decodeAll decodes entries until the first that cannot be read; good is
// the number of bytes they take.
func decodeAll(data []byte) (entries []entry, good int) {
	for good < len(data) {
		e, n, err := decodeEntry(data[good:])
		if err != nil {
			break
		}
		entries = append(entries, e)
		good += n
	}
	return entries, good
}

// append adds a message and returns its sequence number once it is in the
// file (and synced, unless noSync).
func (b *buffer) append(payload []byte) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrClosed
	}
	n := int64(entryHeaderSize + 8 + len(payload))
	if b.max > 0 && b.live+n > b.max {
		return 0, fmt.Errorf("%w: %d bytes waiting for the hub", ErrBufferFull, b.live)
	}
	seq := b.nextSeq
	if err := b.writeLocked(appendEntry(nil, entry{kind: entryData, seq: seq, payload: payload}), !b.noSync); err != nil {
		return 0, err
	}
	b.nextSeq++
	b.queue = append(b.queue, pending{seq: seq, payload: payload})
	b.live += n
	return seq, nil
}

// writeLocked appends bytes to the file. A failed write is cut off again, so
// that the next entry does not follow a torn one.
func (b *buffer) writeLocked(p []byte, sync bool) error {
	if b.mem {
		return nil
	}
	if _, err := b.f.Write(p); err != nil {
		_ = b.f.Truncate(b.size)
		_, _ = b.f.Seek(b.size, io.SeekStart)
		return fmt.Errorf("device: buffer: write: %w", err)
	}
	b.size += int64(len(p))
	if sync {
		if err := b.f.Sync(); err != nil {
			return fmt.Errorf("device: buffer: sync: %w", err)
		}
	}
	return nil
}

// oldest returns the oldest pending message.
func (b *buffer) oldest() (pending, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		return pending{}, false
	}
	return b.queue[0], true
}

// finish marks seq done (acknowledged, or refused for good).
func (b *buffer) finish(seq uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	i := 0
	for i < len(b.queue) && b.queue[i].seq != seq {
		i++
	}
	if i == len(b.queue) {
		return nil
	}
	b.live -= int64(entryHeaderSize + 8 + len(b.queue[i].payload))
	b.queue = append(b.queue[:i], b.queue[i+1:]...)
	if err := b.writeLocked(appendEntry(nil, entry{kind: entryDone, seq: seq}), false); err != nil {
		return err
	}
	return b.compactLocked()
}

// len is the number of pending messages.
func (b *buffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// compactLocked empties the file when nothing is pending, and rewrites it
// with only the pending messages when those are less than a quarter of it.
func (b *buffer) compactLocked() error {
	const minCompact = 1 << 20
	switch {
	case b.mem:
		return nil
	case len(b.queue) == 0 && b.size > int64(len(bufferMagic)):
		return b.reset(nil)
	case b.size > minCompact && b.live < b.size/4:
		return b.reset(b.queue)
	}
	return nil
}

// reset replaces the file with one holding only queue: written to a new
// file, synced, and renamed over the old one, so a crash leaves one of them.
func (b *buffer) reset(queue []pending) error {
	out := []byte(bufferMagic)
	for _, p := range queue {
		out = appendEntry(out, entry{kind: entryData, seq: p.seq, payload: p.payload})
	}
	tmp := b.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("device: buffer: %w", err)
	}
	if _, err := f.Write(out); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, b.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("device: buffer: rewrite: %w", err)
	}
	syncDir(filepath.Dir(b.path))
	if _, err := f.Seek(int64(len(out)), io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("device: buffer: %w", err)
	}
	b.f.Close()
	b.f, b.size = f, int64(len(out))
	return nil
}

// close closes the file; pending messages stay in it for the next open.
func (b *buffer) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.mem {
		b.closed = true
		return nil
	}
	b.closed = true
	return b.f.Close()
}

// syncDir makes a rename in dir durable (best effort: not every system
// lets a directory be synced).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
