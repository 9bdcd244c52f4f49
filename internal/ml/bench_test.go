package ml

// The benchmarks bench/ml.sh runs beside onnxruntime-node (bench/ml.mjs
// runs the same model files on the same rows; bench/RESULTS.md, "Models
// (issue 21)"): the inference per call and the load of the two benchmark
// models, and the memory a loaded model holds. ae32, the second model, is
// written by TestBenchModelFiles with -update.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// modelInputs is a <name>.inputs.json file: the rows to run a model on.
// pca8.inputs.json names its one output in output and has double rows;
// the others list outputs and give the input's element type.
type modelInputs struct {
	Input   string      `json:"input"`
	DType   string      `json:"dtype,omitempty"` // "float32" or "float64" (the default)
	Shape   []int       `json:"shape"`
	Output  string      `json:"output,omitempty"`
	Outputs []string    `json:"outputs,omitempty"`
	Rows    [][]float64 `json:"rows"`
	// Labels are the classes the generator drew the rows from (examples).
	Labels []int `json:"labels,omitempty"`
}

// outputNames returns the outputs the file names.
func (in *modelInputs) outputNames() []string {
	if len(in.Outputs) > 0 {
		return in.Outputs
	}
	return []string{in.Output}
}

// modelFiles is a model, its Meta and its rows, read from
// <dir>/<name>.onnx, .meta.json and .inputs.json.
type modelFiles struct {
	name  string
	model []byte
	meta  Meta
	in    modelInputs
}

func readModelFiles(t testing.TB, dir, name string) modelFiles {
	t.Helper()
	base := filepath.Join(filepath.FromSlash(dir), name)
	f := modelFiles{name: name}
	var err error
	if f.model, err = os.ReadFile(base + ".onnx"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(base + ".meta.json")
	if err != nil {
		t.Fatal(err)
	}
	if f.meta, err = ParseMeta(b); err != nil {
		t.Fatalf("%s.meta.json: %v", base, err)
	}
	if b, err = os.ReadFile(base + ".inputs.json"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.in); err != nil {
		t.Fatalf("%s.inputs.json: %v", base, err)
	}
	if len(f.in.Rows) == 0 {
		t.Fatalf("%s.inputs.json has no rows", base)
	}
	return f
}

// The benchmark models: the PCA model of the reference test (8 features,
// doubles, 7 nodes) and ae32 (32 features, floats, 12 nodes).
var benchModels = []string{"pca8", "ae32"}

const (
	ae32Seed     = 21
	ae32Features = 32
)

// ae32 builds the second benchmark model: an MLP autoencoder
// 32→16→8→16→32 in floats, with random weights (He initialisation, fixed
// seed: the model is for timing, not trained), its dense layers written as
// torch.onnx.export writes nn.Linear (Gemm, weights [out, in], transB=1):
//
//	z     = (features − mean) / std       Sub, Div          [1,32]
//	h1..3 = relu(gemm(h, W, b))           Gemm, Relu ×3     [1,16], [1,8], [1,16]
//	zhat  = gemm(h3, W4, b4)              Gemm              [1,32]
//	r     = z − zhat                      Sub
//	score = (r ⊙ r) · 1                   Mul, MatMul       [1,1]
//
// It returns the model, its Meta (the anomaly threshold at the median
// score of normal rows, so that rows fall on both sides) and 24 rows drawn
// around the features' means.
func ae32(t testing.TB) ([]byte, Meta, [][]float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(ae32Seed, ae32Seed^0x9e3779b97f4a7c15))
	n := ae32Features
	mean, std := make([]float64, n), make([]float64, n)
	for i := range n {
		mean[i] = math.Round((20*rng.Float64()-10)*1000) / 1000
		std[i] = math.Round((0.5+2*rng.Float64())*1000) / 1000
	}
	f32 := func(v []float64) []float32 {
		out := make([]float32, len(v))
		for i, x := range v {
			out[i] = float32(x)
		}
		return out
	}
	floats := func(name string, v []float32, dims ...int64) *onnx.TensorProto {
		return &onnx.TensorProto{Name: name, Dims: dims, DataType: int32(onnx.TensorProto_FLOAT), FloatData: v}
	}
	init := []*onnx.TensorProto{floats("mean", f32(mean), int64(n)), floats("std", f32(std), int64(n))}
	nodes := []*onnx.NodeProto{
		{OpType: "Sub", Name: "center", Input: []string{PCAInput, "mean"}, Output: []string{"centered"}},
		{OpType: "Div", Name: "scale", Input: []string{"centered", "std"}, Output: []string{"z"}},
	}
	widths := []int{n, 16, 8, 16, n}
	h := "z"
	for l := range len(widths) - 1 {
		in, out := widths[l], widths[l+1]
		w, b := make([]float32, out*in), make([]float32, out)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * math.Sqrt(2/float64(in)))
		}
		for i := range b {
			b[i] = float32(0.1 * rng.NormFloat64())
		}
		wn, bn, y := fmt.Sprintf("w%d", l+1), fmt.Sprintf("b%d", l+1), fmt.Sprintf("y%d", l+1)
		init = append(init, floats(wn, w, int64(out), int64(in)), floats(bn, b, int64(out)))
		nodes = append(nodes, &onnx.NodeProto{OpType: "Gemm", Name: fmt.Sprintf("dense%d", l+1), Input: []string{h, wn, bn}, Output: []string{y},
			Attribute: []*onnx.AttributeProto{{Name: "transB", Type: onnx.AttributeProto_INT, I: 1}}})
		h = y
		if l < len(widths)-2 {
			h = fmt.Sprintf("h%d", l+1)
			nodes = append(nodes, &onnx.NodeProto{OpType: "Relu", Name: fmt.Sprintf("relu%d", l+1), Input: []string{y}, Output: []string{h}})
		}
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	init = append(init, floats("ones", ones, int64(n), 1))
	nodes = append(nodes,
		&onnx.NodeProto{OpType: "Sub", Name: "residual", Input: []string{"z", h}, Output: []string{"r"}},
		&onnx.NodeProto{OpType: "Mul", Name: "square", Input: []string{"r", "r"}, Output: []string{"r2"}},
		&onnx.NodeProto{OpType: "MatMul", Name: "sum", Input: []string{"r2", "ones"}, Output: []string{PCAOutput}},
	)
	mp := &onnx.ModelProto{
		IrVersion:    7,
		OpsetImport:  []*onnx.OperatorSetIdProto{{Version: Opset}},
		ProducerName: "wanwu-ml-bench",
		DocString:    "ae32: MLP autoencoder 32-16-8-16-32, random weights (seed 21), for benchmarks only",
		Graph: &onnx.GraphProto{
			Name: "ae32", Node: nodes, Initializer: init,
			Input:  []*onnx.ValueInfoProto{tensorValue(PCAInput, onnx.TensorProto_FLOAT, 1, int64(n))},
			Output: []*onnx.ValueInfoProto{tensorValue(PCAOutput, onnx.TensorProto_FLOAT, 1, 1)},
		},
	}
	model, err := proto.MarshalOptions{Deterministic: true}.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	row := func() []float64 {
		x := make([]float64, n)
		for i := range x {
			// Rounded so that float32 and float64 read the same number.
			x[i] = float64(float32(mean[i] + std[i]*rng.NormFloat64()))
		}
		return x
	}
	meta := Meta{
		ID: "ae32-bench", Version: 1, Kind: KindAnomaly, Input: PCAInput,
		Outputs: []Output{{Name: PCAOutput, Kind: OutputScore}},
		Budget:  Budget{MaxModelBytes: 64 << 10, MaxNodes: 16, Deadline: Duration(10 * time.Millisecond)},
		Training: Training{Dataset: "none (random weights)", DatasetVersion: "seed-" + strconv.Itoa(ae32Seed), Vectors: 1,
			CreatedAt: fixedTime, Method: "mlp autoencoder 32-16-8-16-32, untrained (benchmark model)"},
	}
	for i := range n {
		meta.Inputs = append(meta.Inputs, Feature{Name: fmt.Sprintf("x%02d", i), Mean: mean[i], Std: std[i]})
	}
	// The threshold: the median score of 201 normal rows, computed by the
	// model itself.
	s := load(t, model, meta)
	scores := make([]float64, 201)
	for i := range scores {
		r, err := s.Infer(context.Background(), row())
		if err != nil {
			t.Fatal(err)
		}
		scores[i] = r.Outputs[PCAOutput][0]
	}
	slices.Sort(scores)
	meta.Thresholds = map[string]Threshold{PCAThreshold: {Output: PCAOutput, Above: float64(float32(scores[100]))}}
	rows := make([][]float64, 24)
	for i := range rows {
		rows[i] = row()
	}
	return model, meta, rows
}

// TestBenchModelFiles rewrites testdata/ae32.onnx, ae32.meta.json and
// ae32.inputs.json with -update; it is skipped otherwise. Then write
// ae32.reference.json with onnxruntime (testdata/README.md).
func TestBenchModelFiles(t *testing.T) {
	if !*update {
		t.Skip("-update rewrites the benchmark model ae32")
	}
	model, meta, rows := ae32(t)
	in := modelInputs{Input: meta.Input, DType: "float32", Shape: []int{1, ae32Features}, Outputs: []string{PCAOutput}, Rows: rows}
	metaJSON, _ := json.MarshalIndent(meta, "", "  ")
	inJSON, _ := json.MarshalIndent(in, "", "  ")
	for name, b := range map[string][]byte{
		"testdata/ae32.onnx": model, "testdata/ae32.meta.json": append(metaJSON, '\n'), "testdata/ae32.inputs.json": append(inJSON, '\n'),
	} {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote testdata/ae32.onnx (%d bytes), ae32.meta.json, ae32.inputs.json: now write ae32.reference.json (testdata/README.md)", len(model))
}

// TestBenchModelReference compares ae32 run by gonnx with onnxruntime's
// outputs, as TestReferenceOutputs does for pca8.
func TestBenchModelReference(t *testing.T) {
	checkReference(t, "testdata", "ae32")
}

// BenchmarkModelInfer is one inference of each benchmark model, the rows
// of its inputs file in turn: session is Session.Infer as a loop calls it
// (the features checked, the run handed to the session's goroutine, the
// outputs copied and the thresholds applied); gonnx is the interpreter
// alone (gonnx's Model.Run on a tensor made from the row), on the
// caller's goroutine. session also reports its slowest call and how many
// calls took longer than the model's budget deadline (10 ms for both).
func BenchmarkModelInfer(b *testing.B) {
	for _, name := range benchModels {
		f := readModelFiles(b, "testdata", name)
		b.Run(name+"/session", func(b *testing.B) {
			// A call later than the model's budget is counted, not failed:
			// on a shared machine the OS can stall the process longer.
			budget := f.meta.Budget.Deadline.D()
			meta := f.meta.Clone()
			meta.Budget.Deadline = Duration(MaxDeadline)
			s := load(b, f.model, meta)
			ctx := context.Background()
			b.ReportAllocs()
			i, late, slowest := 0, 0, time.Duration(0)
			for b.Loop() {
				start := time.Now()
				if _, err := s.Infer(ctx, f.in.Rows[i%len(f.in.Rows)]); err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				slowest = max(slowest, d)
				if d > budget {
					late++
				}
				i++
			}
			b.ReportMetric(float64(slowest.Nanoseconds()), "max-ns")
			b.ReportMetric(float64(late), "late-calls")
		})
		b.Run(name+"/gonnx", func(b *testing.B) {
			s := load(b, f.model, f.meta).(*gonnxSession)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				in := s.tensor(f.in.Rows[i%len(f.in.Rows)])
				if _, err := s.model.Run(gonnx.Tensors{f.meta.Input: in}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// inferLatency is how long TestInferLatency times calls of each model
// (twice: once call by call, once in a tight loop); 0 skips it.
var inferLatency = flag.Duration("ml.latency", 0, "run TestInferLatency: time Session.Infer call by call and in a tight loop, this long each, per benchmark model (bench/ml.sh)")

// TestInferLatency is bench/ml.sh's per-call view of Session.Infer, run
// with -ml.latency and -test.cpu 1 (GOMAXPROCS=1, as the peer has one
// thread). For each benchmark model, after 2,000 warm-up calls, it times
// every call with time.Now for -ml.latency (the rows of the inputs file in
// turn) and logs the calls' p50, p99 and slowest; then it calls Infer in a
// tight loop for -ml.latency again (the clock read every 64 calls) and
// logs the calls per second of wall time and per second of the process's
// CPU time (user + system, getrusage). Each figure is one line
// "mlbench go latency ..." or "mlbench go rate ..." for bench/ml.mjs's
// summary; -test.v prints them.
func TestInferLatency(t *testing.T) {
	if *inferLatency <= 0 {
		t.Skip("-ml.latency D times Session.Infer call by call (bench/ml.sh)")
	}
	for _, name := range benchModels {
		f := readModelFiles(t, "testdata", name)
		// As in BenchmarkModelInfer: a late call is timed, not failed.
		meta := f.meta.Clone()
		meta.Budget.Deadline = Duration(MaxDeadline)
		s := load(t, f.model, meta)
		ctx := context.Background()
		rows := f.in.Rows
		infer := func(i int) {
			if _, err := s.Infer(ctx, rows[i%len(rows)]); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 2000 {
			infer(i)
		}

		var times []time.Duration
		var spent time.Duration
		for i := 0; spent < *inferLatency; i++ {
			start := time.Now()
			infer(i)
			d := time.Since(start)
			times = append(times, d)
			spent += d
		}
		slices.Sort(times)
		t.Logf("mlbench go latency model=%s p50_ns=%d p99_ns=%d max_ns=%d calls=%d gomaxprocs=%d",
			name, percentile(times, 0.50).Nanoseconds(), percentile(times, 0.99).Nanoseconds(),
			times[len(times)-1].Nanoseconds(), len(times), runtime.GOMAXPROCS(0))

		cpu0 := cpuTime()
		start := time.Now()
		calls := 0
		var wall time.Duration
		for {
			for range 64 {
				infer(calls)
				calls++
			}
			if wall = time.Since(start); wall >= *inferLatency {
				break
			}
		}
		cpu := cpuTime() - cpu0
		t.Logf("mlbench go rate model=%s per_s=%.0f per_cpu_s=%.0f calls=%d wall_ms=%.1f cpu_ms=%.1f",
			name, float64(calls)/wall.Seconds(), float64(calls)/cpu.Seconds(), calls,
			float64(wall.Microseconds())/1e3, float64(cpu.Microseconds())/1e3)
		s.Close()
	}
}

// percentile is the q-quantile of sorted times, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkModelLoad is Runtime.Load of each benchmark model (the bytes
// parsed and checked against the Meta, gonnx's model made, the trial
// inference on the means), then Close. After the timed loop it holds
// loadedModels sessions at once and reports what each adds: live heap
// (HeapAlloc after a GC), goroutine stack and the process's resident set
// (after returning freed memory to the OS).
func BenchmarkModelLoad(b *testing.B) {
	rt := NewGonnx()
	for _, name := range benchModels {
		f := readModelFiles(b, "testdata", name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s, err := rt.Load(f.model, f.meta)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.StopTimer()
			heap, stack, rss := loadedMemory(b, rt, f)
			b.ReportMetric(heap, "heap-B/model")
			b.ReportMetric(stack, "stack-B/model")
			if rss >= 0 {
				b.ReportMetric(rss, "rss-B/model")
			}
		})
	}
}

// loadedModels is how many sessions loadedMemory holds at once: enough
// that the page granularity of the resident set does not show.
const loadedModels = 200

// loadedMemory loads loadedModels sessions of f and returns what each adds
// to the live heap, the goroutine stacks and the resident set (-1 where
// /proc/self/statm cannot be read).
func loadedMemory(b *testing.B, rt Runtime, f modelFiles) (heap, stack, rss float64) {
	settle := func() (runtime.MemStats, int64) {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m, residentBytes()
	}
	m0, r0 := settle()
	sessions := make([]Session, loadedModels)
	for i := range sessions {
		s, err := rt.Load(f.model, f.meta)
		if err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	m1, r1 := settle()
	for _, s := range sessions {
		s.Close()
	}
	per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / loadedModels }
	rss = -1
	if r0 >= 0 && r1 >= 0 {
		rss = (float64(r1) - float64(r0)) / loadedModels
	}
	return per(m0.HeapAlloc, m1.HeapAlloc), per(m0.StackInuse, m1.StackInuse), rss
}

// residentBytes is the process's resident set, -1 where /proc/self/statm
// is not there.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}
