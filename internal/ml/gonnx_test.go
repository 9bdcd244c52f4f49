package ml

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// tiny builds a model of 2 float features: op(features, w) → score [1,1],
// with w a [2,1] float initializer (unused by unary ops).
func tiny(t testing.TB, op string, edit func(*onnx.ModelProto)) []byte {
	t.Helper()
	in := []string{PCAInput, "w"}
	if op != "MatMul" {
		in = []string{PCAInput}
	}
	mp := &onnx.ModelProto{
		IrVersion:   7,
		OpsetImport: []*onnx.OperatorSetIdProto{{Version: Opset}},
		Graph: &onnx.GraphProto{
			Name:        "tiny",
			Node:        []*onnx.NodeProto{{OpType: op, Name: "n0", Input: in, Output: []string{PCAOutput}}},
			Initializer: []*onnx.TensorProto{{Name: "w", Dims: []int64{2, 1}, DataType: int32(onnx.TensorProto_FLOAT), FloatData: []float32{1, 2}}},
			Input:       []*onnx.ValueInfoProto{tensorValue(PCAInput, onnx.TensorProto_FLOAT, 1, 2)},
			Output:      []*onnx.ValueInfoProto{tensorValue(PCAOutput, onnx.TensorProto_FLOAT, 1, 1)},
		},
	}
	if edit != nil {
		edit(mp)
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tinyMeta() Meta {
	return Meta{
		ID: "tiny", Version: 1, Kind: KindAnomaly, Input: PCAInput,
		Inputs:     []Feature{{Name: "a", Mean: 1, Std: 1}, {Name: "b", Mean: 2, Std: 1}},
		Outputs:    []Output{{Name: PCAOutput, Kind: OutputScore}},
		Thresholds: map[string]Threshold{"high": {Output: PCAOutput, Above: 10}},
		Budget:     Budget{MaxModelBytes: 4096, MaxNodes: 4, Deadline: Duration(time.Second)},
		Training:   Training{Dataset: "hand", DatasetVersion: "1", Vectors: 1, CreatedAt: fixedTime},
	}
}

func TestLoadFloatModel(t *testing.T) {
	s := load(t, tiny(t, "MatMul", nil), tinyMeta())
	r, err := s.Infer(context.Background(), []float64{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Outputs[PCAOutput]; !slices.Equal(got, []float64{11}) || !r.Flags["high"] {
		t.Fatalf("outputs %v flags %v, want [11] and high", got, r.Flags)
	}
	if sc := r.Scores(s.Meta()); sc[PCAOutput] != 11 || sc["high"] != 1 {
		t.Fatalf("scores %v", sc)
	}
}

func TestLoadRefusals(t *testing.T) {
	model, meta, _ := trained(t)
	with := func(f func(*Meta)) Meta {
		m := meta
		m.Inputs = slices.Clone(meta.Inputs)
		f(&m)
		return m
	}
	tm := tinyMeta()
	tests := []struct {
		name   string
		model  []byte
		meta   Meta
		wantIn string
	}{
		{"not onnx", []byte("this is not an ONNX model\n"), meta, "not an ONNX model"},
		{"empty", nil, meta, "not an ONNX model"},
		{"truncated", model[:len(model)/2], meta, "not an ONNX model"},
		{"oversize", model, with(func(m *Meta) { m.Budget.MaxModelBytes = len(model) - 1 }), "over the budget of"},
		{"too many nodes", model, with(func(m *Meta) { m.Budget.MaxNodes = 6 }), "graph has 7 nodes, over the budget of 6 (budget.max_nodes)"},
		{"unsupported op", tiny(t, "ReduceSum", nil), tm, `node 0 ("n0"): operator "ReduceSum" is not supported by gonnx (opset 13)`},
		{"custom domain", tiny(t, "MatMul", func(mp *onnx.ModelProto) { mp.Graph.Node[0].Domain = "com.example" }), tm, `operator domain "com.example"`},
		{"opset", tiny(t, "MatMul", func(mp *onnx.ModelProto) { mp.OpsetImport[0].Version = 17 }), tm, "opset 17 (highest import 17): gonnx runs opset 13 only"},
		{"input name", model, with(func(m *Meta) { m.Input = "x" }), `graph inputs [features] do not match the Meta: want the one input "x"`},
		{"input count", model, with(func(m *Meta) { m.Inputs = m.Inputs[:7] }), "graph input \"features\" has shape [1, 8], want [7] or [1, 7] for the 7 features"},
		{"input type", tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Input[0] = tensorValue(PCAInput, onnx.TensorProto_INT64, 1, 2)
		}), tm, "graph input \"features\": element type INT64, want FLOAT or DOUBLE"},
		{"output name", model, with(func(m *Meta) {
			m.Outputs = []Output{{Name: "err", Kind: OutputScore}}
			m.Thresholds = map[string]Threshold{"anomaly": {Output: "err", Above: 1}}
		}), "graph outputs [score] do not match the Meta's outputs [err]"},
		{"score shape", tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Output[0] = tensorValue(PCAOutput, onnx.TensorProto_FLOAT, 1, 2)
		}), tm, `graph output "score" has shape [1, 2]: a score output holds one number`},
		{"external data", tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Initializer[0].DataLocation = onnx.TensorProto_EXTERNAL
		}), tm, `initializer "w" has external data`},
		{"values for dims", tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Initializer[0].FloatData = nil
			mp.Graph.Initializer[0].RawData = []byte{1, 2, 3, 4}
		}), tm, `initializer "w" has 1 values for dims [2 1]`},
		{"trial fails", tiny(t, "MatMul", func(mp *onnx.ModelProto) {
			mp.Graph.Initializer[0].Dims = []int64{3, 1}
			mp.Graph.Initializer[0].FloatData = []float32{1, 2, 3}
		}), tm, "trial inference on the inputs' means"},
		{"invalid meta", model, with(func(m *Meta) { m.Budget.Deadline = 0 }), "budget.deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewGonnx().Load(tt.model, tt.meta)
			if err == nil {
				s.Close()
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("%v does not wrap ErrRefused", err)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not say %q", err, tt.wantIn)
			}
		})
	}
}

func TestInferErrors(t *testing.T) {
	model, meta, _ := trained(t)
	s := load(t, model, meta)
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	ok := make([]float64, 8)
	tests := []struct {
		name     string
		ctx      context.Context
		features []float64
		want     error
	}{
		{"expired", expired, ok, context.DeadlineExceeded},
		{"canceled", canceled, ok, context.Canceled},
		{"too few", context.Background(), ok[:7], ErrInput},
		{"NaN", context.Background(), []float64{0, 0, 0, nan(), 0, 0, 0, 0}, ErrInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := s.Infer(tt.ctx, tt.features)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Errorf("took %v", d)
			}
		})
	}
	s.Close()
	if _, err := s.Infer(context.Background(), ok); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A busy or stuck worker does not hold a caller past its deadline: a fake
// worker takes the request and never answers, and the queue behind it
// does not move.
func TestInferDeadlineWhileBusy(t *testing.T) {
	meta := tinyMeta()
	meta.Budget.Deadline = Duration(30 * time.Millisecond)
	s := &gonnxSession{meta: meta, io: graphIO{rank: 2}, reqs: make(chan request), quit: make(chan struct{}), done: make(chan struct{})}
	taken := make(chan struct{})
	go func() { // the fake worker: takes one request, answers none
		defer close(s.done)
		select {
		case <-s.reqs:
			close(taken)
		case <-s.quit:
			return
		}
		<-s.quit
	}()
	tests := []struct {
		name    string
		timeout time.Duration // of the caller's ctx; 0: none, the budget's applies
	}{
		{"taken, budget deadline", 0},
		{"queued, ctx deadline", 10 * time.Millisecond},
		{"queued, budget deadline", time.Hour},
	}
	for i, tt := range tests {
		ctx := context.Background()
		if tt.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, tt.timeout)
			defer cancel()
		}
		start := time.Now()
		_, err := s.Infer(ctx, []float64{1, 2})
		d := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: %v", tt.name, err)
		}
		expect := meta.Budget.Deadline.D()
		if tt.timeout > 0 {
			expect = min(expect, tt.timeout)
		}
		if d > expect+200*time.Millisecond {
			t.Errorf("%s: returned after %v, deadline %v", tt.name, d, expect)
		}
		if i == 0 {
			<-taken
		}
	}
	s.Close()
}

// Concurrent callers each get their own answer.
func TestInferConcurrent(t *testing.T) {
	model, meta, syn := trained(t)
	s := load(t, model, meta)
	xs := syn.vectors(16)
	want := make([]float64, len(xs))
	for i, x := range xs {
		r, err := s.Infer(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r.Outputs[PCAOutput][0]
	}
	var wg sync.WaitGroup
	for i := range xs {
		wg.Go(func() {
			for range 20 {
				r, err := s.Infer(context.Background(), xs[i])
				if err != nil {
					t.Error(err)
					return
				}
				if got := r.Outputs[PCAOutput][0]; got != want[i] {
					t.Errorf("vector %d: %v, want %v", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzLoad(f *testing.F) {
	syn := newSynth(7, 4, 2)
	model, meta, err := TrainPCA(syn.vectors(200), featureNames(4), testOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(model)
	f.Add(model[:len(model)-3])
	flipped := slices.Clone(model)
	flipped[len(flipped)/3] ^= 0x40
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte("not onnx"))
	f.Add(tiny(f, "ReduceSum", nil))
	f.Add(tiny(f, "MatMul", func(mp *onnx.ModelProto) {
		mp.Graph.Initializer[0].Dims = []int64{1 << 20, 1 << 20}
	}))
	f.Add(tiny(f, "MatMul", func(mp *onnx.ModelProto) {
		mp.Graph.Initializer[0].FloatData = nil
		mp.Graph.Initializer[0].RawData = []byte{1, 2, 3}
	}))
	tm := tinyMeta()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []Meta{meta, tm} {
			s, err := NewGonnx().Load(b, m)
			if err != nil {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("%v does not wrap ErrRefused", err)
				}
				continue
			}
			// Whatever it gives, it must not panic.
			_, _ = s.Infer(context.Background(), make([]float64, len(m.Inputs)))
			s.Close()
		}
	})
}

func TestCatchTurnsPanicIntoError(t *testing.T) {
	err := catch("run", func() error { panic("index out of range") })
	if err == nil || !strings.Contains(err.Error(), "gonnx panicked in run: index out of range") {
		t.Fatalf("got %v", err)
	}
}

// The package doc lists the operators gonnx runs.
func TestDocListsSupportedOperators(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.ReplaceAll(string(b), "\n//", "")
	i, j := strings.Index(doc, "runs: "), strings.Index(doc, " ((*Gonnx).SupportedOperators)")
	if i < 0 || j < i {
		t.Fatal("operator list not found in doc.go")
	}
	listed := strings.Split(doc[i+len("runs: "):j], ", ")
	if want := NewGonnx().SupportedOperators(); !slices.Equal(listed, want) {
		t.Errorf("doc.go lists %v\ngonnx runs %v", listed, want)
	}
}
