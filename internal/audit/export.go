package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// exportEntry is one line of an export: the entry's fields for people and
// tools, and the leaf bytes that the tree actually commits to.
type exportEntry struct {
	Index   uint64          `json:"index"`
	Time    string          `json:"time"`
	Actor   string          `json:"actor"`
	Tenant  string          `json:"tenant"`
	Kind    string          `json:"kind"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
	Leaf    []byte          `json:"leaf"` // base64 by encoding/json
}

// MarshalExport encodes one entry for the API and for export files (one JSON
// object per line). leaf must be the entry's leaf bytes; a mismatch is
// refused rather than exported, since it would fail verification anyway.
func MarshalExport(e Entry, leaf []byte) ([]byte, error) {
	d, err := DecodeLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("audit: export entry %d: %w", e.Index, err)
	}
	if !sameEntry(d, e) {
		return nil, fmt.Errorf("%w: export entry %d does not match its leaf", ErrTampered, e.Index)
	}
	b, err := json.Marshal(exportEntry{
		Index: d.Index, Time: d.Time.Format(timeLayout), Actor: d.Actor, Tenant: d.Tenant,
		Kind: d.Kind, Subject: d.Subject, Data: d.Data, Leaf: leaf,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: export entry %d: %w", e.Index, err)
	}
	return b, nil
}

// ParseExport decodes one export line and returns the entry and its leaf
// bytes. The fields must agree with the leaf: otherwise a reader could be
// shown fields the tree never committed to.
func ParseExport(line []byte) (Entry, []byte, error) {
	var x exportEntry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&x); err != nil {
		return Entry{}, nil, fmt.Errorf("audit: export line: %w", err)
	}
	if dec.More() {
		return Entry{}, nil, errors.New("audit: export line: more than one JSON value")
	}
	e, err := DecodeLeaf(x.Leaf)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("audit: export line %d: %w", x.Index, err)
	}
	t, err := time.Parse(timeLayout, x.Time)
	if err != nil {
		return Entry{}, nil, fmt.Errorf("%w: export line %d: time %q does not match its leaf", ErrTampered, x.Index, x.Time)
	}
	data, err := canonicalObject(x.Data)
	if err != nil || len(x.Data) == 0 {
		return Entry{}, nil, fmt.Errorf("%w: export line %d: data does not match its leaf", ErrTampered, x.Index)
	}
	fields := Entry{Index: x.Index, Time: t, Actor: x.Actor, Tenant: x.Tenant, Kind: x.Kind, Subject: x.Subject, Data: data}
	if !sameEntry(fields, e) {
		return Entry{}, nil, fmt.Errorf("%w: export line %d: fields do not match its leaf", ErrTampered, x.Index)
	}
	return e, x.Leaf, nil
}

func sameEntry(a, b Entry) bool {
	if a.Index != b.Index || !a.Time.Equal(b.Time) || a.Actor != b.Actor || a.Tenant != b.Tenant ||
		a.Kind != b.Kind || a.Subject != b.Subject {
		return false
	}
	da, err1 := canonicalObject(a.Data)
	db, err2 := canonicalObject(b.Data)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

// maxExportLine bounds one export line: the largest leaf, base64-encoded,
// plus its fields repeated in the clear, with room for JSON escaping.
const maxExportLine = 16 * (MaxDataLen + 4*MaxFieldLen)

// VerifyExport checks an export (JSON lines, as MarshalExport writes, in index
// order from 0) against head: its first head.Size lines must be entries 0 to
// head.Size-1, each consistent with its leaf, and their leaves must produce
// head's root. Lines after those are not covered by head and are not read;
// blank lines are skipped.
func VerifyExport(r io.Reader, head SignedHead) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	t := newTreeBuilder()
	for t.size() < head.Size && sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		e, leaf, err := ParseExport(line)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				err = fmt.Errorf("%w: %w", ErrTampered, err)
			}
			return err
		}
		if e.Index != t.size() {
			return fmt.Errorf("%w: export has entry %d where %d belongs", ErrTampered, e.Index, t.size())
		}
		t.add(leaf)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit: read export: %w", err)
	}
	if t.size() < head.Size {
		return fmt.Errorf("%w: export has %d entries, head has size %d", ErrTampered, t.size(), head.Size)
	}
	if root := t.root(); !bytes.Equal(root, head.Root) {
		return fmt.Errorf("%w: export gives root %x, head at size %d has %x", ErrTampered, root, head.Size, head.Root)
	}
	return nil
}
