package ml

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"gonum.org/v1/gonum/mat"
	"google.golang.org/protobuf/proto"
)

// ErrTraining is wrapped by every error of TrainPCA.
var ErrTraining = errors.New("cannot train")

// Defaults of PCAOptions.
const (
	DefaultVarianceShare = 0.95
	DefaultQuantile      = 0.99
	DefaultMargin        = 1.5
	DefaultMaxModelBytes = 1 << 20
	DefaultMaxNodes      = 64
	DefaultDeadline      = 20 * time.Millisecond
)

// Names in the graph TrainPCA builds.
const (
	PCAInput  = "features"
	PCAOutput = "score"
	// PCAThreshold is the name of the threshold on the score.
	PCAThreshold = "anomaly"
)

// PCAOptions tune TrainPCA. Zero values take the defaults.
type PCAOptions struct {
	ID      string // required
	Version int    // default 1
	// Components is the number of principal components kept; 0 keeps the
	// fewest whose share of the variance (of the standardised features)
	// reaches VarianceShare.
	Components    int
	VarianceShare float64 // in (0, 1); default 0.95
	// The threshold is the Quantile of the training vectors' scores times
	// Margin.
	Quantile float64 // in (0, 1]; default 0.99
	Margin   float64 // 1 or more; default 1.5

	Dataset        string // required
	DatasetVersion string // required
	CreatedAt      time.Time
	Budget         Budget // zero fields: 1 MiB, 64 nodes, 20ms
}

// pca is a fitted model: x ↦ ‖z − z·P·Pᵀ‖² with z = (x − mean)/std.
type pca struct {
	mean, std []float64
	comp      *mat.Dense // n×k, orthonormal columns
	evals     []float64  // all n, descending
}

// score is the formula of the graph, in Go.
func (p *pca) score(x []float64) float64 {
	n, k := p.comp.Dims()
	return p.scoreInto(x, make([]float64, n), make([]float64, k))
}

// scoreInto is score with the buffers given (z of n, t of k).
func (p *pca) scoreInto(x, z, t []float64) float64 {
	for i := range z {
		z[i] = (x[i] - p.mean[i]) / p.std[i]
	}
	clear(t)
	for j := range t {
		for i := range z {
			t[j] += z[i] * p.comp.At(i, j)
		}
	}
	var s float64
	for i := range z {
		r := z[i]
		for j := range t {
			r -= t[j] * p.comp.At(i, j)
		}
		s += r * r
	}
	return s
}

// TrainPCA fits an anomaly model to vectors (rows; features in the order
// of names): standardisation by the mean and sample standard deviation
// of each feature, then PCA of the standardised vectors (eigenvectors of
// their correlation matrix). The score of a vector is its reconstruction
// error from the kept components: ‖z − z·P·Pᵀ‖². The threshold
// "anomaly" is the opts.Quantile of the training vectors' scores times
// opts.Margin. It returns the ONNX model (opset 13, the graph described in
// the package doc) and its Meta.
func TrainPCA(vectors [][]float64, names []string, opts PCAOptions) ([]byte, Meta, error) {
	opts, err := pcaDefaults(opts)
	if err != nil {
		return nil, Meta{}, err
	}
	p, err := fitPCA(vectors, names, opts)
	if err != nil {
		return nil, Meta{}, err
	}
	n, k := p.comp.Dims()
	z, t := make([]float64, n), make([]float64, k)
	scores := make([]float64, len(vectors))
	for i, v := range vectors {
		scores[i] = p.scoreInto(v, z, t)
	}
	slices.Sort(scores)
	qv := quantile(scores, opts.Quantile)
	threshold := max(qv*opts.Margin, 1e-9)
	flagged := len(scores) - sort.SearchFloat64s(scores, math.Nextafter(threshold, math.Inf(1)))
	var kept, total float64
	for i, e := range p.evals {
		total += e
		if i < k {
			kept += e
		}
	}
	meta := Meta{
		ID: opts.ID, Version: opts.Version, Kind: KindAnomaly,
		Input:      PCAInput,
		Outputs:    []Output{{Name: PCAOutput, Kind: OutputScore}},
		Thresholds: map[string]Threshold{PCAThreshold: {Output: PCAOutput, Above: threshold}},
		Budget:     opts.Budget,
		Training: Training{
			Dataset: opts.Dataset, DatasetVersion: opts.DatasetVersion,
			Vectors: len(vectors), CreatedAt: opts.CreatedAt, Method: "pca",
			Metrics: map[string]float64{
				"components":         float64(k),
				"explained_variance": kept / total,
				"score_median":       quantile(scores, 0.5),
				"score_quantile":     qv,
				"train_flagged":      float64(flagged) / float64(len(scores)),
			},
		},
	}
	for i := range n {
		meta.Inputs = append(meta.Inputs, Feature{Name: names[i], Mean: p.mean[i], Std: p.std[i]})
	}
	model, err := proto.MarshalOptions{Deterministic: true}.Marshal(pcaGraph(p, meta))
	if err != nil {
		return nil, Meta{}, fmt.Errorf("%w: encoding the model: %w", ErrTraining, err)
	}
	if len(model) > meta.Budget.MaxModelBytes {
		return nil, Meta{}, fmt.Errorf("%w: the model is %d bytes, over budget.max_model_bytes %d", ErrTraining, len(model), meta.Budget.MaxModelBytes)
	}
	if err := meta.Validate(); err != nil {
		return nil, Meta{}, fmt.Errorf("%w: %w", ErrTraining, err)
	}
	return model, meta, nil
}

func pcaDefaults(o PCAOptions) (PCAOptions, error) {
	if o.Version == 0 {
		o.Version = 1
	}
	if o.VarianceShare == 0 {
		o.VarianceShare = DefaultVarianceShare
	}
	if o.Quantile == 0 {
		o.Quantile = DefaultQuantile
	}
	if o.Margin == 0 {
		o.Margin = DefaultMargin
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	if o.Budget.MaxModelBytes == 0 {
		o.Budget.MaxModelBytes = DefaultMaxModelBytes
	}
	if o.Budget.MaxNodes == 0 {
		o.Budget.MaxNodes = DefaultMaxNodes
	}
	if o.Budget.Deadline == 0 {
		o.Budget.Deadline = Duration(DefaultDeadline)
	}
	switch {
	case o.Components < 0:
		return o, fmt.Errorf("%w: components %d is negative", ErrTraining, o.Components)
	case !(o.VarianceShare > 0 && o.VarianceShare < 1):
		return o, fmt.Errorf("%w: variance share %v is not in (0, 1)", ErrTraining, o.VarianceShare)
	case !(o.Quantile > 0 && o.Quantile <= 1):
		return o, fmt.Errorf("%w: quantile %v is not in (0, 1]", ErrTraining, o.Quantile)
	case !(o.Margin >= 1) || math.IsInf(o.Margin, 0):
		return o, fmt.Errorf("%w: margin %v is below 1", ErrTraining, o.Margin)
	}
	return o, nil
}

func fitPCA(vectors [][]float64, names []string, opts PCAOptions) (*pca, error) {
	n, m := len(names), len(vectors)
	if n < 2 {
		return nil, fmt.Errorf("%w: %d features; PCA needs 2 or more", ErrTraining, n)
	}
	if m < 2 {
		return nil, fmt.Errorf("%w: %d vectors; 2 or more are needed", ErrTraining, m)
	}
	for i, v := range vectors {
		if len(v) != n {
			return nil, fmt.Errorf("%w: vector %d has %d values for %d names", ErrTraining, i, len(v), n)
		}
		for j, x := range v {
			if !finite(x) {
				return nil, fmt.Errorf("%w: vector %d, feature %q is %v", ErrTraining, i, names[j], x)
			}
		}
	}
	mean := make([]float64, n)
	for _, v := range vectors {
		for j, x := range v {
			mean[j] += x
		}
	}
	for j := range mean {
		mean[j] /= float64(m)
	}
	// Covariance of the centred vectors, then scaled to the correlation
	// matrix: the covariance of the standardised vectors.
	cov := make([]float64, n*n)
	c := make([]float64, n)
	for _, v := range vectors {
		for j, x := range v {
			c[j] = x - mean[j]
		}
		for a := range n {
			ca := c[a]
			row := cov[a*n:]
			for b := a; b < n; b++ {
				row[b] += ca * c[b]
			}
		}
	}
	std := make([]float64, n)
	for j := range n {
		std[j] = math.Sqrt(cov[j*n+j] / float64(m-1))
		if !(std[j] > 0) {
			return nil, fmt.Errorf("%w: feature %q is constant in the training vectors (std 0); leave it out", ErrTraining, names[j])
		}
	}
	corr := mat.NewSymDense(n, nil)
	for a := range n {
		for b := a; b < n; b++ {
			corr.SetSym(a, b, cov[a*n+b]/float64(m-1)/(std[a]*std[b]))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(corr, true) {
		return nil, fmt.Errorf("%w: the eigendecomposition did not converge", ErrTraining)
	}
	vals := es.Values(nil) // ascending
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	order := make([]int, n)
	for i := range order {
		order[i] = n - 1 - i
	}
	evals := make([]float64, n)
	var total float64
	for i, o := range order {
		evals[i] = max(vals[o], 0)
		total += evals[i]
	}
	k := opts.Components
	if k == 0 {
		var acc float64
		for k < n && acc < opts.VarianceShare*total {
			acc += evals[k]
			k++
		}
	}
	if k < 1 {
		return nil, fmt.Errorf("%w: no component kept", ErrTraining)
	}
	if k >= n {
		return nil, fmt.Errorf("%w: keeping %d components of %d features leaves no residual: the score would always be 0 (keep fewer, or lower the variance share)", ErrTraining, k, n)
	}
	comp := mat.NewDense(n, k, nil)
	for j := range k {
		col := order[j]
		// A fixed sign (largest entry positive) makes the model the same
		// whatever sign the eigensolver gives.
		big := 0
		for i := range n {
			if math.Abs(vecs.At(i, col)) > math.Abs(vecs.At(big, col)) {
				big = i
			}
		}
		sign := 1.0
		if vecs.At(big, col) < 0 {
			sign = -1
		}
		for i := range n {
			comp.Set(i, j, sign*vecs.At(i, col))
		}
	}
	return &pca{mean: mean, std: std, comp: comp, evals: evals}, nil
}

// quantile of sorted values, by nearest rank.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// pcaGraph builds the ONNX model of p (doubles, opset 13):
//
//	z     = (features − mean) / std          Sub, Div       [1,n]
//	t     = z · P                             MatMul         [1,k]
//	zhat  = t · Pᵀ                            MatMul         [1,n]
//	r     = z − zhat                          Sub            [1,n]
//	score = (r ⊙ r) · 1                       Mul, MatMul    [1,1]
//
// gonnx has no ReduceSum, so the sum of squares is a product with a column
// of ones.
func pcaGraph(p *pca, meta Meta) *onnx.ModelProto {
	n, k := p.comp.Dims()
	pt := mat.DenseCopyOf(p.comp.T())
	ones := make([]float64, n)
	for i := range ones {
		ones[i] = 1
	}
	node := func(op, name string, out string, in ...string) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: op, Name: name, Input: in, Output: []string{out}}
	}
	return &onnx.ModelProto{
		IrVersion:       7,
		OpsetImport:     []*onnx.OperatorSetIdProto{{Domain: "", Version: Opset}},
		ProducerName:    "wanwu-ml",
		ProducerVersion: "1",
		ModelVersion:    int64(meta.Version),
		DocString:       fmt.Sprintf("%s v%d: PCA reconstruction error, %d of %d components", meta.ID, meta.Version, k, n),
		Graph: &onnx.GraphProto{
			Name: meta.ID,
			Node: []*onnx.NodeProto{
				node("Sub", "center", "centered", PCAInput, "mean"),
				node("Div", "scale", "z", "centered", "std"),
				node("MatMul", "project", "t", "z", "components"),
				node("MatMul", "reconstruct", "zhat", "t", "components_t"),
				node("Sub", "residual", "r", "z", "zhat"),
				node("Mul", "square", "r2", "r", "r"),
				node("MatMul", "sum", PCAOutput, "r2", "ones"),
			},
			Initializer: []*onnx.TensorProto{
				doubles("mean", p.mean, n),
				doubles("std", p.std, n),
				doubles("components", p.comp.RawMatrix().Data, n, k),
				doubles("components_t", pt.RawMatrix().Data, k, n),
				doubles("ones", ones, n, 1),
			},
			Input:  []*onnx.ValueInfoProto{doubleValue(PCAInput, 1, int64(n))},
			Output: []*onnx.ValueInfoProto{doubleValue(PCAOutput, 1, 1)},
		},
	}
}

func doubles(name string, v []float64, dims ...int) *onnx.TensorProto {
	d := make([]int64, len(dims))
	for i, x := range dims {
		d[i] = int64(x)
	}
	return &onnx.TensorProto{Name: name, Dims: d, DataType: int32(onnx.TensorProto_DOUBLE), DoubleData: slices.Clone(v)}
}

func doubleValue(name string, dims ...int64) *onnx.ValueInfoProto {
	return tensorValue(name, onnx.TensorProto_DOUBLE, dims...)
}

func tensorValue(name string, dt onnx.TensorProto_DataType, dims ...int64) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: int32(dt), Shape: shape}}}}
}
