package senml

import (
	"fmt"
	"slices"
	"time"
)

// recBuilder collects one record's fields as a decoder meets them; both
// decoders share it so that JSON and CBOR agree on what a record may hold.
type recBuilder struct {
	r    Record
	st   *recStore
	seen uint32 // 1<<label for each label set
	// The unknown labels seen, to refuse duplicates: the first ones in an
	// array, so that a record with one or two (a vendor's extra field)
	// costs no allocation, the rest in a slice.
	unknown     [2]string
	nUnknown    int
	moreUnknown []string
}

func (b *recBuilder) store() *recStore {
	if b.st == nil {
		b.st = new(recStore)
	}
	return b.st
}

// Buffers lets a caller that decodes pack after pack reuse one pack's memory
// for the next: the records, their values and the resolved records. What
// its DecodeJSON, DecodeCBOR and Resolve return is valid until its next
// call (strings and decoded data are not reused: they stay valid). The zero
// value is ready; a Buffers is used by one goroutine at a time.
type Buffers struct {
	pack   Pack
	stores []recStore
	res    []Resolved
}

// DecodeJSON is the package's DecodeJSON, into bf's memory.
func (bf *Buffers) DecodeJSON(b []byte, lim Limits) (Pack, error) { return decodeJSON(b, lim, bf) }

// DecodeCBOR is the package's DecodeCBOR, into bf's memory.
func (bf *Buffers) DecodeCBOR(b []byte, lim Limits) (Pack, error) { return decodeCBOR(b, lim, bf) }

// Resolve is p.Resolve, into bf's memory.
func (bf *Buffers) Resolve(p Pack, now time.Time) ([]Resolved, error) { return p.resolve(now, bf) }

// keptRecords bounds the records a Buffers keeps memory for between packs.
const keptRecords = 256

// packFor returns an empty pack with room for n records.
func (bf *Buffers) packFor(n int) Pack {
	if bf == nil {
		return make(Pack, 0, n)
	}
	return reuse(&bf.pack, n)[:0]
}

// storesFor returns the pointer targets of n records at once; decoders hand
// record i &stores[i], so a pack costs at most one allocation for them all.
func (bf *Buffers) storesFor(n int) []recStore {
	if bf == nil {
		return make([]recStore, n)
	}
	return reuse(&bf.stores, n)
}

// resolvedFor returns an empty slice with room for n resolved records.
func (bf *Buffers) resolvedFor(n int) []Resolved {
	if bf == nil {
		return make([]Resolved, 0, n)
	}
	return reuse(&bf.res, n)[:0]
}

// reuse returns n zeroed elements of *buf's memory, or of a new slice when
// *buf has too little room; the new one is kept unless n is larger than
// keptRecords. Zeroed, so that nothing reused holds an earlier pack's
// strings alive.
func reuse[S ~[]E, E any](buf *S, n int) S {
	if cap(*buf) < n {
		s := make(S, n)
		if n <= keptRecords {
			*buf = s
		}
		return s
	}
	s := (*buf)[:n]
	clear(s)
	return s
}

// mark records that label li appeared, refusing a second appearance: with
// duplicates, two parsers (ours and whatever logged the payload) could
// honestly disagree about what the device sent.
func (b *recBuilder) mark(rec, li int) error {
	if b.seen&(1<<li) != 0 {
		return malformed(rec, labelNames[li], "label appears twice in one record")
	}
	b.seen |= 1 << li
	return nil
}

// markUnknown refuses a duplicate unknown label, for the same reason as
// mark: even an ignored field should have one meaning. Records rarely carry
// unknown labels, so a linear scan (at most maxFields) beats a map.
func (b *recBuilder) markUnknown(rec int, key string) error {
	first := b.unknown[:min(b.nUnknown, len(b.unknown))]
	if slices.Contains(first, key) || slices.Contains(b.moreUnknown, key) {
		return malformed(rec, key, "label appears twice in one record")
	}
	if b.nUnknown < len(b.unknown) {
		b.unknown[b.nUnknown] = key
	} else {
		b.moreUnknown = append(b.moreUnknown, key)
	}
	b.nUnknown++
	return nil
}

func isStringLabel(li int) bool {
	switch li {
	case lBn, lBu, lN, lU, lVs, lVd:
		return true
	}
	return false
}

func isNumberLabel(li int) bool {
	switch li {
	case lBt, lBv, lBs, lV, lS, lT, lUt:
		return true
	}
	return false
}

// setString stores a string field after checking its length (the caller has
// checked the type and UTF-8).
func (b *recBuilder) setString(rec, li int, s string, lim *Limits) error {
	max := lim.MaxNameLen
	if li == lVs || li == lVd {
		max = lim.MaxStringLen
	}
	if len(s) > max {
		return tooLarge(rec, labelNames[li], fmt.Sprintf("%d bytes, limit %d", len(s), max))
	}
	switch li {
	case lBn:
		b.r.BaseName = s
	case lBu:
		b.r.BaseUnit = s
	case lN:
		b.r.Name = s
	case lU:
		b.r.Unit = s
	case lVs:
		st := b.store()
		st.vs = s
		b.r.StringValue = &st.vs
	case lVd:
		if err := checkData(s); err != nil {
			return invalid(rec, "vd", err.Error())
		}
		st := b.store()
		st.vd = s
		b.r.DataValue = &st.vd
	}
	return nil
}

// setNumber stores a number field, refusing NaN and infinities, which no
// measurement is and which JSON cannot even carry back out.
func (b *recBuilder) setNumber(rec, li int, f float64) error {
	if !finite(f) {
		return invalid(rec, labelNames[li], "must be a finite number")
	}
	switch li {
	case lBt:
		b.r.BaseTime = f
	case lT:
		b.r.Time = f
	case lBv:
		st := b.store()
		st.bv = f
		b.r.BaseValue = &st.bv
	case lBs:
		st := b.store()
		st.bs = f
		b.r.BaseSum = &st.bs
	case lV:
		st := b.store()
		st.v = f
		b.r.Value = &st.v
	case lS:
		st := b.store()
		st.s = f
		b.r.Sum = &st.s
	case lUt:
		st := b.store()
		st.ut = f
		b.r.UpdateTime = &st.ut
	}
	return nil
}

func (b *recBuilder) setVersion(rec int, v uint64) error {
	if v < 1 || v > currentVersion {
		if v == 0 {
			return invalid(rec, "bver", "version must be a positive integer")
		}
		return invalid(rec, "bver", fmt.Sprintf("unsupported version %d (this decoder implements %d)", v, currentVersion))
	}
	st := b.store()
	st.bver = int(v)
	b.r.BaseVersion = &st.bver
	return nil
}

func (b *recBuilder) setBool(v bool) {
	st := b.store()
	st.vb = v
	b.r.BoolValue = &st.vb
}

// resets tracks which base fields are in effect with a non-empty value, so
// that a decoder can refuse an explicit reset that Record cannot represent.
type resets struct{ bn, bu, bt bool }

func (rs *resets) apply(rec int, b *recBuilder) error {
	if b.seen&(1<<lBn) != 0 {
		if b.r.BaseName == "" && rs.bn {
			return invalid(rec, "bn", "resetting the base name to \"\" is not supported; send the full name in n instead")
		}
		rs.bn = rs.bn || b.r.BaseName != ""
	}
	if b.seen&(1<<lBu) != 0 {
		if b.r.BaseUnit == "" && rs.bu {
			return invalid(rec, "bu", "resetting the base unit to \"\" is not supported")
		}
		rs.bu = rs.bu || b.r.BaseUnit != ""
	}
	if b.seen&(1<<lBt) != 0 {
		if b.r.BaseTime == 0 && rs.bt {
			return invalid(rec, "bt", "resetting the base time to 0 is not supported; send absolute times in t instead")
		}
		rs.bt = rs.bt || b.r.BaseTime != 0
	}
	return nil
}
