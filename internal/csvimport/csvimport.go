// Package csvimport parses the bulk provisioning CSV into typed, validated
// rows. It only reads: registering the rows is the registry's job, which can
// then assume every Row it is given is well formed.
//
// The file is RFC 4180 CSV with a header row naming the columns, in any
// order, case-insensitively:
//
//	code        required   acme:pump-1
//	kind        optional   device (default) | gateway | edge | asset
//	model       optional   <model id>@<MAJOR.MINOR.PATCH>, e.g. acme:pump@1.0.0
//	path        optional   asset hierarchy path, e.g. plant-1/area-a/line-3
//	tags        optional   k=v;k2=v2
//	edge        optional   code of the edge node serving the object
//	public_key  optional   did:key, PEM or base64 SPKI; empty = hub generates
//	key_alg     optional   p256 | ed25519, for a generated key
//	network     optional   the link's profile: nb-iot | lte-cat1 | 5g-redcap | wlan | ethernet
//
// Files written before a column existed still import: a column left out is
// empty in every row.
// A bulk import is usually a spreadsheet export with a handful of mistakes,
// so a bad row does not stop the parse: Parse reports every bad row with its
// line number and the first reason found, and returns the good rows. Only a
// file that cannot be interpreted at all (no usable header, unreadable, too
// large, too many rows) is an error for the whole file.
//
// Reader reads the same file one record at a time, holding only the current
// record and the codes seen so far (for duplicates), so that an import
// streams in bounded memory; Parse collects what a Reader yields.
package csvimport

import (
	"crypto"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/netprofile"
)

// Limits on one file. MaxBytes bounds an upload; MaxRows is the default
// row limit (Options.MaxRows), which keeps one import to a size an operator
// can follow and the duplicate check to a bounded set of codes.
const (
	MaxRows  = 100000
	MaxBytes = 64 << 20
)

var (
	// ErrHeader means the header row is missing or unusable: an unknown,
	// duplicate or empty column name, or no "code" column.
	ErrHeader = errors.New("csv header")
	// ErrTooLarge means the file is longer than MaxBytes.
	ErrTooLarge = errors.New("csv file too large")
	// ErrTooManyRows means the file has more than MaxRows records.
	ErrTooManyRows = errors.New("csv file has too many rows")
)

// Object kinds.
const (
	KindDevice  = "device"
	KindGateway = "gateway"
	KindEdge    = "edge"
	KindAsset   = "asset"
)

// Column names.
const (
	ColCode      = "code"
	ColKind      = "kind"
	ColModel     = "model"
	ColPath      = "path"
	ColTags      = "tags"
	ColEdge      = "edge"
	ColPublicKey = "public_key"
	ColKeyAlg    = "key_alg"
	ColNetwork   = "network"
)

var columns = []string{ColCode, ColKind, ColModel, ColPath, ColTags, ColEdge, ColPublicKey, ColKeyAlg, ColNetwork}

// Row is one valid record.
type Row struct {
	Line                  int // 1-based line number in the file of this record
	Code                  string
	Kind                  string
	ModelID, ModelVersion string
	Path                  []string
	Tags                  map[string]string
	Edge                  string
	Network               string           // a netprofile name, "" = not set
	PublicKey             crypto.PublicKey // nil = generate (never for assets, which have no key)
	// KeyAlg is the algorithm of PublicKey when one is given, otherwise of
	// the key to generate (P256 unless the file says otherwise). It is empty
	// for assets.
	KeyAlg keys.Alg
}

// RowError describes why one record was rejected.
type RowError struct {
	Line   int    // 1-based line number where the record starts
	Field  string // column name; empty when the problem is the record as a whole
	Reason string
}

func (e RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// Parse reads a bulk provisioning CSV with the default limits. It returns
// the good rows and one RowError per bad row; a bad row contributes no Row. A
// code appearing a second time is a RowError ("duplicate of line N"). err is
// non-nil only if the file is unusable, and then wraps ErrHeader,
// ErrTooLarge, ErrTooManyRows or the reader's error.
func Parse(r io.Reader) ([]Row, []RowError, error) {
	rd, err := NewReader(r, Options{})
	if err != nil {
		return nil, nil, err
	}
	var (
		rows []Row
		bad  []RowError
	)
	for {
		row, rerr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rows, bad, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if rerr != nil {
			bad = append(bad, *rerr)
			continue
		}
		rows = append(rows, row)
	}
}

// Options bound what a Reader accepts.
type Options struct {
	// MaxRows is the most records after the header (default MaxRows); the
	// record after the last allowed one fails with ErrTooManyRows.
	MaxRows int
}

// Reader yields the records of a bulk provisioning CSV one at a time.
type Reader struct {
	lr      *limitReader
	cr      *csv.Reader
	cols    []string
	max     int
	records int
	seen    map[string]int // code -> line of first occurrence
	err     error          // sticky: once the file fails, it stays failed
}

// NewReader reads and checks the header row. Its error wraps ErrHeader,
// ErrTooLarge or the reader's error.
func NewReader(r io.Reader, o Options) (*Reader, error) {
	if o.MaxRows <= 0 {
		o.MaxRows = MaxRows
	}
	lr := &limitReader{r: r, left: MaxBytes}
	cr := csv.NewReader(lr)
	// Rows are checked against the header's width by hand, to report the
	// mismatch as a row error rather than lose the record.
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true

	header, err := cr.Read()
	switch {
	case lr.exceeded:
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBytes)
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%w: empty file, want a header row naming the columns", ErrHeader)
	case err != nil:
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %w", ErrHeader, err)
		}
		return nil, fmt.Errorf("csvimport: read: %w", err)
	}
	cols, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	return &Reader{lr: lr, cr: cr, cols: cols, max: o.MaxRows, seen: map[string]int{}}, nil
}

// Next returns the next record: a valid Row, or a RowError for a bad one.
// Blank records are skipped. err is io.EOF at the end of the file; any other
// err means the rest of the file is unusable (it wraps ErrTooLarge,
// ErrTooManyRows or the reader's error) and every later call returns it
// again.
func (r *Reader) Next() (Row, *RowError, error) {
	if r.err != nil {
		return Row{}, nil, r.err
	}
	row, rerr, err := r.next()
	if err != nil {
		r.err = err
	}
	return row, rerr, err
}

// Records returns how many records (blank ones included) were read so far.
func (r *Reader) Records() int { return r.records }

func (r *Reader) next() (Row, *RowError, error) {
	for {
		rec, err := r.cr.Read()
		if r.lr.exceeded {
			return Row{}, nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxBytes)
		}
		if errors.Is(err, io.EOF) {
			return Row{}, nil, io.EOF
		}
		r.records++
		if r.records > r.max {
			return Row{}, nil, fmt.Errorf("%w: more than %d (the import row limit)", ErrTooManyRows, r.max)
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return Row{}, nil, fmt.Errorf("csvimport: read: %w", err)
			}
			return Row{}, &RowError{Line: pe.StartLine, Reason: pe.Err.Error()}, nil
		}
		line, _ := r.cr.FieldPos(0)
		if blank(rec) {
			// Spreadsheets export trailing empty rows as ",,,"; they are
			// not records anyone meant to import.
			continue
		}
		if len(rec) != len(r.cols) {
			return Row{}, &RowError{Line: line, Reason: fmt.Sprintf("%d fields, but the header has %d", len(rec), len(r.cols))}, nil
		}
		row, rerr := parseRow(r.cols, rec, line)
		if rerr == nil && row.Code != "" {
			if first, dup := r.seen[row.Code]; dup {
				rerr = &RowError{Line: line, Field: ColCode, Reason: fmt.Sprintf("duplicate of line %d", first)}
			}
		}
		// A code is claimed by its first line even if that line is bad
		// otherwise: fixing the first line must not turn the second into
		// a silent duplicate.
		if c := codeOf(r.cols, rec); c != "" {
			if _, dup := r.seen[c]; !dup {
				// Cloned: c shares memory with the whole record.
				r.seen[strings.Clone(c)] = line
			}
		}
		if rerr != nil {
			return Row{}, rerr, nil
		}
		return row, nil, nil
	}
}

func parseHeader(header []string) ([]string, error) {
	cols := make([]string, len(header))
	index := make(map[string]int, len(header))
	for i, h := range header {
		if i == 0 {
			// Excel writes a UTF-8 byte order mark before the first name.
			h = strings.TrimPrefix(h, "\ufeff")
		}
		name := strings.ToLower(strings.TrimSpace(h))
		switch {
		case name == "":
			return nil, fmt.Errorf("%w: column %d has no name", ErrHeader, i+1)
		case !known(name):
			return nil, fmt.Errorf("%w: unknown column %q (known: %s)", ErrHeader, short(h), strings.Join(columns, ", "))
		}
		if j, dup := index[name]; dup {
			return nil, fmt.Errorf("%w: column %q appears twice (columns %d and %d)", ErrHeader, name, j+1, i+1)
		}
		index[name] = i
		cols[i] = name
	}
	if _, ok := index[ColCode]; !ok {
		return nil, fmt.Errorf("%w: no %q column", ErrHeader, ColCode)
	}
	return cols, nil
}

func known(name string) bool {
	for _, c := range columns {
		if c == name {
			return true
		}
	}
	return false
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

func codeOf(cols, rec []string) string {
	for i, c := range cols {
		if c == ColCode {
			s := strings.TrimSpace(rec[i])
			if _, err := code.Parse(s); err == nil {
				return s
			}
		}
	}
	return ""
}

func parseRow(cols, rec []string, line int) (Row, *RowError) {
	v := make(map[string]string, len(cols))
	for i, c := range cols {
		v[c] = strings.TrimSpace(rec[i])
	}
	fail := func(field, format string, args ...any) (Row, *RowError) {
		return Row{}, &RowError{Line: line, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	row := Row{Line: line, Code: v[ColCode], Kind: KindDevice}

	if row.Code == "" {
		return fail(ColCode, "required")
	}
	if _, err := code.Parse(row.Code); err != nil {
		return fail(ColCode, "%v", err)
	}

	if k := strings.ToLower(v[ColKind]); k != "" {
		switch k {
		case KindDevice, KindGateway, KindEdge, KindAsset:
			row.Kind = k
		default:
			return fail(ColKind, "%q is not one of device, gateway, edge, asset", short(v[ColKind]))
		}
	}

	if m := v[ColModel]; m != "" {
		i := strings.LastIndexByte(m, '@')
		if i < 0 {
			return fail(ColModel, "%q: want <model id>@<version>, e.g. acme:pump@1.0.0", short(m))
		}
		if _, err := code.Parse(m[:i]); err != nil {
			return fail(ColModel, "model id: %v", err)
		}
		if err := validSemver(m[i+1:]); err != nil {
			return fail(ColModel, "version %q: %v", short(m[i+1:]), err)
		}
		row.ModelID, row.ModelVersion = m[:i], m[i+1:]
	}

	if p := v[ColPath]; p != "" {
		segs, err := code.ParsePath(p)
		if err != nil {
			return fail(ColPath, "%v", err)
		}
		row.Path = segs
	}

	if t := v[ColTags]; t != "" {
		tags, err := parseTags(t)
		if err != nil {
			return fail(ColTags, "%v", err)
		}
		row.Tags = tags
	}

	if e := v[ColEdge]; e != "" {
		if _, err := code.Parse(e); err != nil {
			return fail(ColEdge, "%v", err)
		}
		if e == row.Code {
			return fail(ColEdge, "an object cannot be its own edge")
		}
		row.Edge = e
	}

	if n := strings.ToLower(v[ColNetwork]); n != "" {
		if _, ok := netprofile.Lookup(n); !ok {
			return fail(ColNetwork, "%q is not a network profile; want one of %s", short(v[ColNetwork]), strings.Join(netprofile.Names(), ", "))
		}
		row.Network = n
	}

	pk, alg := v[ColPublicKey], v[ColKeyAlg]
	if row.Kind == KindAsset {
		if pk != "" || alg != "" {
			field := ColPublicKey
			if pk == "" {
				field = ColKeyAlg
			}
			return fail(field, "an asset has no key pair")
		}
		return row, nil
	}
	var err error
	if row.KeyAlg, err = keys.ParseAlg(alg); err != nil {
		return fail(ColKeyAlg, "%q: want p256 or ed25519", short(alg))
	}
	if pk != "" {
		pub, err := keys.ParsePublicKey(pk)
		if err != nil {
			return fail(ColPublicKey, "%v", err)
		}
		got, err := keys.AlgOf(pub)
		if err != nil {
			return fail(ColPublicKey, "%v", err)
		}
		if alg != "" && got != row.KeyAlg {
			return fail(ColKeyAlg, "key_alg says %s but public_key is %s", row.KeyAlg, got)
		}
		row.PublicKey, row.KeyAlg = pub, got
	}
	return row, nil
}

// parseTags parses "k=v;k2=v2". Empty items, as left by a trailing ";", are
// skipped; spaces around keys and values are trimmed because spreadsheet
// users type "floor = 3; wing = north".
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for item := range strings.SplitSeq(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, val, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value", short(item))
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if err := code.ValidTagKey(k); err != nil {
			return nil, err
		}
		if err := code.ValidTagValue(val); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("key %q appears twice", k)
		}
		tags[k] = val
	}
	if len(tags) == 0 {
		return nil, nil
	}
	return tags, nil
}

// validSemver accepts exactly MAJOR.MINOR.PATCH, without leading zeros,
// pre-release or build metadata: model versions are released artifacts.
func validSemver(v string) error {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return errors.New("want MAJOR.MINOR.PATCH")
	}
	for _, p := range parts {
		if p == "" || len(p) > 9 {
			return errors.New("each part must be a number of 1–9 digits")
		}
		if len(p) > 1 && p[0] == '0' {
			return errors.New("numbers must not have leading zeros")
		}
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return errors.New("each part must be a number")
		}
	}
	return nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// limitReader fails once more than left bytes have been read, remembering
// that it did: the csv package may report the failure as a parse error or
// drop it, so Parse checks the flag rather than the error.
type limitReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.exceeded {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.exceeded = true
		return 0, ErrTooLarge
	}
	return n, err
}
