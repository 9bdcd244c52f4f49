package device

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func mustOpen(t *testing.T, dir string, max int64) *buffer {
	t.Helper()
	b, err := openBuffer(dir, max, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.close() })
	return b
}

func queued(b *buffer) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, p := range b.queue {
		out = append(out, fmt.Sprintf("%d:%s", p.seq, p.payload))
	}
	return out
}

func same(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// TestBufferSurvivesReopen: what was appended and not finished is there
// after a reopen, in order, with the sequence numbers going on.
func TestBufferSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir, 0)
	for _, p := range []string{"a", "b", "c", "d"} {
		if _, err := b.append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.finish(2); err != nil {
		t.Fatal(err)
	}
	if err := b.finish(1); err != nil {
		t.Fatal(err)
	}
	b.close()
	b = mustOpen(t, dir, 0)
	if got, want := queued(b), []string{"3:c", "4:d"}; !same(got, want) {
		t.Fatalf("after reopen %v, want %v", got, want)
	}
	if seq, _ := b.append([]byte("e")); seq != 5 {
		t.Errorf("next seq %d, want 5", seq)
	}
	b.finish(3)
	b.finish(4)
	b.finish(5)
	if fi, _ := os.Stat(filepath.Join(dir, bufferFileName)); fi.Size() != int64(len(bufferMagic)) {
		t.Errorf("an empty buffer's file holds %d bytes", fi.Size())
	}
}

// TestBufferTornTail: a crash in the middle of a write leaves part of an
// entry; the entries before it are kept and the torn one is cut off, so
// the next append follows a whole entry.
func TestBufferTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(whole []byte) []byte
	}{
		{"half an entry", func(w []byte) []byte { return w[:len(w)/2] }},
		{"only a header", func(w []byte) []byte { return w[:entryHeaderSize-2] }},
		{"bad checksum", func(w []byte) []byte { w = bytes.Clone(w); w[len(w)-1] ^= 1; return w }},
		{"garbage", func([]byte) []byte { return []byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := mustOpen(t, dir, 0)
			b.append([]byte("kept"))
			b.close()
			f, err := os.OpenFile(filepath.Join(dir, bufferFileName), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail(appendEntry(nil, entry{kind: entryData, seq: 2, payload: []byte("torn")})))
			f.Close()
			b = mustOpen(t, dir, 0)
			if got := queued(b); !same(got, []string{"1:kept"}) {
				t.Fatalf("after a torn write %v", got)
			}
			b.append([]byte("next"))
			b.close()
			b = mustOpen(t, dir, 0)
			if got := queued(b); !same(got, []string{"1:kept", "2:next"}) {
				t.Fatalf("after the next append %v", got)
			}
		})
	}
}

// TestBufferBound: over its bound the buffer refuses, and takes again once
// the hub acknowledged something.
func TestBufferBound(t *testing.T) {
	b := mustOpen(t, t.TempDir(), 3*(entryHeaderSize+8+10))
	for range 3 {
		if _, err := b.append(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.append(make([]byte, 10)); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("fourth append: %v, want ErrBufferFull", err)
	}
	b.finish(1)
	if _, err := b.append(make([]byte, 10)); err != nil {
		t.Fatalf("after an acknowledgement: %v", err)
	}
}

// TestBufferCompacts: finished entries do not pile up in the file.
func TestBufferCompacts(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir, 0)
	first, _ := b.append([]byte("first, never acknowledged"))
	payload := bytes.Repeat([]byte("x"), 4096)
	for range 1000 {
		seq, err := b.append(payload)
		if err != nil {
			t.Fatal(err)
		}
		b.finish(seq)
	}
	fi, _ := os.Stat(filepath.Join(dir, bufferFileName))
	if fi.Size() > 2<<20 {
		t.Errorf("file of %d bytes for one pending message", fi.Size())
	}
	b.close()
	b = mustOpen(t, dir, 0)
	if got := queued(b); !same(got, []string{fmt.Sprintf("%d:first, never acknowledged", first)}) {
		t.Errorf("after compaction %v", got)
	}
}

func TestDecodeEntry(t *testing.T) {
	data := appendEntry(nil, entry{kind: entryData, seq: 7, payload: []byte(`[{"n":"x","v":1}]`)})
	done := appendEntry(nil, entry{kind: entryDone, seq: 7})
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"data", data, nil},
		{"done", done, nil},
		{"empty", nil, io.ErrUnexpectedEOF},
		{"short body", data[:len(data)-1], io.ErrUnexpectedEOF},
		{"unknown kind", append([]byte{3}, data[1:]...), errCorrupt},
		{"done with a payload", append([]byte{entryDone}, data[1:]...), errCorrupt},
		{"body under 8 bytes", []byte{1, 0, 0, 0, 7, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}, errCorrupt},
		{"huge length", []byte{1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, errCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, n, err := decodeEntry(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err == nil && (n != len(tc.in) || !bytes.Equal(appendEntry(nil, e), tc.in)) {
				t.Errorf("decoded %+v (%d bytes) does not encode back", e, n)
			}
		})
	}
}

// FuzzDecodeEntry: any bytes decode to entries or stop with an error,
// never a panic, and what decodes encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(appendEntry(nil, entry{kind: entryData, seq: 1, payload: []byte(`[{"bn":"acme:x/","n":"t","v":1}]`)}))
	f.Add(appendEntry(appendEntry(nil, entry{kind: entryData, seq: 2, payload: []byte("p")}), entry{kind: entryDone, seq: 2}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, good := decodeAll(b)
		if good > len(b) {
			t.Fatalf("decoded %d of %d bytes", good, len(b))
		}
		var again []byte
		for _, e := range entries {
			again = appendEntry(again, e)
		}
		if !bytes.Equal(again, b[:good]) {
			t.Fatalf("entries do not encode back to the bytes they came from")
		}
	})
}
