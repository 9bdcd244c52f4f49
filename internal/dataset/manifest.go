package dataset

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"path"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/code"
)

// Schema names the manifest's format and starts the canonical encodings
// the digests cover.
const Schema = "wanwu.dataset/v1"

// MaxManifestBytes bounds ParseManifest's input.
const MaxManifestBytes = 1 << 20

// Query selects windows: every non-zero field narrows the selection.
type Query struct {
	// Tenant is required by Windows; Build takes its tenant argument
	// (a Query's Tenant, if set, must be the same).
	Tenant string `json:"tenant,omitempty"`
	Object string `json:"object,omitempty"`
	Reason string `json:"reason,omitempty"`
	Loop   string `json:"loop,omitempty"`
	Model  string `json:"model,omitempty"`
	// Since and Until keep the windows that overlap [Since, Until]: those
	// that end at or after Since and start at or before Until.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Unlabelled keeps the windows that carry no label.
	Unlabelled bool `json:"unlabelled,omitempty"`
	// After pages: windows come in id order, those after this id.
	After string `json:"after,omitempty"`
	// Limit bounds the windows returned: Windows' default is
	// DefaultLimit and its most MaxLimit (with series, both are
	// MaxSeriesLimit); Build takes every match (at most
	// MaxVersionWindows) unless a limit is given.
	Limit int `json:"limit,omitempty"`
	// WithSeries makes Windows return the series (Build ignores it).
	WithSeries bool `json:"with_series,omitempty"`
}

// Limits on queries and versions.
const (
	DefaultLimit      = 100
	MaxLimit          = 1000
	MaxSeriesLimit    = 10 // a window's series may be megabytes
	MaxVersionWindows = 100_000
)

// Manifest describes one version of a dataset. Files is set in the
// manifest.json of an export only: it lists that archive's other files.
type Manifest struct {
	Schema    string    `json:"schema"` // Schema
	Tenant    string    `json:"tenant"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// Query is the selection the version was built from.
	Query Query `json:"query"`
	// ContentSHA256 is the hex SHA-256 of the version's windows and
	// labels in canonical form (see the package doc): two versions with
	// the same content have the same digest, whatever order the windows
	// and labels were stored in.
	ContentSHA256 string  `json:"content_sha256"`
	Windows       int     `json:"windows"`
	Labels        int     `json:"labels"`
	Points        int64   `json:"points"` // over all series
	Lineage       Lineage `json:"lineage"`
	Quality       Quality `json:"quality"`
	Files         []File  `json:"files,omitempty"`
}

// Lineage is where a version's windows come from: the distinct non-empty
// values, sorted, and the time they span.
type Lineage struct {
	Devices  []string  `json:"devices"`  // object codes
	Models   []string  `json:"models"`   // thing models, "id@version"
	Firmware []string  `json:"firmware"` // firmware versions
	Loops    []string  `json:"loops"`    // loop ids
	Edges    []string  `json:"edges"`    // capturing edges' codes
	From     time.Time `json:"from"`     // the earliest window start
	To       time.Time `json:"to"`       // the latest window end
}

// Quality scores a version; each score is in [0, 1] and the package doc
// defines it. The counts are the numerators and denominators the scores
// are ratios of, so that a reader sees what a score rests on.
type Quality struct {
	Completeness   float64 `json:"completeness"`
	Timeliness     float64 `json:"timeliness"`
	LabelCoverage  float64 `json:"label_coverage"`
	LabelAgreement float64 `json:"label_agreement"`
	ClassBalance   float64 `json:"class_balance"`
	DuplicateRate  float64 `json:"duplicate_rate"`

	PointsPresent  int64 `json:"points_present"`
	PointsExpected int64 `json:"points_expected"`
	Timely         int   `json:"timely"`         // windows captured within MaxCaptureDelay of their end
	Labelled       int   `json:"labelled"`       // windows with at least one label
	MultiLabelled  int   `json:"multi_labelled"` // windows with labels from two or more actors
	Agreeing       int   `json:"agreeing"`       // multi-labelled windows whose labels all agree
	Classes        int   `json:"classes"`        // distinct majority labels
	Duplicates     int   `json:"duplicates"`     // windows whose series an earlier window has
}

// File is one file of an export.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
}

// ParseManifest reads a manifest.json strictly: at most MaxManifestBytes of
// one JSON object with no unknown members, schema Schema, a valid tenant
// and name, version ≥ 1, digests of 64 lowercase hex digits, counts ≥ 0,
// quality scores in [0, 1], and file paths relative, clean and without
// "..". Every refusal wraps ErrInvalid and names the field.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, invalid("manifest", "%d bytes, at most %d", len(b), MaxManifestBytes)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, invalid("manifest", "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("manifest", "data after the JSON object")
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.Schema != Schema {
		return invalid("schema", "%q, want %q", truncate(m.Schema), Schema)
	}
	if err := code.ValidNamespace(m.Tenant); err != nil {
		return invalid("tenant", "%v", err)
	}
	if err := checkDatasetName(m.Name); err != nil {
		return err
	}
	if m.Version < 1 {
		return invalid("version", "%d, at least 1", m.Version)
	}
	if !isHexDigest(m.ContentSHA256) {
		return invalid("content_sha256", "%q is not 64 lowercase hex digits", truncate(m.ContentSHA256))
	}
	if m.Windows < 0 || m.Labels < 0 || m.Points < 0 {
		return invalid("windows", "counts must not be negative")
	}
	q := m.Quality
	for _, s := range []struct {
		name string
		v    float64
	}{
		{"completeness", q.Completeness}, {"timeliness", q.Timeliness}, {"label_coverage", q.LabelCoverage},
		{"label_agreement", q.LabelAgreement}, {"class_balance", q.ClassBalance}, {"duplicate_rate", q.DuplicateRate},
	} {
		if math.IsNaN(s.v) || s.v < 0 || s.v > 1 {
			return invalid("quality."+s.name, "%v is not in [0, 1]", s.v)
		}
	}
	if q.PointsPresent < 0 || q.PointsExpected < 0 || q.Timely < 0 || q.Labelled < 0 || q.MultiLabelled < 0 ||
		q.Agreeing < 0 || q.Classes < 0 || q.Duplicates < 0 {
		return invalid("quality", "counts must not be negative")
	}
	if q := m.Query; q.Tenant != "" && q.Tenant != m.Tenant || q.Limit < 0 {
		return invalid("query", "the tenant is not the manifest's, or the limit is negative")
	}
	if l := m.Lineage; l.To.Before(l.From) {
		return invalid("lineage", "to %s is before from %s", l.To.Format(time.RFC3339Nano), l.From.Format(time.RFC3339Nano))
	}
	seen := map[string]bool{}
	for i, f := range m.Files {
		if err := checkFilePath(f.Path); err != nil {
			return invalid("files", "file %d: %v", i, err.(*FieldError).Reason)
		}
		if seen[f.Path] {
			return invalid("files", "%q is listed twice", f.Path)
		}
		seen[f.Path] = true
		if !isHexDigest(f.SHA256) {
			return invalid("files", "%q: sha256 %q is not 64 lowercase hex digits", f.Path, truncate(f.SHA256))
		}
		if f.Rows < 0 || f.Bytes < 0 {
			return invalid("files", "%q: negative rows or bytes", f.Path)
		}
	}
	return nil
}

// checkFilePath accepts a relative, clean, slash-separated path of
// printable ASCII without "..".
func checkFilePath(p string) error {
	switch {
	case p == "" || len(p) > 256:
		return invalid("path", "%q must be 1 to 256 bytes", truncate(p))
	case strings.HasPrefix(p, "/"):
		return invalid("path", "%q is absolute", truncate(p))
	case path.Clean(p) != p || p == ".":
		return invalid("path", "%q is not clean", truncate(p))
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return invalid("path", "%q leaves the archive", truncate(p))
		}
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c > '~' || c == '\\' || c == ':' {
			return invalid("path", "%q: byte %d is not allowed", truncate(p), i)
		}
	}
	return nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkDatasetName checks a dataset's name: [a-z0-9][a-z0-9_.-]{0,63}.
func checkDatasetName(s string) error {
	if s == "" || len(s) > maxNameLen {
		return invalid("name", "%q must be 1 to %d bytes", truncate(s), maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return invalid("name", "%q must match [a-z0-9][a-z0-9_.-]* (byte %d)", truncate(s), i)
		}
	}
	return nil
}
