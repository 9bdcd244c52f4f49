package ml

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
)

// examplesDir holds the models trained outside Go (docs/MODELS.md): each
// <name>.onnx with its <name>.meta.json, the rows to run it on
// (<name>.inputs.json) and what onnxruntime outputs for them
// (<name>.reference.json).
const examplesDir = "../../examples/models/ml"

// referenceTolerance is the largest relative difference from onnxruntime's
// outputs accepted (with an absolute floor for values near 0).
const (
	referenceTolerance = 1e-4
	referenceFloor     = 1e-9
)

// TestExampleModels loads every example model with its Meta through the
// gonnx runtime, as `wanwu ctl ml register` and an edge would, and
// compares its outputs on the example's rows with onnxruntime's. It needs
// only Go and the files.
func TestExampleModels(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(filepath.FromSlash(examplesDir), "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no models in %s", examplesDir)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".onnx")
		t.Run(name, func(t *testing.T) { checkReference(t, examplesDir, name) })
	}
}

// referenceFile is a <name>.reference.json file: each output's values for
// each row, as onnxruntime gave them.
type referenceFile struct {
	Producer string                 `json:"producer"`
	Outputs  map[string][][]float64 `json:"outputs"`
}

// checkReference runs <dir>/<name>.onnx on its rows with gonnx and compares
// every output with <name>.reference.json; the thresholds' flags and the
// class outputs' largest index must agree with what the reference values
// give. Where the rows have labels it logs how many the class output gets
// right; the rows must fall on both sides of every threshold.
func checkReference(t *testing.T, dir, name string) {
	f := readModelFiles(t, dir, name)
	b, err := os.ReadFile(filepath.Join(filepath.FromSlash(dir), name+".reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref referenceFile
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("%s.reference.json: %v", name, err)
	}
	outs := f.in.outputNames()
	metaOuts := make([]string, len(f.meta.Outputs))
	for i, o := range f.meta.Outputs {
		metaOuts[i] = o.Name
	}
	if !sameSet(outs, metaOuts) {
		t.Fatalf("%s.inputs.json names the outputs %v, the Meta %v", name, outs, metaOuts)
	}
	for _, o := range outs {
		if len(ref.Outputs[o]) != len(f.in.Rows) {
			t.Fatalf("%s.reference.json has %d values of %q for %d rows: regenerate it", name, len(ref.Outputs[o]), o, len(f.in.Rows))
		}
	}
	if f.in.Labels != nil && len(f.in.Labels) != len(f.in.Rows) {
		t.Fatalf("%d labels for %d rows", len(f.in.Labels), len(f.in.Rows))
	}
	s := load(t, f.model, f.meta)
	worst := 0.0
	crossed := map[string]int{}
	right := 0
	for i, x := range f.in.Rows {
		r, err := s.Infer(context.Background(), x)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		for _, o := range f.meta.Outputs {
			got, want := r.Outputs[o.Name], ref.Outputs[o.Name][i]
			if len(got) != len(want) {
				t.Fatalf("row %d, output %q: gonnx gives %d values, %s %d", i, o.Name, len(got), ref.Producer, len(want))
			}
			for j := range got {
				d := math.Abs(got[j] - want[j])
				worst = max(worst, d/max(math.Abs(want[j]), referenceFloor))
				if d > max(referenceTolerance*math.Abs(want[j]), referenceFloor) {
					t.Errorf("row %d, %s[%d]: gonnx %v, %s %v", i, o.Name, j, got[j], ref.Producer, want[j])
				}
			}
			if o.Kind == OutputClass {
				if g, w := argmax(got), argmax(want); g != w {
					t.Errorf("row %d, %s: gonnx says class %d, %s %d", i, o.Name, g, ref.Producer, w)
				} else if f.in.Labels != nil && g == f.in.Labels[i] {
					right++
				}
			}
		}
		for th, level := range f.meta.Thresholds {
			want := ref.Outputs[level.Output][i][0]
			if math.Abs(want-level.Above) <= referenceTolerance*math.Abs(want) {
				continue // too close to tell
			}
			if r.Flags[th] != (want > level.Above) {
				t.Errorf("row %d: threshold %q is %v, the reference value %v against %v", i, th, r.Flags[th], want, level.Above)
			}
			if r.Flags[th] {
				crossed[th]++
			}
		}
	}
	t.Logf("%s: %d rows, largest relative difference from %s: %.3g", name, len(f.in.Rows), ref.Producer, worst)
	if f.in.Labels != nil && slices.ContainsFunc(f.meta.Outputs, func(o Output) bool { return o.Kind == OutputClass }) {
		t.Logf("%s: the class output matches the generator's label in %d of %d rows", name, right, len(f.in.Rows))
	}
	for th := range f.meta.Thresholds {
		if n := crossed[th]; n == 0 || n == len(f.in.Rows) {
			t.Errorf("threshold %q crossed in %d of %d rows: the rows should fall on both sides", th, n, len(f.in.Rows))
		}
	}
}

// docs/MODELS.md says that gonnx (v1.1.0) runs Gemm in float only: on
// doubles it fails, and Load refuses the model at its trial run. If a
// newer gonnx runs it, this test fails: update the page.
func TestGemmRunsInFloatOnly(t *testing.T) {
	for _, tt := range []struct {
		dt     onnx.TensorProto_DataType
		refuse bool
	}{{onnx.TensorProto_FLOAT, false}, {onnx.TensorProto_DOUBLE, true}} {
		w := &onnx.TensorProto{Name: "w", Dims: []int64{2, 1}, DataType: int32(tt.dt)}
		c := &onnx.TensorProto{Name: "c", Dims: []int64{1}, DataType: int32(tt.dt)}
		if tt.dt == onnx.TensorProto_FLOAT {
			w.FloatData, c.FloatData = []float32{1, 2}, []float32{0.5}
		} else {
			w.DoubleData, c.DoubleData = []float64{1, 2}, []float64{0.5}
		}
		model := tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Node[0].OpType = "Gemm"
			mp.Graph.Node[0].Input = []string{PCAInput, "w", "c"}
			mp.Graph.Initializer = []*onnx.TensorProto{w, c}
			mp.Graph.Input[0] = tensorValue(PCAInput, tt.dt, 1, 2)
			mp.Graph.Output[0] = tensorValue(PCAOutput, tt.dt, 1, 1)
		})
		s, err := NewGonnx().Load(model, tinyMeta())
		if tt.refuse {
			if err == nil {
				s.Close()
				t.Fatalf("%s: Gemm loaded: gonnx runs it on doubles now (docs/MODELS.md says it does not)", tt.dt)
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "trial inference") {
				t.Fatalf("%s: %v, want a refusal at the trial inference", tt.dt, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.dt, err)
		}
		r, err := s.Infer(context.Background(), []float64{3, 4})
		s.Close()
		if err != nil || r.Outputs[PCAOutput][0] != 11.5 {
			t.Fatalf("%s: %v, %v; want 3·1 + 4·2 + 0.5 = 11.5", tt.dt, r.Outputs, err)
		}
	}
}
