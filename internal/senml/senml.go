// Package senml decodes and encodes Sensor Measurement Lists (SenML, RFC 8428)
// in their JSON (application/senml+json) and CBOR (application/senml+cbor)
// forms, and resolves base fields into self-contained records.
//
// It sits on the hot path of device ingest and faces whatever a device, or an
// attacker holding a device's credentials, sends. So the decoders are strict
// and bounded: every input is checked against Limits before any work that
// grows with it, every rejection is an *Error naming the record and the SenML
// label at fault, and no input makes them panic (they are fuzzed). They are
// hand-written scanners rather than generic reflection-driven decoders
// because SenML's shape is fixed and small, and because a generic decoder
// cannot say which record was wrong, matches JSON keys case-insensitively
// ("N" would be taken for "n") and silently keeps the last of duplicate keys.
//
// A Pack returned by DecodeJSON or DecodeCBOR has passed the same RFC 8428
// checks that Resolve applies, so resolving it does not fail: a pack is
// refused whole, with its first fault, or accepted whole.
//
// Choices where RFC 8428 leaves room, each made so that bad data is refused
// with a reason rather than stored under a wrong name, time or value:
//
//   - A record carrying only base fields (bn, bt, bu, bv, bs, bver) sets
//     context for later records and resolves to nothing, as in the RFC's
//     §5.1.7 example; any other record needs exactly one of v, vs, vb, vd, or
//     an s of its own (§4.2).
//   - Record cannot tell an absent bn, bu or bt from an explicitly empty or
//     zero one, so a record that would reset a base already in effect to ""
//     or 0 is rejected instead of being misread.
//   - Relative times (§4.5.3) must lie within 2^28 s of "now" in either
//     direction, absolute times before year 10000; resolved times are
//     rounded to the microsecond, which is finer than a float64 can carry
//     for today's epoch (about a quarter microsecond) and makes a resolved
//     time survive Encode→Decode→Resolve unchanged.
//   - CBOR decimal fractions (tag 4) are refused with every other tag: tags
//     are where CBOR decoders hide their complexity and their bugs.
//   - CBOR integer labels outside RFC 8428 Table 4 are refused: the RFC says
//     the table is conclusive and extensions use text labels.
//   - A pack with no measurement (empty, or base fields only) is refused: a
//     device that sends one is broken, and saying so beats silently
//     accepting nothing.
//   - A label given twice in one record is refused, unknown labels too, and
//     so are values of unknown labels that are not valid JSON or CBOR, hold
//     invalid UTF-8 or exceed the string and nesting bounds: ignored fields
//     still pass through logs and raw archives.
package senml

import (
	"errors"
	"fmt"
	"time"
)

// Record is one SenML record as sent (RFC 8428 §4). Pointers distinguish
// absent fields; the string and time fields use "" and 0 for absent, which is
// why a record may not reset bn, bu or bt to those values (see the package
// documentation).
type Record struct {
	BaseName    string   // bn
	BaseTime    float64  // bt, seconds
	BaseUnit    string   // bu
	BaseValue   *float64 // bv
	BaseSum     *float64 // bs
	BaseVersion *int     // bver

	Name        string   // n
	Unit        string   // u
	Value       *float64 // v
	StringValue *string  // vs
	BoolValue   *bool    // vb
	// DataValue is vd as base64url without padding (RFC 8428 §5): as sent in
	// JSON; CBOR carries raw bytes, which the CBOR decoder re-encodes so that
	// a Record looks the same whichever form it came in.
	DataValue  *string
	Sum        *float64 // s
	Time       float64  // t, seconds
	UpdateTime *float64 // ut, seconds
}

// Pack is a SenML pack: records in the order sent. Base fields apply to the
// record that carries them and every later one until replaced.
type Pack []Record

// Limits protect the decoders from oversized input. Zero (or negative) fields
// take the defaults.
type Limits struct {
	MaxBytes     int // whole payload; default 64 KiB
	MaxRecords   int // records in a pack; default 1024
	MaxNameLen   int // bn, n, bu, u and the resolved name bn+n; default 255
	MaxStringLen int // vs, and vd as sent (base64url); default 4096
}

// Default limits.
const (
	DefaultMaxBytes     = 64 << 10
	DefaultMaxRecords   = 1024
	DefaultMaxNameLen   = 255
	DefaultMaxStringLen = 4096
)

// Limits on structure that are not worth a knob: no SenML record needs more
// than a handful of fields, and extension values (ignored, RFC 8428 §4.4)
// are not SenML's to nest deeply.
const (
	maxFields = 64 // members of one record, known and unknown together
	maxDepth  = 8  // nesting of the whole document, pack array included
	maxNumLen = 64 // bytes of one JSON number; RFC 8428 §5 asks for under 25
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxRecords <= 0 {
		l.MaxRecords = DefaultMaxRecords
	}
	if l.MaxNameLen <= 0 {
		l.MaxNameLen = DefaultMaxNameLen
	}
	if l.MaxStringLen <= 0 {
		l.MaxStringLen = DefaultMaxStringLen
	}
	return l
}

// Sentinel errors. Every error from this package is an *Error that unwraps to
// exactly one of them, so ingest can count rejections by class with
// errors.Is and report the details from the *Error.
var (
	// ErrMalformed: not valid JSON or CBOR, or not shaped like a SenML pack
	// (not an array of records, a label with a value of the wrong type, a
	// duplicate label, an unknown CBOR integer label).
	ErrMalformed = errors.New("malformed SenML")
	// ErrTooLarge: over one of the Limits, or over the fixed bounds on
	// record fields, nesting and number length.
	ErrTooLarge = errors.New("SenML over limit")
	// ErrInvalid: well-formed, but breaks RFC 8428: no value or two values,
	// a bad name, an unsupported or inconsistent version, a must-understand
	// label ending in "_", a non-finite number, a time out of range.
	ErrInvalid = errors.New("invalid SenML")
)

// Error says what is wrong and where.
type Error struct {
	Record int    // 0-based index in the pack; -1 for the pack as a whole
	Field  string // the SenML label ("n", "v", "bt", an unknown "x_"), or ""
	Reason string // human-readable, never quoting more than a label of the input
	// Err is ErrMalformed, ErrTooLarge or ErrInvalid; nil reads as
	// ErrInvalid so that an Error built from the contract fields alone still
	// classifies.
	Err error
}

func (e *Error) Error() string {
	switch {
	case e.Record < 0 && e.Field == "":
		return fmt.Sprintf("senml: pack: %s", e.Reason)
	case e.Record < 0:
		return fmt.Sprintf("senml: pack: field %q: %s", e.Field, e.Reason)
	case e.Field == "":
		return fmt.Sprintf("senml: record %d: %s", e.Record, e.Reason)
	}
	return fmt.Sprintf("senml: record %d: field %q: %s", e.Record, e.Field, e.Reason)
}

// Unwrap returns the error's class: ErrMalformed, ErrTooLarge or ErrInvalid.
func (e *Error) Unwrap() error {
	if e.Err == nil {
		return ErrInvalid
	}
	return e.Err
}

func malformed(rec int, field, reason string) error {
	return &Error{Record: rec, Field: field, Reason: reason, Err: ErrMalformed}
}

func tooLarge(rec int, field, reason string) error {
	return &Error{Record: rec, Field: field, Reason: reason, Err: ErrTooLarge}
}

func invalid(rec int, field, reason string) error {
	return &Error{Record: rec, Field: field, Reason: reason, Err: ErrInvalid}
}

// Kind says which value a Resolved record carries.
type Kind uint8

// Kinds of value. KindSum is a record with a sum (s) and no value.
const (
	KindFloat Kind = iota
	KindString
	KindBool
	KindData
	KindSum
)

func (k Kind) String() string {
	switch k {
	case KindFloat:
		return "float"
	case KindString:
		return "string"
	case KindBool:
		return "bool"
	case KindData:
		return "data"
	case KindSum:
		return "sum"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Resolved is a record after base resolution (RFC 8428 §4.6): full name,
// unit, absolute time and exactly one value. A record that sends both a value
// and a sum keeps its value's Kind and sets HasSum; one with only a sum is
// KindSum. A sum in effect through bs alone also sets HasSum (§4.5.4).
type Resolved struct {
	Name       string
	Unit       string
	Time       time.Time     // UTC, microsecond precision; zero in input to Encode means "now"
	UpdateTime time.Duration // ut; 0 when absent

	Kind   Kind
	Float  float64 // KindFloat: bv + v
	String string  // KindString
	Bool   bool    // KindBool
	Data   []byte  // KindData, decoded
	Sum    float64 // when HasSum: bs + s
	HasSum bool
}

// Label indexes, in RFC 8428 §6 Table 4 order by CBOR label; the bit for a
// label in a record's "seen" mask is 1<<index.
const (
	lBver = iota
	lBn
	lBt
	lBu
	lBv
	lBs
	lN
	lU
	lV
	lVs
	lVb
	lS
	lT
	lUt
	lVd
	numLabels
)

var labelNames = [numLabels]string{"bver", "bn", "bt", "bu", "bv", "bs", "n", "u", "v", "vs", "vb", "s", "t", "ut", "vd"}

// labelIndex maps a JSON (or CBOR text) label to its index, -1 if unknown.
// A switch on the string compiles to length-then-content comparisons and
// does not allocate, unlike converting a []byte key for a map lookup.
func labelIndex(k string) int {
	switch k {
	case "bver":
		return lBver
	case "bn":
		return lBn
	case "bt":
		return lBt
	case "bu":
		return lBu
	case "bv":
		return lBv
	case "bs":
		return lBs
	case "n":
		return lN
	case "u":
		return lU
	case "v":
		return lV
	case "vs":
		return lVs
	case "vb":
		return lVb
	case "s":
		return lS
	case "t":
		return lT
	case "ut":
		return lUt
	case "vd":
		return lVd
	}
	return -1
}

// cborLabelIndex maps an RFC 8428 Table 4 integer label to its index.
func cborLabelIndex(k int64) int {
	if k < -6 || k > 8 {
		return -1
	}
	return cborLabels[k+6]
}

var cborLabels = [15]int{lBs, lBv, lBu, lBt, lBn, lBver, lN, lU, lV, lVs, lVb, lS, lT, lUt, lVd}

var cborLabelOf = func() (m [numLabels]int64) {
	for i, l := range cborLabels {
		m[l] = int64(i) - 6
	}
	return m
}()

// recStore holds the targets of a decoded record's pointer fields, so that
// decoding a record costs one allocation however many of them it sets.
type recStore struct {
	bv, bs, v, s, ut float64
	bver             int
	vb               bool
	vs, vd           string
}
