package dataset_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

type exported struct {
	manifest *dataset.Manifest
	files    map[string][]byte
	// Rows read back generically (column name → value; nil for null).
	windows, samples, summaries []map[string]any
	windowColumns               []string
}

// export exports a version and reads everything back with parquet-go's
// generic reader, independently of the row types the export writes.
func export(t *testing.T, e *env, name, version string) *exported {
	t.Helper()
	var buf bytes.Buffer
	if err := e.ds.Export(e.ctx, "acme", name, version, &buf); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	x := &exported{files: map[string][]byte{}}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		x.files[f.Name] = b
	}
	if got := slices.Sorted(maps.Keys(x.files)); strings.Join(got, " ") != "manifest.json samples.parquet summaries.parquet windows.parquet" {
		t.Fatalf("archive holds %v", got)
	}
	if x.manifest, err = dataset.ParseManifest(x.files[dataset.ManifestFile]); err != nil {
		t.Fatalf("the exported manifest does not parse: %v", err)
	}
	x.windows, x.windowColumns = readParquet(t, x.files[dataset.WindowsFile])
	x.samples, _ = readParquet(t, x.files[dataset.SamplesFile])
	x.summaries, _ = readParquet(t, x.files[dataset.SummariesFile])
	return x
}

func readParquet(t *testing.T, b []byte) ([]map[string]any, []string) {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var columns []string
	for _, path := range f.Schema().Columns() {
		columns = append(columns, strings.Join(path, "."))
	}
	r := parquet.NewReader(f)
	defer r.Close()
	var out []map[string]any
	rows := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(rows)
		for _, row := range rows[:n] {
			m := map[string]any{}
			for _, v := range row {
				var x any
				switch {
				case v.IsNull():
				case v.Kind() == parquet.ByteArray:
					x = string(v.ByteArray())
				case v.Kind() == parquet.Int64:
					x = v.Int64()
				case v.Kind() == parquet.Int32:
					x = int64(v.Int32())
				case v.Kind() == parquet.Double:
					x = v.Double()
				case v.Kind() == parquet.Boolean:
					x = v.Boolean()
				default:
					t.Fatalf("column %s: value of kind %v", columns[v.Column()], v.Kind())
				}
				m[columns[v.Column()]] = x
			}
			out = append(out, m)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if int64(len(out)) != f.NumRows() {
		t.Fatalf("read %d rows of %d", len(out), f.NumRows())
	}
	return out, columns
}

func equalRows(a, b []map[string]any) bool { return reflect.DeepEqual(a, b) }

func TestExport(t *testing.T) {
	e := open(t)
	ids := qualitySet(t, e, []int{0, 1, 2, 3})
	// A window an edge redacted: its core series stayed at the edge.
	w := window()
	w.Ref, w.Classification, w.Edge = "alarm-5", thingmodel.ClassCore, "acme:edge-1"
	w.Series["pressure"] = series(0, time.Second, 3, ramp)
	w.Features = map[string]float64{"vib.rms-1": 0.25}
	redacted := e.add(t, dataset.Redact(w, func(p string) bool { return p != "pressure" }))
	e.label(t, "alice", redacted.ID, dataset.KindClass, "leak")

	built, err := e.ds.Build(e.ctx, "ops", "acme", "pumps", dataset.Query{})
	if err != nil {
		t.Fatal(err)
	}
	x := export(t, e, "pumps", "")

	// The manifest: the stored one, with a digest for each file.
	files := x.manifest.Files
	x.manifest.Files = nil
	if !reflect.DeepEqual(x.manifest, built) {
		t.Fatalf("exported manifest\n%+v\nbuilt\n%+v", x.manifest, built)
	}
	rows := map[string]int64{dataset.WindowsFile: 5, dataset.SamplesFile: 35 + 10, dataset.SummariesFile: 6}
	if len(files) != 3 {
		t.Fatalf("files %+v", files)
	}
	for _, f := range files {
		b := x.files[f.Path]
		sum := sha256.Sum256(b)
		if f.SHA256 != hex.EncodeToString(sum[:]) || f.Bytes != int64(len(b)) || f.Rows != rows[f.Path] {
			t.Errorf("file %+v: sha256 %x, %d bytes, want %d rows", f, sum, len(b), rows[f.Path])
		}
	}

	// windows.parquet: one row per window, as stored, with its majority
	// label and one column per feature.
	wantColumns := []string{"id", "object", "model", "firmware", "edge", "reason", "ref", "loop", "from_ms", "to_ms",
		"captured_ms", "classification", "raw", "label", "label_class", "labels", "feature_temp_mean", "feature_temp_rate", "feature_vib.rms-1"}
	if !slices.Equal(x.windowColumns, wantColumns) {
		t.Fatalf("windows.parquet columns %v, want %v", x.windowColumns, wantColumns)
	}
	stored, err := e.ds.Windows(e.ctx, dataset.Query{Tenant: "acme", WithSeries: true})
	if err != nil {
		t.Fatal(err)
	}
	label := map[string][3]any{ // kind, class, count
		ids["a"]: {"true_positive", "", int64(2)}, ids["b"]: {"", "", int64(0)}, ids["c"]: {"", "", int64(2)},
		ids["d"]: {"normal", "", int64(1)}, redacted.ID: {"class", "leak", int64(1)},
	}
	var wantWindows, wantSamples, wantSummaries []map[string]any
	for _, w := range stored {
		feature := func(name string) any {
			if v, ok := w.Features[name]; ok {
				return v
			}
			return nil
		}
		wantWindows = append(wantWindows, map[string]any{
			"id": w.ID, "object": w.Object, "model": w.Model, "firmware": w.Firmware, "edge": w.Edge, "reason": w.Reason,
			"ref": w.Ref, "loop": w.Loop, "from_ms": w.From.UnixMilli(), "to_ms": w.To.UnixMilli(),
			"captured_ms": w.CapturedAt.UnixMilli(), "classification": w.Classification, "raw": w.Raw,
			"label": label[w.ID][0], "label_class": label[w.ID][1], "labels": label[w.ID][2],
			"feature_temp_mean": feature("temp_mean"), "feature_temp_rate": feature("temp_rate"),
			"feature_vib.rms-1": feature("vib.rms-1"),
		})
		for _, prop := range slices.Sorted(maps.Keys(w.Series)) {
			for _, p := range w.Series[prop] {
				wantSamples = append(wantSamples, map[string]any{
					"window_id": w.ID, "object": w.Object, "property": prop, "time_ms": p.T.UnixMilli(), "value": p.V,
				})
			}
		}
		for _, prop := range slices.Sorted(maps.Keys(w.Summary)) {
			s := w.Summary[prop]
			_, raw := w.Series[prop]
			wantSummaries = append(wantSummaries, map[string]any{
				"window_id": w.ID, "object": w.Object, "property": prop, "n": int64(s.N),
				"mean": s.Mean, "min": s.Min, "max": s.Max, "std": s.Std, "raw": raw,
			})
		}
	}
	for _, c := range []struct {
		name      string
		got, want []map[string]any
	}{{"windows", x.windows, wantWindows}, {"samples", x.samples, wantSamples}, {"summaries", x.summaries, wantSummaries}} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s.parquet: %d rows, want %d", c.name, len(c.got), len(c.want))
		}
		for i := range c.got {
			if !reflect.DeepEqual(c.got[i], c.want[i]) {
				t.Fatalf("%s.parquet row %d\n%v\nwant\n%v", c.name, i, c.got[i], c.want[i])
			}
		}
	}
	// The redacted window's core property is in the summaries only.
	for _, s := range x.summaries {
		if s["window_id"] == redacted.ID && s["property"] == "pressure" && (s["raw"] != false || s["n"] != int64(3)) {
			t.Fatalf("the redacted summary %v", s)
		}
	}

	// The typed rows read back too.
	samples, err := parquet.Read[dataset.SampleRow](bytes.NewReader(x.files[dataset.SamplesFile]), int64(len(x.files[dataset.SamplesFile])))
	if err != nil || len(samples) != len(wantSamples) || samples[0].WindowID != wantSamples[0]["window_id"] {
		t.Fatalf("typed samples: %d rows, %v", len(samples), err)
	}

	// An export is deterministic.
	if again := export(t, e, "pumps", "1"); !bytes.Equal(again.files[dataset.WindowsFile], x.files[dataset.WindowsFile]) {
		t.Errorf("two exports of a version differ")
	}
	var buf bytes.Buffer
	if err := e.ds.Export(e.ctx, "acme", "pumps", "2", &buf); !errors.Is(err, dataset.ErrNotFound) {
		t.Fatalf("export of a missing version: %v", err)
	}
}
