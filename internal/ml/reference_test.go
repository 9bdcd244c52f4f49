package ml

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/pca8.onnx, pca8.meta.json and pca8.inputs.json (then run testdata/reference.mjs)")

const (
	refModel     = "testdata/pca8.onnx"
	refMeta      = "testdata/pca8.meta.json"
	refInputs    = "testdata/pca8.inputs.json"
	refReference = "testdata/pca8.reference.json"
)

type refInputsFile struct {
	Input  string      `json:"input"`
	Shape  []int       `json:"shape"`
	Output string      `json:"output"`
	Rows   [][]float64 `json:"rows"`
}

type refOutputsFile struct {
	Producer string      `json:"producer"`
	Outputs  [][]float64 `json:"outputs"`
}

// TestReferenceFiles rewrites the checked-in model, its Meta and the
// inputs with -update (TrainPCA, fixed seed); it is skipped otherwise.
func TestReferenceFiles(t *testing.T) {
	if !*update {
		t.Skip("-update rewrites the reference model and inputs")
	}
	s := newSynth(42, 8, 3)
	opts := testOptions()
	opts.ID, opts.DatasetVersion = "pca8-reference", "seed-42"
	opts.Budget = Budget{MaxModelBytes: 64 << 10, MaxNodes: 16, Deadline: Duration(10 * time.Millisecond)}
	model, meta, err := TrainPCA(s.vectors(2000), featureNames(8), opts)
	if err != nil {
		t.Fatal(err)
	}
	in := refInputsFile{Input: meta.Input, Shape: []int{1, 8}, Output: PCAOutput}
	for i := range 24 {
		switch i % 3 {
		case 0:
			in.Rows = append(in.Rows, s.normal())
		case 1:
			in.Rows = append(in.Rows, s.anomaly(0.5+float64(i)/8))
		default:
			x := make([]float64, 8)
			for j := range x {
				x[j] = 40*s.rng.Float64() - 20
			}
			in.Rows = append(in.Rows, x)
		}
	}
	metaJSON, _ := json.MarshalIndent(meta, "", "  ")
	inJSON, _ := json.MarshalIndent(in, "", "  ")
	for name, b := range map[string][]byte{refModel: model, refMeta: append(metaJSON, '\n'), refInputs: append(inJSON, '\n')} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %s (%d bytes), %s, %s: now run testdata/reference.mjs (see testdata/README.md)", refModel, len(model), refMeta, refInputs)
}

// TestReferenceOutputs runs the checked-in model with gonnx and compares
// with the outputs onnxruntime gave for the same inputs (testdata/README.md).
func TestReferenceOutputs(t *testing.T) {
	read := func(name string, v any) []byte {
		b, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Fatal(err)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		return b
	}
	model := read(refModel, nil)
	meta, err := ParseMeta(read(refMeta, nil))
	if err != nil {
		t.Fatal(err)
	}
	var in refInputsFile
	var ref refOutputsFile
	read(refInputs, &in)
	read(refReference, &ref)
	if len(ref.Outputs) != len(in.Rows) || len(in.Rows) == 0 {
		t.Fatalf("%d reference outputs for %d inputs: regenerate %s", len(ref.Outputs), len(in.Rows), refReference)
	}
	s := load(t, model, meta)
	flagged, worst := 0, 0.0
	for i, x := range in.Rows {
		r, err := s.Infer(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		got, want := r.Outputs[PCAOutput][0], ref.Outputs[i][0]
		worst = max(worst, math.Abs(got-want)/math.Abs(want))
		if math.Abs(got-want) > 1e-4*math.Abs(want) {
			t.Errorf("row %d: gonnx %v, %s %v", i, got, ref.Producer, want)
		}
		if r.Flags[PCAThreshold] {
			flagged++
		}
	}
	t.Logf("%d rows, largest relative difference from %s: %.3g", len(in.Rows), ref.Producer, worst)
	// The rows hold normal vectors, anomalies and random points: both
	// sides of the threshold are exercised.
	if flagged == 0 || flagged == len(in.Rows) {
		t.Errorf("%d of %d rows flagged", flagged, len(in.Rows))
	}
}
