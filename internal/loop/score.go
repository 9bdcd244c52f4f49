package loop

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ml"
)

// Scorer scores a loop's features with a model (decide.model): the model
// registry's, or any other.
type Scorer interface {
	// ScoreObject runs model id of tenant, version ("" for the version in
	// effect at the node), on features: the values the loop offers by model input
	// name (all finite), from which the scorer takes the model's inputs;
	// one missing is an error. It returns the score map a loop's CEL sees
	// (package ml's Result.Scores) and the version that scored. It must
	// return by ctx's deadline (package ml's sessions do): the engine
	// waits for it, and treats an answer after the deadline as an error.
	// object is the decision's object: a rollout's canary is a share of
	// the objects. While a rollout stages a candidate at the node, the
	// Scored says so (Rollout, Stage) and carries the other version's
	// scores beside.
	// site is the object's site ("tenant:site", "" outside the hierarchy):
	// a rollout may stage a candidate at some sites only.
	ScoreObject(ctx context.Context, tenant, id, version, object, site string, features map[string]float64) (ml.Scored, error)
}

// DefaultScoreTimeout is how long a decision waits for its model when
// Options.ScoreTimeout is not set.
const DefaultScoreTimeout = 50 * time.Millisecond

// errNoScorer: the loop names a model and this node has no scorer.
var errNoScorer = errors.New("this node has no model scorer (Options.Scorer): a loop with decide.model does not decide here")

// ModelUse is what the model of a decision (decide.model) gave, as the
// evidence keeps it.
type ModelUse struct {
	ID string `json:"id"`
	// Version is the version that scored; when it did not, the version
	// asked for ("" for the newest).
	Version string `json:"version,omitempty"`
	// Scores is the score map the expressions saw (its finite values).
	Scores map[string]float64 `json:"scores,omitempty"`
	// Skipped says why the model was not called (a feature it takes has
	// no value yet); score was empty.
	Skipped string `json:"skipped,omitempty"`
	// Error says why the model gave no scores.
	Error string `json:"error,omitempty"`
	// Rollout and Stage: the rollout staging a candidate of the model at
	// the node, and the node's stage in it; Beside the other version's
	// scores (no effect on the decision).
	Rollout string     `json:"rollout,omitempty"`
	Stage   string     `json:"stage,omitempty"`
	Beside  *ml.Beside `json:"beside,omitempty"`

	err    error
	at     time.Time          // the decision time it was made for
	inputs map[string]float64 // what it was given
}

// modelInputs returns what the loop offers its model: the mapped
// features under their model input names, or else every feature under
// its own name; and the name of a feature without a value, if any.
func modelInputs(mr *ModelRef, feats map[string]float64) (map[string]float64, string) {
	var in map[string]float64
	if mr.Features != nil {
		in = make(map[string]float64, len(mr.Features))
		for name, f := range mr.Features {
			in[name] = feats[f]
		}
	} else {
		in = maps.Clone(feats)
	}
	for _, name := range slices.Sorted(maps.Keys(in)) {
		if math.IsNaN(in[name]) {
			return nil, name
		}
	}
	return in, ""
}

// score fills a decision's score map from the loop's model, when it has
// one (else nil). Within one decision (the same time and features: the
// decision, then its guards) the model is asked once; a failure leaves
// the scores empty and is in the result's err.
func (e *Engine) score(ctx context.Context, r *running, t *target, feats map[string]float64, now time.Time) *ModelUse {
	mr := r.c.Def.Decide.Model
	if mr == nil {
		return nil
	}
	in, missing := modelInputs(mr, feats)
	if u := t.model; u != nil && u.at.Equal(now) && maps.Equal(u.inputs, in) {
		return u
	}
	version := ""
	if mr.Version > 0 {
		version = strconv.Itoa(mr.Version)
	}
	u := &ModelUse{ID: mr.ID, Version: version, at: now, inputs: in}
	t.model = u
	switch {
	case e.opts.Scorer == nil:
		u.err = errNoScorer
	case missing != "":
		feature := missing
		if mr.Features != nil {
			feature = mr.Features[missing]
		}
		u.Skipped = fmt.Sprintf("the feature %s has no value yet", feature)
		return u
	default:
		sctx, cancel := context.WithTimeout(ctx, e.opts.ScoreTimeout)
		sc, err := callScorer(sctx, e.opts.Scorer, r.info.Tenant, mr.ID, version, t.obj.Code, site(t.obj.Tenant, t.obj.Path), in)
		u.Rollout, u.Stage, u.Beside = sc.Rollout, sc.Stage, sc.Beside
		scores, got := sc.Scores, sc.Version
		if err == nil && sctx.Err() != nil {
			err = fmt.Errorf("answered after its deadline of %s: %w", e.opts.ScoreTimeout, sctx.Err())
		}
		cancel()
		if err != nil {
			u.err = err
			break
		}
		if got != "" {
			u.Version = got
		}
		u.Scores = maps.Clone(scores)
		if u.Scores == nil {
			u.Scores = map[string]float64{}
		}
		return u
	}
	if u.err != nil {
		u.err = fmt.Errorf("decide.model %s: %w", modelName(u), u.err)
		e.metrics.scoreErrors.WithLabelValues(r.info.Key).Inc()
		u.Error = u.err.Error()
	}
	return u
}

// callScorer asks s, turning a panic into an error: a broken scorer fails
// the decision, not the engine.
func callScorer(ctx context.Context, s Scorer, tenant, id, version, object, site string, in map[string]float64) (sc ml.Scored, err error) {
	defer func() {
		if p := recover(); p != nil {
			sc, err = ml.Scored{}, fmt.Errorf("the scorer panicked: %v", p)
		}
	}()
	return s.ScoreObject(ctx, tenant, id, version, object, site, in)
}

func modelName(u *ModelUse) string {
	if u.Version == "" {
		return u.ID
	}
	return u.ID + "@" + u.Version
}

// evidenceModel is the record's copy of a model's use: the finite scores
// (JSON has no NaN).
func evidenceModel(u *ModelUse) *ModelUse {
	if u == nil {
		return nil
	}
	out := &ModelUse{ID: u.ID, Version: u.Version, Skipped: u.Skipped, Error: u.Error}
	for k, v := range u.Scores {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			if out.Scores == nil {
				out.Scores = make(map[string]float64, len(u.Scores))
			}
			out.Scores[k] = v
		}
	}
	return out
}
