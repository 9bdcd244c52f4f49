package ml

import (
	"context"
	"errors"
	"math"
	"slices"
)

// Errors a Session returns (wrapped).
var (
	// ErrClosed is returned by Infer on a closed session.
	ErrClosed = errors.New("session closed")
	// ErrInput is returned by Infer for features that do not fit the model.
	ErrInput = errors.New("bad features")
	// ErrRefused is wrapped by every refusal of Load.
	ErrRefused = errors.New("model refused")
)

// Runtime loads models. The pure-Go ONNX runtime (NewGonnx) is the one
// built everywhere; another (a cgo binding, an accelerator) belongs in a
// file of its own behind a build tag, implementing this interface.
type Runtime interface {
	// Name says which runtime this is ("gonnx").
	Name() string
	// Load checks the model against meta (which Load validates too) and
	// returns a session ready to infer, or an error wrapping ErrRefused
	// that says why.
	Load(model []byte, meta Meta) (Session, error)
}

// Session runs one loaded model.
type Session interface {
	// Meta returns the model's document.
	Meta() Meta
	// Infer runs the model on one feature vector, ordered as Meta.Inputs.
	// It returns by the earlier of ctx's deadline and the model's budget
	// deadline, with an error wrapping context.DeadlineExceeded (or
	// context.Canceled) if the result is not there by then. A session runs
	// one inference at a time; concurrent callers wait their turn, each
	// within its own deadline.
	Infer(ctx context.Context, features []float64) (Result, error)
	// Close stops the session; it waits for an inference under way to end.
	// Infer after Close returns an error wrapping ErrClosed.
	Close() error
}

// Result is what one inference gives.
type Result struct {
	// Outputs holds each output of the Meta by name, flattened.
	Outputs map[string][]float64
	// Flags holds each threshold of the Meta by name: true when its output
	// is above the level.
	Flags map[string]bool
}

// Scores returns the result as a loop's score map: each score output's
// value, each class output's index of the largest value, and each
// threshold as 1 (crossed) or 0.
func (r Result) Scores(m Meta) map[string]float64 {
	out := make(map[string]float64, len(m.Outputs)+len(m.Thresholds))
	for _, o := range m.Outputs {
		v := r.Outputs[o.Name]
		switch {
		case len(v) == 0:
			out[o.Name] = math.NaN()
		case o.Kind == OutputClass:
			out[o.Name] = float64(argmax(v))
		default:
			out[o.Name] = v[0]
		}
	}
	for name, on := range r.Flags {
		out[name] = 0
		if on {
			out[name] = 1
		}
	}
	return out
}

// flags applies the thresholds of m to outputs.
func flags(m Meta, outputs map[string][]float64) map[string]bool {
	if len(m.Thresholds) == 0 {
		return nil
	}
	f := make(map[string]bool, len(m.Thresholds))
	for name, t := range m.Thresholds {
		v := outputs[t.Output]
		f[name] = len(v) > 0 && v[0] > t.Above
	}
	return f
}

func argmax(v []float64) int {
	return slices.Index(v, slices.Max(v))
}

// Scored is what a scorer answers for one decision: the scores that
// count, the version that gave them and, while a rollout stages a
// candidate at the node, the rollout, the node's stage in it and the
// other version's scores beside (recorded, without effect).
type Scored struct {
	Scores  map[string]float64 `json:"scores,omitempty"`
	Version string             `json:"version,omitempty"`
	Rollout string             `json:"rollout,omitempty"`
	Stage   string             `json:"stage,omitempty"`
	Beside  *Beside            `json:"beside,omitempty"`
}

// Beside is the version scored beside the one that counted: the
// candidate in shadow (and for objects outside the canary), the baseline
// for canary objects.
type Beside struct {
	Version string             `json:"version"`
	Role    string             `json:"role"` // "candidate" or "baseline"
	Scores  map[string]float64 `json:"scores,omitempty"`
	Error   string             `json:"error,omitempty"`
}
