package dataset

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// The files of an export.
const (
	ManifestFile  = "manifest.json"
	WindowsFile   = "windows.parquet"
	SamplesFile   = "samples.parquet"
	SummariesFile = "summaries.parquet"
)

// FeaturePrefix starts the name of each feature's column in
// windows.parquet.
const FeaturePrefix = "feature_"

// rowsPerGroup bounds a Parquet row group (which the writer holds in
// memory until it is full).
const rowsPerGroup = 1 << 20

// WindowRow is a row of windows.parquet without its feature columns.
type WindowRow struct {
	ID             string `parquet:"id"`
	Object         string `parquet:"object,dict"`
	Model          string `parquet:"model,dict"`
	Firmware       string `parquet:"firmware,dict"`
	Edge           string `parquet:"edge,dict"`
	Reason         string `parquet:"reason,dict"`
	Ref            string `parquet:"ref"`
	Loop           string `parquet:"loop,dict"`
	FromMS         int64  `parquet:"from_ms"`
	ToMS           int64  `parquet:"to_ms"`
	CapturedMS     int64  `parquet:"captured_ms"`
	Classification string `parquet:"classification,dict"`
	Raw            bool   `parquet:"raw"`
	Label          string `parquet:"label,dict"`       // the majority label's kind, "" without one
	LabelClass     string `parquet:"label_class,dict"` // its class, for kind class
	Labels         int32  `parquet:"labels"`           // how many labels the window has
}

// SampleRow is a row of samples.parquet: one point of a series.
type SampleRow struct {
	WindowID string  `parquet:"window_id,dict"`
	Object   string  `parquet:"object,dict"`
	Property string  `parquet:"property,dict"`
	TimeMS   int64   `parquet:"time_ms,delta"`
	Value    float64 `parquet:"value"`
}

// SummaryRow is a row of summaries.parquet: one property's Stats in one
// window, for every property with a summary (redacted ones too).
type SummaryRow struct {
	WindowID string  `parquet:"window_id,dict"`
	Object   string  `parquet:"object,dict"`
	Property string  `parquet:"property,dict"`
	N        int64   `parquet:"n"`
	Mean     float64 `parquet:"mean"`
	Min      float64 `parquet:"min"`
	Max      float64 `parquet:"max"`
	Std      float64 `parquet:"std"`
	Raw      bool    `parquet:"raw"` // the property's series is in samples.parquet
}

// Export writes a version (version "" is the newest) as a zip archive of
// windows.parquet, samples.parquet, summaries.parquet and manifest.json,
// whose Files give each Parquet file's SHA-256, rows and size. The Parquet
// files are written as they are read from the database (zip entries
// stored, not deflated: Parquet pages are zstd-compressed already), so
// the export needs no temporary space; manifest.json comes last.
func (s *Store) Export(ctx context.Context, tenant, name, version string, w io.Writer) error {
	m, err := s.Manifest(ctx, tenant, name, version)
	if err != nil {
		return err
	}
	windows, err := s.versionWindows(ctx, m)
	if err != nil {
		return fmt.Errorf("dataset: export %s/%s@%d: %w", tenant, name, m.Version, err)
	}
	labels, err := versionLabels(ctx, s.db.R, tenant, name, m.Version)
	if err != nil {
		return fmt.Errorf("dataset: export %s/%s@%d: %w", tenant, name, m.Version, err)
	}
	raw := map[string]map[string]bool{} // window id → properties with a series
	zw := zip.NewWriter(w)
	add := func(path string, write func(io.Writer) (int64, error)) error {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: path, Method: zip.Store, Modified: m.CreatedAt})
		if err != nil {
			return err
		}
		cw := &countingWriter{w: fw, h: sha256.New()}
		rows, err := write(cw)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		m.Files = append(m.Files, File{Path: path, SHA256: hex.EncodeToString(cw.h.Sum(nil)), Rows: rows, Bytes: cw.n})
		return nil
	}
	err = add(WindowsFile, func(w io.Writer) (int64, error) { return writeWindows(w, windows, labels) })
	if err == nil {
		err = add(SamplesFile, func(w io.Writer) (int64, error) { return s.writeSamples(ctx, w, m, raw) })
	}
	if err == nil {
		err = add(SummariesFile, func(w io.Writer) (int64, error) { return writeSummaries(w, windows, raw) })
	}
	if err == nil {
		var b []byte
		if b, err = json.MarshalIndent(m, "", "  "); err == nil {
			var fw io.Writer
			if fw, err = zw.CreateHeader(&zip.FileHeader{Name: ManifestFile, Method: zip.Deflate, Modified: m.CreatedAt}); err == nil {
				_, err = fw.Write(append(b, '\n'))
			}
		}
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return fmt.Errorf("dataset: export %s/%s@%d: %w", tenant, name, m.Version, err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// versionWindows returns a version's windows without their series, in id
// order.
func (s *Store) versionWindows(ctx context.Context, m *Manifest) ([]*Window, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+windowColumns+` FROM dataset_version_windows vw
		JOIN dataset_windows w ON w.tenant = vw.tenant AND w.id = vw.window_id
		WHERE vw.tenant = ? AND vw.name = ? AND vw.version = ? ORDER BY w.id`, m.Tenant, m.Name, m.Version)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Window
	for rows.Next() {
		w, err := scanWindow(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != m.Windows {
		return nil, fmt.Errorf("the version lists %d windows, %d are stored", m.Windows, len(out))
	}
	return out, nil
}

func writerOptions() []parquet.WriterOption {
	return []parquet.WriterOption{
		parquet.Compression(&parquet.Zstd),
		// Version 1 data pages: what every Parquet reader reads.
		parquet.DataPageVersion(1),
		parquet.MaxRowsPerRowGroup(rowsPerGroup),
		parquet.CreatedBy("wanwu", Schema, ""),
	}
}

// windowRowType is WindowRow followed by one optional DOUBLE column per
// feature name (FeaturePrefix and the name), in the order given: a pandas
// user reads the features as plain columns, NaN where a window lacks one.
func windowRowType(features []string) reflect.Type {
	base := reflect.TypeFor[WindowRow]()
	fields := make([]reflect.StructField, 0, base.NumField()+len(features))
	for i := range base.NumField() {
		fields = append(fields, base.Field(i))
	}
	for i, f := range features {
		// Names passed checkName: no comma or quote can break the tag.
		fields = append(fields, reflect.StructField{
			Name: "F" + strconv.Itoa(i),
			Type: reflect.TypeFor[*float64](),
			Tag:  reflect.StructTag(`parquet:"` + FeaturePrefix + f + `,optional"`),
		})
	}
	return reflect.StructOf(fields)
}

func writeWindows(w io.Writer, windows []*Window, labels map[string][]*Label) (int64, error) {
	names := map[string]bool{}
	for _, win := range windows {
		for f := range win.Features {
			names[f] = true
		}
	}
	features := slices.Sorted(maps.Keys(names))
	t := windowRowType(features)
	pw := parquet.NewWriter(w, append(writerOptions(), parquet.SchemaOf(reflect.New(t).Interface()))...)
	row := reflect.New(t)
	for _, win := range windows {
		ls := labels[win.ID]
		base := WindowRow{
			ID: win.ID, Object: win.Object, Model: win.Model, Firmware: win.Firmware, Edge: win.Edge,
			Reason: win.Reason, Ref: win.Ref, Loop: win.Loop, FromMS: win.From.UnixMilli(), ToMS: win.To.UnixMilli(),
			CapturedMS: win.CapturedAt.UnixMilli(), Classification: win.Classification, Raw: win.Raw, Labels: int32(len(ls)),
		}
		base.Label, base.LabelClass = splitKey(majority(ls))
		v := row.Elem()
		v.SetZero()
		for i := range reflect.TypeFor[WindowRow]().NumField() {
			v.Field(i).Set(reflect.ValueOf(base).Field(i))
		}
		off := reflect.TypeFor[WindowRow]().NumField()
		for i, f := range features {
			if x, ok := win.Features[f]; ok {
				v.Field(off + i).Set(reflect.ValueOf(&x))
			}
		}
		if err := pw.Write(row.Interface()); err != nil {
			return 0, err
		}
	}
	if err := pw.Close(); err != nil {
		return 0, err
	}
	return int64(len(windows)), nil
}

// splitKey splits a label key into kind and class.
func splitKey(key string) (kind, class string) {
	if c, ok := strings.CutPrefix(key, KindClass+":"); ok {
		return KindClass, c
	}
	return key, ""
}

// writeSamples streams the version's series from the database, one window
// at a time, and notes in raw which properties of each window have one.
func (s *Store) writeSamples(ctx context.Context, w io.Writer, m *Manifest, raw map[string]map[string]bool) (int64, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT w.id, w.object, w.series FROM dataset_version_windows vw
		JOIN dataset_windows w ON w.tenant = vw.tenant AND w.id = vw.window_id
		WHERE vw.tenant = ? AND vw.name = ? AND vw.version = ? ORDER BY w.id`, m.Tenant, m.Name, m.Version)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	pw := parquet.NewGenericWriter[SampleRow](w, writerOptions()...)
	var n int64
	var buf []SampleRow
	for rows.Next() {
		var id, object, text string
		if err := rows.Scan(&id, &object, &text); err != nil {
			return 0, err
		}
		var series map[string][]Point
		if err := json.Unmarshal([]byte(text), &series); err != nil {
			return 0, fmt.Errorf("window %s: series: %w", id, err)
		}
		buf = buf[:0]
		raw[id] = map[string]bool{}
		for _, prop := range slices.Sorted(maps.Keys(series)) {
			raw[id][prop] = true
			for _, p := range series[prop] {
				buf = append(buf, SampleRow{WindowID: id, Object: object, Property: prop, TimeMS: p.T.UnixMilli(), Value: p.V})
			}
		}
		if _, err := pw.Write(buf); err != nil {
			return 0, err
		}
		n += int64(len(buf))
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if err := pw.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

func writeSummaries(w io.Writer, windows []*Window, raw map[string]map[string]bool) (int64, error) {
	pw := parquet.NewGenericWriter[SummaryRow](w, writerOptions()...)
	var n int64
	for _, win := range windows {
		var buf []SummaryRow
		for _, prop := range slices.Sorted(maps.Keys(win.Summary)) {
			st := win.Summary[prop]
			buf = append(buf, SummaryRow{WindowID: win.ID, Object: win.Object, Property: prop, N: int64(st.N),
				Mean: st.Mean, Min: st.Min, Max: st.Max, Std: st.Std, Raw: raw[win.ID][prop]})
		}
		if _, err := pw.Write(buf); err != nil {
			return 0, err
		}
		n += int64(len(buf))
	}
	if err := pw.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

// Each calls fn with every window of a version (version "": the newest),
// with its series, in id order, and the key of its majority label at the
// version's build ("" without one; "class:<class>" for a class): what a
// trainer reads.
func (s *Store) Each(ctx context.Context, tenant, name, version string, fn func(w *Window, label string) error) error {
	m, err := s.Manifest(ctx, tenant, name, version)
	if err != nil {
		return err
	}
	ws, err := s.versionWindows(ctx, m)
	if err != nil {
		return fmt.Errorf("dataset: %s@%d: %w", m.Name, m.Version, err)
	}
	labels, err := versionLabels(ctx, s.db.R, m.Tenant, m.Name, m.Version)
	if err != nil {
		return fmt.Errorf("dataset: %s@%d: %w", m.Name, m.Version, err)
	}
	for _, w := range ws {
		full, err := s.Window(ctx, m.Tenant, w.ID)
		if err != nil {
			return err
		}
		if err := fn(full, majority(labels[w.ID])); err != nil {
			return err
		}
	}
	return nil
}
