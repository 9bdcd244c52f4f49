package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// Errors the package returns (wrapped); API handlers map them to 400, 404
// and 409.
var (
	// ErrInvalid: a window, label, query, name or manifest is malformed or
	// out of bounds; the error is a *FieldError that names the field.
	ErrInvalid = errors.New("dataset: invalid")
	// ErrNotFound: no window, dataset or version by that id in the tenant.
	ErrNotFound = errors.New("dataset: not found")
	// ErrConflict: a window id is stored with other content (two contents
	// whose digests share their first 64 bits).
	ErrConflict = errors.New("dataset: conflict")
)

// FieldError is an ErrInvalid that names the offending field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "dataset: " + e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Capture reasons: why a window was captured.
const (
	ReasonAlarm    = "alarm"    // around an alarm (Ref: the alarm id)
	ReasonDecision = "decision" // around a loop decision (Ref: the evidence id)
	ReasonRequest  = "request"  // an operator asked (Ref: the request id)
)

// Limits on a window.
const (
	MaxProperties  = 64      // properties with a series or a summary
	MaxPoints      = 100_000 // points over all series
	MaxFeatures    = 256
	MaxSpan        = 31 * 24 * time.Hour // from To − From
	MaxWindowBytes = 8 << 20             // ParseWindow's input
	maxText        = 128                 // model, firmware, edge, ref, loop
	maxNameLen     = 64                  // property, feature, class and dataset names
	maxQuoted      = 80
	// Times fall in these years (RFC 3339 carries years up to 9999).
	minYear, maxYear = 1970, 9999
)

// Point is one sample: its time (milliseconds since the epoch in JSON) and
// value.
type Point struct {
	T time.Time
	V float64
}

// MarshalJSON writes {"t":<ms>,"v":<value>}, the value as encoding/json
// writes a float64.
func (p Point) MarshalJSON() ([]byte, error) {
	if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
		return nil, fmt.Errorf("dataset: point value %v is not finite", p.V)
	}
	b := make([]byte, 0, 40)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, p.T.UnixMilli(), 10)
	b = append(b, `,"v":`...)
	b = appendFloat(b, p.V)
	return append(b, '}'), nil
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// UnmarshalJSON reads {"t":<ms>,"v":<value>}: both members required, no
// others.
func (p *Point) UnmarshalJSON(b []byte) error {
	var raw struct {
		T *int64   `json:"t"`
		V *float64 `json:"v"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("point: %w", err)
	}
	if raw.T == nil || raw.V == nil {
		return errors.New(`point: "t" and "v" are required`)
	}
	p.T = time.UnixMilli(*raw.T).UTC()
	p.V = *raw.V
	return nil
}

// Stats summarises one property's series: the number of points, their
// mean, smallest and largest value, and population standard deviation.
type Stats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Std  float64 `json:"std"`
}

// Summarize computes the Stats of a non-empty series (two passes, the
// mean kept within [Min, Max] against rounding).
func Summarize(pts []Point) Stats {
	if len(pts) == 0 {
		return Stats{}
	}
	s := Stats{N: len(pts), Min: pts[0].V, Max: pts[0].V}
	var sum float64
	for _, p := range pts {
		sum += p.V
		s.Min = min(s.Min, p.V)
		s.Max = max(s.Max, p.V)
	}
	s.Mean = min(max(sum/float64(len(pts)), s.Min), s.Max)
	var ss float64
	for _, p := range pts {
		d := p.V - s.Mean
		ss += d * d
	}
	s.Std = math.Sqrt(ss / float64(len(pts)))
	return s
}

// Window is raw data captured around an alarm, a loop decision or an
// operator's request: the series of some of one object's properties over
// [From, To], their summaries, and the loop's features at decision time.
type Window struct {
	// ID is assigned by the store from the content (see the package doc);
	// AddWindow ignores the ID it is given.
	ID       string    `json:"id,omitempty"`
	Tenant   string    `json:"tenant"`
	Object   string    `json:"object"`             // the object's code; its namespace is the tenant
	Model    string    `json:"model,omitempty"`    // the thing model, "id@version"
	Firmware string    `json:"firmware,omitempty"` // the object's firmware at capture
	Edge     string    `json:"edge,omitempty"`     // the edge that captured it; "" at the hub
	Reason   string    `json:"reason"`             // ReasonAlarm, ReasonDecision, ReasonRequest
	Ref      string    `json:"ref,omitempty"`      // alarm id, evidence id or request id
	Loop     string    `json:"loop,omitempty"`     // the loop's id
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	// Series holds each property's points, in time order (the store sorts
	// them); absent from listings unless asked for, and for properties an
	// edge keeps at home (Redact).
	Series map[string][]Point `json:"series,omitempty"`
	// Summary holds each property's Stats: the store computes it from
	// Series, and keeps the one given for a property without a series.
	Summary  map[string]Stats   `json:"summary,omitempty"`
	Features map[string]float64 `json:"features,omitempty"`
	// Raw is true when the stored window has a series (whether or not this
	// copy carries it).
	Raw bool `json:"raw"`
	// Classification is the highest data classification among the
	// window's properties (thingmodel.ClassPublic … ClassCore); "" is
	// thingmodel.DefaultClassification.
	Classification string `json:"classification"`
	// CapturedAt is when the window was captured; zero: when it is stored.
	CapturedAt time.Time `json:"captured_at"`
}

// clone copies w deeply.
func (w *Window) clone() *Window {
	c := *w
	if w.Series != nil {
		c.Series = make(map[string][]Point, len(w.Series))
		for k, v := range w.Series {
			c.Series[k] = slices.Clone(v)
		}
	}
	c.Summary = maps.Clone(w.Summary)
	c.Features = maps.Clone(w.Features)
	return &c
}

// Redact returns a copy of w without the series of the properties for
// which shared returns false: an edge keeps those (important and core
// data) at home and sends only their summaries and the features up. The
// copy's Summary covers every property of w (computed from the series
// where w lacks one), Raw is false when no series is left, and the ID is
// cleared: the receiving store assigns the redacted content its own.
func Redact(w *Window, shared func(property string) bool) *Window {
	c := w.clone()
	c.ID = ""
	for prop, pts := range c.Series {
		if _, ok := c.Summary[prop]; !ok && len(pts) > 0 {
			if c.Summary == nil {
				c.Summary = map[string]Stats{}
			}
			c.Summary[prop] = Summarize(pts)
		}
		if !shared(prop) {
			delete(c.Series, prop)
		}
	}
	if len(c.Series) == 0 {
		c.Series = nil
	}
	c.Raw = len(c.Series) > 0
	return c
}

// ParseWindow decodes a window as an edge or an operator posts it: at most
// MaxWindowBytes of one JSON object, no unknown members, and a window
// AddWindow would accept, except that the tenant may be left out (the
// caller sets it). The result is normalised as AddWindow stores it (times
// in UTC at millisecond precision, points in time order, summaries
// computed); its ID is cleared.
func ParseWindow(b []byte) (*Window, error) {
	if len(b) > MaxWindowBytes {
		return nil, invalid("window", "%d bytes, at most %d", len(b), MaxWindowBytes)
	}
	var w Window
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, invalid("window", "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("window", "data after the JSON object")
	}
	if err := normalize(&w, false); err != nil {
		return nil, err
	}
	w.ID = ""
	return &w, nil
}

// normalize validates w and puts it in stored form: times in UTC at
// millisecond precision, each series sorted by time, summaries computed
// from the series, Raw set, the classification defaulted. The tenant may
// be "" unless needTenant.
func normalize(w *Window, needTenant bool) error {
	if w.Tenant != "" || needTenant {
		if err := code.ValidNamespace(w.Tenant); err != nil {
			return invalid("tenant", "%v", err)
		}
	}
	c, err := code.Parse(w.Object)
	if err != nil {
		return invalid("object", "%v", err)
	}
	if w.Tenant != "" && c.Namespace != w.Tenant {
		return invalid("object", "%q is not in the tenant's namespace %q", w.Object, w.Tenant)
	}
	for _, f := range []struct{ name, v string }{
		{"model", w.Model}, {"firmware", w.Firmware}, {"edge", w.Edge}, {"ref", w.Ref}, {"loop", w.Loop},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	switch w.Reason {
	case ReasonAlarm, ReasonDecision, ReasonRequest:
	default:
		return invalid("reason", "%q is not one of alarm, decision, request", truncate(w.Reason))
	}
	switch w.Classification {
	case "":
		w.Classification = thingmodel.DefaultClassification
	case thingmodel.ClassPublic, thingmodel.ClassInternal, thingmodel.ClassImportant, thingmodel.ClassCore:
	default:
		return invalid("classification", "%q is not one of public, internal, important, core", truncate(w.Classification))
	}
	if w.From.IsZero() || w.To.IsZero() {
		return invalid("from", "from and to are required")
	}
	w.From, w.To = msUTC(w.From), msUTC(w.To)
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"from", w.From}, {"to", w.To}, {"captured_at", w.CapturedAt}} {
		if y := f.t.Year(); !f.t.IsZero() && (y < minYear || y > maxYear) {
			return invalid(f.name, "year %d is not in [%d, %d]", y, minYear, maxYear)
		}
	}
	if w.To.Before(w.From) {
		return invalid("to", "%s is before from %s", w.To.Format(time.RFC3339Nano), w.From.Format(time.RFC3339Nano))
	}
	if span := w.To.Sub(w.From); span > MaxSpan {
		return invalid("to", "the window spans %s, at most %s", span, MaxSpan)
	}
	if !w.CapturedAt.IsZero() {
		w.CapturedAt = msUTC(w.CapturedAt)
	}

	props := map[string]bool{}
	points := 0
	for prop, pts := range w.Series {
		if err := checkName("series", prop); err != nil {
			return err
		}
		if len(pts) == 0 {
			return invalid("series", "%q has no points (leave the property out)", prop)
		}
		props[prop] = true
		points += len(pts)
		if points > MaxPoints {
			return invalid("series", "more than %d points", MaxPoints)
		}
	}
	for prop, s := range w.Summary {
		if err := checkName("summary", prop); err != nil {
			return err
		}
		props[prop] = true
		if _, ok := w.Series[prop]; !ok {
			if err := checkStats(prop, s); err != nil {
				return err
			}
		}
	}
	if len(props) > MaxProperties {
		return invalid("series", "%d properties, at most %d", len(props), MaxProperties)
	}
	for prop, pts := range w.Series {
		pts = slices.Clone(pts)
		for i := range pts {
			if math.IsNaN(pts[i].V) || math.IsInf(pts[i].V, 0) {
				return invalid("series", "%q: point %d: value %v is not finite", prop, i, pts[i].V)
			}
			pts[i].T = msUTC(pts[i].T)
			if pts[i].T.Before(w.From) || pts[i].T.After(w.To) {
				return invalid("series", "%q: point %d at %s is outside [from, to]", prop, i, pts[i].T.Format(time.RFC3339Nano))
			}
		}
		sort.SliceStable(pts, func(i, j int) bool { return pts[i].T.Before(pts[j].T) })
		for i := 1; i < len(pts); i++ {
			if pts[i].T.Equal(pts[i-1].T) {
				return invalid("series", "%q: two points at %s", prop, pts[i].T.Format(time.RFC3339Nano))
			}
		}
		w.Series[prop] = pts
		if w.Summary == nil {
			w.Summary = map[string]Stats{}
		}
		w.Summary[prop] = Summarize(pts)
	}
	if len(w.Series) == 0 {
		w.Series = nil
	}
	if len(w.Summary) == 0 {
		w.Summary = nil
	}
	w.Raw = len(w.Series) > 0

	if len(w.Features) > MaxFeatures {
		return invalid("features", "%d features, at most %d", len(w.Features), MaxFeatures)
	}
	for name, v := range w.Features {
		if err := checkName("features", name); err != nil {
			return err
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid("features", "%q: value %v is not finite", name, v)
		}
	}
	if len(w.Features) == 0 {
		w.Features = nil
	}
	return nil
}

func checkStats(prop string, s Stats) error {
	for _, v := range []float64{s.Mean, s.Min, s.Max, s.Std} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid("summary", "%q: %v is not finite", prop, v)
		}
	}
	switch {
	case s.N < 1:
		return invalid("summary", "%q: n is %d, at least 1", prop, s.N)
	case !(s.Min <= s.Mean && s.Mean <= s.Max):
		return invalid("summary", "%q: mean %v is not within [min %v, max %v]", prop, s.Mean, s.Min, s.Max)
	case s.Std < 0:
		return invalid("summary", "%q: std %v is negative", prop, s.Std)
	}
	return nil
}

func msUTC(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// checkName checks a property, feature or class name:
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}. Names become Parquet column names and
// values, so they stay plain.
func checkName(field, s string) error {
	if s == "" || len(s) > maxNameLen {
		return invalid(field, "name %q must be 1 to %d bytes", truncate(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return invalid(field, "name %q must match [A-Za-z0-9_][A-Za-z0-9_.-]* (byte %d)", truncate(s), i)
		}
	}
	return nil
}

// checkText checks an optional reference: at most maxText bytes of
// printable ASCII without spaces.
func checkText(field, s string) error {
	if len(s) > maxText {
		return invalid(field, "%d bytes, at most %d", len(s), maxText)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return invalid(field, "%q: byte %d is not printable ASCII", truncate(s), i)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}

// canonWindow is the window's content as digested: every field but the
// id and the capture time, maps with sorted keys (encoding/json).
type canonWindow struct {
	Schema         string             `json:"schema"`
	Tenant         string             `json:"tenant"`
	Object         string             `json:"object"`
	Model          string             `json:"model"`
	Firmware       string             `json:"firmware"`
	Edge           string             `json:"edge"`
	Reason         string             `json:"reason"`
	Ref            string             `json:"ref"`
	Loop           string             `json:"loop"`
	FromMS         int64              `json:"from_ms"`
	ToMS           int64              `json:"to_ms"`
	Classification string             `json:"classification"`
	Series         map[string][]Point `json:"series"`
	Summary        map[string]Stats   `json:"summary"`
	Features       map[string]float64 `json:"features"`
}

// digests returns the hex SHA-256 of the normalised window's canonical
// content and of its series alone ("" without one).
func digests(w *Window) (content, series string, err error) {
	b, err := json.Marshal(canonWindow{
		Schema: Schema, Tenant: w.Tenant, Object: w.Object, Model: w.Model, Firmware: w.Firmware, Edge: w.Edge,
		Reason: w.Reason, Ref: w.Ref, Loop: w.Loop, FromMS: w.From.UnixMilli(), ToMS: w.To.UnixMilli(),
		Classification: w.Classification, Series: w.Series, Summary: w.Summary, Features: w.Features,
	})
	if err != nil {
		return "", "", err
	}
	content = sha256Hex(b)
	if len(w.Series) > 0 {
		b, err := json.Marshal(w.Series)
		if err != nil {
			return "", "", err
		}
		series = sha256Hex(b)
	}
	return content, series, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// windowID is the id of a window whose content digest is content.
func windowID(content string) string { return "w-" + content[:16] }

// completeness returns the points present and expected over w's series of
// at least two points (see the package doc).
func completeness(w *Window) (present, expected int64) {
	span := w.To.UnixMilli() - w.From.UnixMilli()
	for _, pts := range w.Series {
		if len(pts) < 2 {
			continue
		}
		gaps := make([]int64, len(pts)-1)
		for i := 1; i < len(pts); i++ {
			gaps[i-1] = pts[i].T.Sub(pts[i-1].T).Milliseconds()
		}
		slices.Sort(gaps)
		var interval float64
		if n := len(gaps); n%2 == 1 {
			interval = float64(gaps[n/2])
		} else {
			interval = float64(gaps[n/2-1]+gaps[n/2]) / 2
		}
		exp := max(int64(math.Round(float64(span)/interval)), 1)
		expected += exp
		present += min(int64(len(pts)), exp)
	}
	return present, expected
}
