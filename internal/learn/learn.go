// Package learn trains models at the hub from dataset versions (package
// dataset) and registers them (package mlreg): the cloud's half of the
// learning loop.
//
// Train reads every window of a dataset version with its series and its
// majority label. Windows an operator labelled true_positive or with a
// class are the faults: they are left out of the normal-behaviour fit
// and kept to validate it. Every other window (normal, false_positive or
// unlabelled) is normal data. A row is one instant of a window at which
// every input property has a value (a device reports its properties
// together); the model's input i is the property Spec.Inputs[i].Property
// under the name Spec.Inputs[i].Name (the feature name a loop gives it).
//
// The method is "pca" (package ml's TrainPCA: standardisation, then the
// reconstruction error from the principal components). The version's
// Training records the dataset, its version and content digest, and
// validation metrics: the share of normal rows flagged, and the share of
// fault windows in which at least one row is flagged (recall; only with
// labelled faults).
package learn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/mlreg"
)

// ErrInvalid is wrapped by every refusal of a training request.
var ErrInvalid = errors.New("invalid training")

// MethodPCA is the one method for now.
const MethodPCA = "pca"

// Limits.
const (
	DefaultMinRows = 100
	MaxRows        = 1_000_000
)

// Input maps a model input to a window property.
type Input struct {
	Name     string `json:"name"`
	Property string `json:"property"`
}

// Spec is a training request.
type Spec struct {
	Dataset        string  `json:"dataset"`
	DatasetVersion string  `json:"dataset_version,omitempty"` // "": the newest
	Model          string  `json:"model"`
	Version        int     `json:"version,omitempty"` // 0: the next after the newest registered
	Inputs         []Input `json:"inputs"`
	Method         string  `json:"method,omitempty"` // default pca
	Components     int     `json:"components,omitempty"`
	Quantile       float64 `json:"quantile,omitempty"`
	Margin         float64 `json:"margin,omitempty"`
	MinRows        int     `json:"min_rows,omitempty"`
}

// Report says what a training read and made.
type Report struct {
	Windows      int     `json:"windows"`
	FaultWindows int     `json:"fault_windows"`
	Rows         int     `json:"rows"`
	Threshold    float64 `json:"threshold"`
	// NormalFlagged: the share of normal rows above the threshold;
	// Recall: the share of fault windows with a row above it (-1 without
	// fault windows).
	NormalFlagged float64       `json:"normal_flagged"`
	Recall        float64       `json:"recall"`
	Took          time.Duration `json:"took_ns"`
}

func faultLabel(key string) bool {
	return key == dataset.KindTruePositive || strings.HasPrefix(key, dataset.KindClass+":")
}

// rows returns the instants of w at which every input has a value.
func rows(w *dataset.Window, inputs []Input) [][]float64 {
	first := w.Series[inputs[0].Property]
	idx := make([]map[int64]float64, len(inputs))
	for i, in := range inputs {
		idx[i] = map[int64]float64{}
		for _, p := range w.Series[in.Property] {
			idx[i][p.T.UnixMilli()] = p.V
		}
	}
	var out [][]float64
	for _, p := range first {
		t := p.T.UnixMilli()
		row := make([]float64, len(inputs))
		full := true
		for i := range inputs {
			v, ok := idx[i][t]
			if !ok {
				full = false
				break
			}
			row[i] = v
		}
		if full {
			out = append(out, row)
		}
	}
	return out
}

// Train fits a model on a dataset version's normal windows, validates it
// on the whole version and registers it in the tenant as actor.
func Train(ctx context.Context, ds *dataset.Store, reg *mlreg.Registry, actor, tenant string, spec Spec) (*mlreg.Record, *Report, error) {
	start := time.Now()
	if spec.Method == "" {
		spec.Method = MethodPCA
	}
	if spec.MinRows == 0 {
		spec.MinRows = DefaultMinRows
	}
	var probs []string
	if spec.Method != MethodPCA {
		probs = append(probs, fmt.Sprintf("method: %q is not known (pca)", spec.Method))
	}
	if spec.Dataset == "" || spec.Model == "" {
		probs = append(probs, "dataset and model are required")
	}
	if len(spec.Inputs) == 0 || len(spec.Inputs) > ml.MaxInputs {
		probs = append(probs, fmt.Sprintf("inputs: 1 to %d, got %d", ml.MaxInputs, len(spec.Inputs)))
	}
	for i, in := range spec.Inputs {
		if in.Name == "" || in.Property == "" {
			probs = append(probs, fmt.Sprintf("inputs[%d]: name and property are required", i))
		}
	}
	if spec.MinRows < 2 || spec.Version < 0 {
		probs = append(probs, "min_rows must be 2 or more, version 0 (the next) or more")
	}
	if len(probs) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(probs, "; "))
	}
	m, err := ds.Manifest(ctx, tenant, spec.Dataset, spec.DatasetVersion)
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{Recall: -1}
	var normal [][]float64
	var faults [][][]float64
	err = ds.Each(ctx, tenant, m.Name, strconv.Itoa(m.Version), func(w *dataset.Window, label string) error {
		rep.Windows++
		rs := rows(w, spec.Inputs)
		if faultLabel(label) {
			rep.FaultWindows++
			faults = append(faults, rs)
			return nil
		}
		if len(normal)+len(rs) > MaxRows {
			return fmt.Errorf("%w: more than %d rows", ErrInvalid, MaxRows)
		}
		normal = append(normal, rs...)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rep.Rows = len(normal)
	if rep.Rows < spec.MinRows {
		return nil, rep, fmt.Errorf("%w: %d rows of normal data in %s@%d (at least %d): a row is an instant with a value of every input (%s)",
			ErrInvalid, rep.Rows, m.Name, m.Version, spec.MinRows, inputProps(spec.Inputs))
	}
	version := spec.Version
	if version == 0 {
		version = 1
		if vs, err := reg.Versions(ctx, tenant, spec.Model); err == nil {
			last, _ := strconv.Atoi(vs[len(vs)-1].Version)
			version = last + 1
		}
	}
	names := make([]string, len(spec.Inputs))
	for i, in := range spec.Inputs {
		names[i] = in.Name
	}
	onnx, meta, err := ml.TrainPCA(normal, names, ml.PCAOptions{
		ID: spec.Model, Version: version, Components: spec.Components, Quantile: spec.Quantile, Margin: spec.Margin,
		Dataset: m.Name, DatasetVersion: strconv.Itoa(m.Version), CreatedAt: start.UTC(),
	})
	if err != nil {
		return nil, rep, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Validate with the model as the edges will run it.
	sess, err := ml.NewGonnx().Load(onnx, meta)
	if err != nil {
		return nil, rep, fmt.Errorf("learn: the trained model does not load: %w", err)
	}
	defer sess.Close()
	// An inference later than the model's deadline (a busy hub) is tried
	// again: the figure is the model's, not the moment's.
	flagged := func(x []float64) (bool, error) {
		for try := 0; ; try++ {
			res, err := sess.Infer(ctx, x)
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && try < 10 {
				continue
			}
			if err != nil {
				return false, err
			}
			return res.Flags[ml.PCAThreshold], nil
		}
	}
	rep.Threshold = meta.Thresholds[ml.PCAThreshold].Above
	sample := normal
	if len(sample) > 20000 { // enough for a share; every k-th row
		k := len(sample) / 20000
		sample = slices.Collect(func(yield func([]float64) bool) {
			for i := 0; i < len(normal); i += k {
				if !yield(normal[i]) {
					return
				}
			}
		})
	}
	on := 0
	for _, x := range sample {
		f, err := flagged(x)
		if err != nil {
			return nil, rep, fmt.Errorf("learn: validating: %w", err)
		}
		if f {
			on++
		}
	}
	rep.NormalFlagged = float64(on) / float64(len(sample))
	if len(faults) > 0 {
		hit := 0
		for _, rs := range faults {
			for _, x := range rs {
				f, err := flagged(x)
				if err != nil {
					return nil, rep, fmt.Errorf("learn: validating: %w", err)
				}
				if f {
					hit++
					break
				}
			}
		}
		rep.Recall = float64(hit) / float64(len(faults))
	}
	if meta.Training.Metrics == nil {
		meta.Training.Metrics = map[string]float64{}
	}
	meta.Training.Metrics["normal_flagged"] = rep.NormalFlagged
	meta.Training.Metrics["fault_windows"] = float64(rep.FaultWindows)
	if rep.Recall >= 0 {
		meta.Training.Metrics["fault_recall"] = rep.Recall
	}
	meta.Training.Method = "pca over dataset " + m.Name + "@" + strconv.Itoa(m.Version) + " (content " + m.ContentSHA256[:12] + ")"
	metaJSON, err := jsonOf(meta)
	if err != nil {
		return nil, rep, err
	}
	rec, _, err := reg.Register(ctx, actor, tenant, metaJSON, onnx)
	rep.Took = time.Since(start)
	return rec, rep, err
}

func inputProps(in []Input) string {
	var s []string
	for _, i := range in {
		s = append(s, i.Property)
	}
	return strings.Join(s, ", ")
}

func jsonOf(m ml.Meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("learn: %w", err)
	}
	return b, nil
}
