package ml

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/advancedclimatesystems/gonnx"
	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"
)

// Opset is the ONNX operator set version the gonnx runtime runs.
const Opset = 13

// TrialTimeout is the least time Load gives the trial inference it runs
// (ten times the model's deadline if that is more): a first run allocates.
const TrialTimeout = time.Second

// Gonnx is the pure-Go ONNX runtime (github.com/advancedclimatesystems/gonnx,
// opset 13). It holds no state; sessions own theirs.
type Gonnx struct{}

// NewGonnx returns the gonnx runtime.
func NewGonnx() *Gonnx { return &Gonnx{} }

// Name implements Runtime.
func (*Gonnx) Name() string { return "gonnx" }

// SupportedOperators returns the operators gonnx runs at opset 13, sorted.
func (*Gonnx) SupportedOperators() []string {
	names := opset13.GetOpNames()
	slices.Sort(names)
	return names
}

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// graphIO is what Load learns of the graph's input.
type graphIO struct {
	dtype tensor.Dtype
	rank  int
}

// Load implements Runtime. It refuses, with the reason, a model over the
// size budget, bytes that are not an ONNX model, an opset other than 13,
// more nodes than the budget, an operator gonnx does not run (named),
// features gonnx ignores (external data, sparse initializers, local
// functions), graph inputs and outputs that do not match the Meta (names,
// element types, shapes), and a model whose trial inference on the
// inputs' means fails or gives outputs of the wrong size.
func (g *Gonnx) Load(model []byte, meta Meta) (Session, error) {
	if err := meta.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if len(model) > meta.Budget.MaxModelBytes {
		return nil, refuse("model is %d bytes, over the budget of %d (budget.max_model_bytes)", len(model), meta.Budget.MaxModelBytes)
	}
	mp := &onnx.ModelProto{}
	if err := proto.Unmarshal(model, mp); err != nil {
		return nil, refuse("not an ONNX model: %v", err)
	}
	io, err := check(mp, meta)
	if err != nil {
		return nil, err
	}
	var m *gonnx.Model
	if err := catch("load", func() error {
		var err error
		m, err = gonnx.NewModel(mp)
		return err
	}); err != nil {
		return nil, refuse("gonnx cannot load it: %v", err)
	}
	s := newSession(meta.Clone(), m, io)
	// A trial run on the means: shape errors show here, not at the
	// first inference of a loop.
	trial := max(TrialTimeout, 10*meta.Budget.Deadline.D())
	ctx, cancel := context.WithTimeout(context.Background(), trial)
	defer cancel()
	means := make([]float64, len(meta.Inputs))
	for i, f := range meta.Inputs {
		means[i] = f.Mean
	}
	if _, err := s.infer(ctx, means, trial); err != nil {
		s.Close()
		return nil, refuse("trial inference on the inputs' means: %v", err)
	}
	return s, nil
}

// check is the static part of Load.
func check(mp *onnx.ModelProto, meta Meta) (graphIO, error) {
	var io graphIO
	gr := mp.GetGraph()
	if mp.GetIrVersion() <= 0 || gr == nil {
		return io, refuse("not an ONNX model: no ir_version or no graph")
	}
	def, top := int64(-1), int64(0)
	for _, o := range mp.GetOpsetImport() {
		switch o.GetDomain() {
		case "", "ai.onnx":
			def = o.GetVersion()
		case "ai.onnx.ml":
		default:
			return io, refuse("opset domain %q is not supported (only the default domain and ai.onnx.ml)", o.GetDomain())
		}
		top = max(top, o.GetVersion())
	}
	if def < 0 {
		return io, refuse("no opset import for the default domain: gonnx runs opset %d", Opset)
	}
	if def != Opset || top != Opset {
		return io, refuse("opset %d (highest import %d): gonnx runs opset %d only", def, top, Opset)
	}
	if len(mp.GetFunctions()) > 0 {
		return io, refuse("the model defines local functions, which gonnx does not run")
	}
	if len(gr.GetSparseInitializer()) > 0 {
		return io, refuse("the graph has sparse initializers, which gonnx does not read")
	}
	if n := len(gr.GetNode()); n > meta.Budget.MaxNodes {
		return io, refuse("graph has %d nodes, over the budget of %d (budget.max_nodes)", n, meta.Budget.MaxNodes)
	}
	for i, n := range gr.GetNode() {
		switch n.GetDomain() {
		case "", "ai.onnx", "ai.onnx.ml":
		default:
			return io, refuse("node %d (%q): operator domain %q is not supported", i, n.GetName(), n.GetDomain())
		}
		if _, err := opset13.GetOperator(n.GetOpType()); err != nil {
			return io, refuse("node %d (%q): operator %q is not supported by gonnx (opset %d)", i, n.GetName(), n.GetOpType(), Opset)
		}
	}
	params := map[string]bool{}
	for _, t := range gr.GetInitializer() {
		if err := checkInitializer(t, meta.Budget.MaxModelBytes); err != nil {
			return io, err
		}
		params[t.GetName()] = true
	}
	var inputs []*onnx.ValueInfoProto
	for _, in := range gr.GetInput() {
		if !params[in.GetName()] {
			inputs = append(inputs, in)
		}
	}
	if len(inputs) != 1 || inputs[0].GetName() != meta.Input {
		return io, refuse("graph inputs %v do not match the Meta: want the one input %q", valueNames(inputs), meta.Input)
	}
	dtype, dims, err := tensorType(inputs[0])
	if err != nil {
		return io, refuse("graph input %q: %v", meta.Input, err)
	}
	n := int64(len(meta.Inputs))
	switch {
	case len(dims) == 1 && dims[0] == n:
	case len(dims) == 2 && dims[0] <= 1 && dims[1] == n:
	default:
		return io, refuse("graph input %q has shape %s, want [%d] or [1, %d] for the %d features of the Meta", meta.Input, shapeString(dims), n, n, n)
	}
	io = graphIO{dtype: dtype, rank: len(dims)}
	want := make([]string, len(meta.Outputs))
	for i, o := range meta.Outputs {
		want[i] = o.Name
	}
	got := valueNames(gr.GetOutput())
	if !sameSet(want, got) {
		return io, refuse("graph outputs %v do not match the Meta's outputs %v", got, want)
	}
	kinds := map[string]string{}
	for _, o := range meta.Outputs {
		kinds[o.Name] = o.Kind
	}
	for _, out := range gr.GetOutput() {
		_, dims, err := tensorType(out)
		if err != nil {
			return io, refuse("graph output %q: %v", out.GetName(), err)
		}
		if kinds[out.GetName()] == OutputScore && slices.ContainsFunc(dims, func(d int64) bool { return d > 1 }) {
			return io, refuse("graph output %q has shape %s: a score output holds one number", out.GetName(), shapeString(dims))
		}
	}
	return io, nil
}

// checkInitializer refuses what gonnx would misread or panic on.
func checkInitializer(t *onnx.TensorProto, limit int) error {
	if t.GetDataLocation() == onnx.TensorProto_EXTERNAL || len(t.GetExternalData()) > 0 {
		return refuse("initializer %q has external data, which gonnx does not read", t.GetName())
	}
	count := int64(1)
	for _, d := range t.GetDims() {
		if d < 0 || (d > 0 && count > int64(limit)/d) {
			return refuse("initializer %q has dims %v", t.GetName(), t.GetDims())
		}
		count *= d
	}
	dt := onnx.TensorProto_DataType(t.GetDataType())
	size, ok := elemSize[dt]
	if !ok {
		return refuse("initializer %q has element type %s, which gonnx does not read", t.GetName(), dt)
	}
	var have int64
	if raw := t.GetRawData(); len(raw) > 0 {
		if len(raw)%size != 0 {
			return refuse("initializer %q has %d bytes of raw data, not a whole number of %s", t.GetName(), len(raw), dt)
		}
		have = int64(len(raw) / size)
	} else {
		have = int64(len(t.GetFloatData()) + len(t.GetDoubleData()) + len(t.GetInt32Data()) + len(t.GetInt64Data()) + len(t.GetUint64Data()))
	}
	if have != count {
		return refuse("initializer %q has %d values for dims %v", t.GetName(), have, t.GetDims())
	}
	return nil
}

// elemSize is the size of the element types gonnx reads.
var elemSize = map[onnx.TensorProto_DataType]int{
	onnx.TensorProto_FLOAT: 4, onnx.TensorProto_DOUBLE: 8,
	onnx.TensorProto_INT8: 1, onnx.TensorProto_UINT8: 1, onnx.TensorProto_BOOL: 1,
	onnx.TensorProto_INT16: 2, onnx.TensorProto_UINT16: 2,
	onnx.TensorProto_INT32: 4, onnx.TensorProto_UINT32: 4,
	onnx.TensorProto_INT64: 8, onnx.TensorProto_UINT64: 8,
}

// tensorType returns the element type and dims of a tensor value (0 for a
// dynamic dimension); only float and double are taken.
func tensorType(v *onnx.ValueInfoProto) (tensor.Dtype, []int64, error) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return tensor.Dtype{}, nil, fmt.Errorf("not a tensor")
	}
	var dt tensor.Dtype
	switch onnx.TensorProto_DataType(tt.GetElemType()) {
	case onnx.TensorProto_FLOAT:
		dt = tensor.Float32
	case onnx.TensorProto_DOUBLE:
		dt = tensor.Float64
	default:
		return dt, nil, fmt.Errorf("element type %s, want FLOAT or DOUBLE", onnx.TensorProto_DataType(tt.GetElemType()))
	}
	if tt.GetShape() == nil {
		return dt, nil, fmt.Errorf("no shape")
	}
	var dims []int64
	for _, d := range tt.GetShape().GetDim() {
		if d.GetDimValue() < 0 {
			return dt, nil, fmt.Errorf("negative dimension %d", d.GetDimValue())
		}
		dims = append(dims, d.GetDimValue())
	}
	return dt, dims, nil
}

func shapeString(dims []int64) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
		if d == 0 {
			s[i] = "?"
		}
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func valueNames(vs []*onnx.ValueInfoProto) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.GetName()
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// catch runs f and turns a panic into an error: gonnx and the tensor
// package panic on some malformed graphs.
func catch(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gonnx panicked in %s: %v", what, r)
		}
	}()
	return f()
}

// gonnxSession runs a gonnx model on a goroutine it owns: gonnx has no
// way to stop a run, so a caller whose deadline passes returns at once
// and the run ends on that goroutine, its result dropped. One run at a
// time; callers queue on reqs, each within its own deadline.
type gonnxSession struct {
	meta  Meta
	model *gonnx.Model
	io    graphIO

	reqs      chan request
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type request struct {
	in    tensor.Tensor
	reply chan reply // buffered: the worker never blocks on a caller gone
}

type reply struct {
	out map[string][]float64
	err error
}

func newSession(meta Meta, m *gonnx.Model, io graphIO) *gonnxSession {
	s := &gonnxSession{
		meta: meta, model: m, io: io,
		reqs: make(chan request),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.work()
	return s
}

func (s *gonnxSession) work() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			return
		case r := <-s.reqs:
			var out map[string][]float64
			err := catch("run", func() error {
				var err error
				out, err = s.run(r.in)
				return err
			})
			r.reply <- reply{out, err}
		}
	}
}

func (s *gonnxSession) run(in tensor.Tensor) (map[string][]float64, error) {
	res, err := s.model.Run(gonnx.Tensors{s.meta.Input: in})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]float64, len(s.meta.Outputs))
	for _, o := range s.meta.Outputs {
		t, ok := res[o.Name]
		if !ok || t == nil {
			return nil, fmt.Errorf("output %q not computed", o.Name)
		}
		v, err := float64s(t)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", o.Name, err)
		}
		if o.Kind == OutputScore && len(v) != 1 {
			return nil, fmt.Errorf("score output %q has %d values, want 1", o.Name, len(v))
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("output %q is empty", o.Name)
		}
		out[o.Name] = v
	}
	return out, nil
}

func float64s(t tensor.Tensor) ([]float64, error) {
	switch d := t.Data().(type) {
	case []float64:
		return slices.Clone(d), nil
	case float64:
		return []float64{d}, nil
	case []float32:
		v := make([]float64, len(d))
		for i, x := range d {
			v[i] = float64(x)
		}
		return v, nil
	case float32:
		return []float64{float64(d)}, nil
	default:
		return nil, fmt.Errorf("element type %T, want float or double", d)
	}
}

// Meta implements Session; the copy is the caller's.
func (s *gonnxSession) Meta() Meta { return s.meta.Clone() }

// Infer implements Session.
func (s *gonnxSession) Infer(ctx context.Context, features []float64) (Result, error) {
	return s.infer(ctx, features, s.meta.Budget.Deadline.D())
}

func (s *gonnxSession) infer(ctx context.Context, features []float64, deadline time.Duration) (Result, error) {
	fail := func(err error) (Result, error) {
		return Result{}, fmt.Errorf("model %s v%d: %w", s.meta.ID, s.meta.Version, err)
	}
	select {
	case <-s.quit:
		return fail(ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if len(features) != len(s.meta.Inputs) {
		return fail(fmt.Errorf("%w: %d features, the model takes %d (%s)", ErrInput, len(features), len(s.meta.Inputs), strings.Join(s.meta.FeatureNames(), ", ")))
	}
	for i, x := range features {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fail(fmt.Errorf("%w: feature %q is %v", ErrInput, s.meta.Inputs[i].Name, x))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	req := request{in: s.tensor(features), reply: make(chan reply, 1)}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-s.quit:
		return fail(ErrClosed)
	}
	select {
	case r := <-req.reply:
		if r.err != nil {
			return fail(r.err)
		}
		return Result{Outputs: r.out, Flags: flags(s.meta, r.out)}, nil
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

func (s *gonnxSession) tensor(features []float64) tensor.Tensor {
	shape := []int{len(features)}
	if s.io.rank == 2 {
		shape = []int{1, len(features)}
	}
	if s.io.dtype == tensor.Float32 {
		v := make([]float32, len(features))
		for i, x := range features {
			v[i] = float32(x)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(slices.Clone(features)))
}

// Close implements Session.
func (s *gonnxSession) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
	return nil
}
