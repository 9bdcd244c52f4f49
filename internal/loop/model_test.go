package loop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/examples/models"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/ml"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// sessionScorer is a Scorer over one loaded model: what a model registry
// does for the model a loop names.
type sessionScorer struct {
	sess ml.Session
	meta ml.Meta

	mu    sync.Mutex
	calls int
}

func (s *sessionScorer) ScoreObject(ctx context.Context, tenant, id, version, _, _ string, feats map[string]float64) (ml.Scored, error) {
	scores, v, err := s.score(ctx, tenant, id, version, feats)
	return ml.Scored{Scores: scores, Version: v}, err
}

func (s *sessionScorer) score(ctx context.Context, tenant, id, version string, feats map[string]float64) (map[string]float64, string, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	have := strconv.Itoa(s.meta.Version)
	if tenant != "demo" || id != s.meta.ID || (version != "" && version != have) {
		return nil, "", fmt.Errorf("no model %s version %q for tenant %s", id, version, tenant)
	}
	x := make([]float64, len(s.meta.Inputs))
	for i, in := range s.meta.Inputs {
		v, ok := feats[in.Name]
		if !ok {
			return nil, "", fmt.Errorf("model %s takes %s, which the loop does not give", id, in.Name)
		}
		x[i] = v
	}
	res, err := s.sess.Infer(ctx, x)
	if err != nil {
		return nil, "", fmt.Errorf("model %s: %w", id, err)
	}
	return res.Scores(s.meta), have, nil
}

func (s *sessionScorer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// scorerFunc is a Scorer that fails or hangs as a test wants.
type scorerFunc func(ctx context.Context) (map[string]float64, string, error)

func (f scorerFunc) ScoreObject(ctx context.Context, _, _, _, _, _ string, _ map[string]float64) (ml.Scored, error) {
	scores, v, err := f(ctx)
	return ml.Scored{Scores: scores, Version: v}, err
}

// pca8 loads internal/ml's checked-in model with the reference runtime's
// outputs for its rows.
func pca8(t *testing.T) (*sessionScorer, [][]float64, []float64) {
	t.Helper()
	dir := filepath.Join("..", "ml", "testdata")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	meta, err := ml.ParseMeta(read("pca8.meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ml.NewGonnx().Load(read("pca8.onnx"), meta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	var in struct{ Rows [][]float64 }
	var ref struct{ Outputs [][]float64 }
	if err := json.Unmarshal(read("pca8.inputs.json"), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(read("pca8.reference.json"), &ref); err != nil {
		t.Fatal(err)
	}
	if len(in.Rows) != len(ref.Outputs) || len(in.Rows) == 0 {
		t.Fatalf("%d rows, %d reference outputs", len(in.Rows), len(ref.Outputs))
	}
	want := make([]float64, len(ref.Outputs))
	for i, o := range ref.Outputs {
		want[i] = o[0]
	}
	return &sessionScorer{sess: sess, meta: meta}, in.Rows, want
}

// The eight cnc-spindle properties the rows are reported as, in the
// order of the model's inputs (a_mean … h_mean).
var pcaProps = []string{"spindleSpeed", "feedRate", "spindleTemp", "motorCurrent", "vibRms", "vibPeak", "crestFactor", "vib1x"}

// pcaLoop: the loop's features have the model's input names.
const pcaLoop = `
id: pca
mode: active
on: {model: demo:cnc-spindle}
perceive:
  a_mean: {property: spindleSpeed, fn: last}
  b_mean: {property: feedRate, fn: last}
  c_mean: {property: spindleTemp, fn: last}
  d_mean: {property: motorCurrent, fn: last}
  e_mean: {property: vibRms, fn: last}
  f_mean: {property: vibPeak, fn: last}
  g_mean: {property: crestFactor, fn: last}
  h_mean: {property: vib1x, fn: last}
decide:
  when: score.score > 1.2399036524067855
  model: {id: pca8-reference}
act:
  alarm: {name: anomaly, severity: high}
`

// pcaMapped: features of their own names, mapped to the model's inputs,
// a pinned version, the meta's threshold flag, and a command whose
// interlock reads the score too.
const pcaMapped = `
id: pca-mapped
mode: active
on: {model: demo:cnc-spindle}
perceive:
  speed: {property: spindleSpeed, fn: last}
  feed: {property: feedRate, fn: last}
  temp: {property: spindleTemp, fn: last}
  current_a: {property: motorCurrent, fn: last}
  rms: {property: vibRms, fn: last}
  peak: {property: vibPeak, fn: last}
  crest: {property: crestFactor, fn: last}
  x1: {property: vib1x, fn: last}
decide:
  when: score.anomaly == 1.0
  model:
    id: pca8-reference
    version: 1
    features: {a_mean: speed, b_mean: feed, c_mean: temp, d_mean: current_a, e_mean: rms, f_mean: peak, g_mean: crest, h_mean: x1}
act:
  command: setFeedRate
  args: {feedRate: "50.0"}
guard:
  interlocks: {sure: score.score > 1.0}
`

func defineLoops(t *testing.T, e *env, docs ...string) {
	t.Helper()
	for _, doc := range docs {
		if _, _, err := e.engine.Define(e.ctx, "author", "demo", []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.engine.load(e.ctx); err != nil {
		t.Fatal(err)
	}
}

func sampleRow(e *env, code string, row []float64) {
	kv := map[string]any{}
	for i, p := range pcaProps {
		kv[p] = row[i]
	}
	e.sample(code, e.clock.Now(), kv)
}

func newEvidenceSince(t *testing.T, e *env, after int64) []*Evidence {
	t.Helper()
	evs, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []*Evidence
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].ID > after {
			out = append(out, evs[i])
		}
	}
	return out
}

// TestModelScores: loops whose decision reads a real model's scores
// (internal/ml's pca8, run by gonnx) act for the anomalous vectors and
// for no normal one; the evidence names the model, the version that
// scored and its scores, which are onnxruntime's.
func TestModelScores(t *testing.T) {
	scorer, rows, want := pca8(t)
	e := newEnv(t, "hub", "")
	e.engine.opts.Scorer = scorer
	defineLoops(t, e, pcaLoop, pcaMapped)
	threshold := scorer.meta.Thresholds["anomaly"].Above
	anomalies := 0
	for i, row := range rows {
		code := fmt.Sprintf("demo:cnc-%d", i)
		e.object(code, "demo:cnc-spindle", "", "", "")
		var last int64
		if evs := newEvidenceSince(t, e, 0); len(evs) > 0 {
			last = evs[len(evs)-1].ID
		}
		sampleRow(e, code, row)
		evs := newEvidenceSince(t, e, last)
		anomalous := want[i] > threshold
		if !anomalous {
			if len(evs) != 0 {
				t.Fatalf("row %d (score %g, normal): records %s", i, want[i], describe(evs[0]))
			}
			continue
		}
		anomalies++
		if len(evs) != 2 {
			t.Fatalf("row %d (score %g, anomalous): %d records, want one per loop", i, want[i], len(evs))
		}
		for j, ev := range evs {
			loop := []string{"demo:pca", "demo:pca-mapped"}[j]
			state, alarm := StateRecorded, true
			if j == 1 {
				state, alarm = StateSent, false
				if !slices.ContainsFunc(ev.Guards, func(g guard.Result) bool { return g.Guard == "interlock:sure" && g.Outcome == guard.Pass }) {
					t.Fatalf("row %d, %s: guards %+v", i, loop, ev.Guards)
				}
			}
			if ev.Loop != loop || ev.Object != code || ev.Kind != KindAction || ev.State != state || (ev.Alarm != "") != alarm {
				t.Fatalf("row %d: %s", i, describe(ev))
			}
			m := ev.Model
			if m == nil || m.ID != "pca8-reference" || m.Version != "1" || m.Error != "" || m.Skipped != "" {
				t.Fatalf("row %d, %s: model %+v", i, loop, m)
			}
			if got := m.Scores["score"]; math.Abs(got-want[i]) > 1e-4*math.Max(1, math.Abs(want[i])) {
				t.Fatalf("row %d, %s: score %v, onnxruntime's %v", i, loop, got, want[i])
			}
			if m.Scores["anomaly"] != 1 {
				t.Fatalf("row %d, %s: anomaly flag %v", i, loop, m.Scores["anomaly"])
			}
		}
	}
	if anomalies == 0 || anomalies == len(rows) {
		t.Fatalf("%d of %d rows anomalous: the test shows nothing", anomalies, len(rows))
	}
	// Once per loop and object: the interlock of a decision does not ask
	// again.
	if got := scorer.count(); got != 2*len(rows) {
		t.Fatalf("the model was asked %d times for %d decisions", got, 2*len(rows))
	}
	// The decision turns off when the scores go back to normal.
	for i := range rows {
		if want[i] > threshold {
			e.clock.set(goldenBase.Add(time.Second))
			sampleRow(e, fmt.Sprintf("demo:cnc-%d", i), rows[0])
			break
		}
	}
	evs := newEvidenceSince(t, e, 0)
	for _, ev := range evs[len(evs)-2:] {
		if ev.Kind != KindClear || ev.Model == nil || ev.Model.Scores["anomaly"] != 0 {
			t.Fatalf("back to normal: %s (model %+v)", describe(ev), ev.Model)
		}
	}
}

// TestModelFailures: when the model gives no scores (an error, a
// timeout, no scorer on the node, a version that is not there) the
// decision fails safe: an error record that says why, and no action. A
// feature without a value keeps the model from being called at all.
func TestModelFailures(t *testing.T) {
	anomaly := []float64{12.761450105304178, -15.982433721302165, -0.9643723649417097, 17.66186884247461, -16.72878463550699, -19.27590387302136, -1.5439963400911054, -14.707104577420672}
	hang := scorerFunc(func(ctx context.Context) (map[string]float64, string, error) {
		<-ctx.Done()
		return nil, "", ctx.Err()
	})
	late := scorerFunc(func(ctx context.Context) (map[string]float64, string, error) {
		<-ctx.Done()
		return map[string]float64{"score": 1e9, "anomaly": 1}, "1", nil
	})
	broken := scorerFunc(func(context.Context) (map[string]float64, string, error) {
		return nil, "", errors.New("model file corrupt")
	})
	cases := []struct {
		name   string
		scorer func(real *sessionScorer) Scorer
		doc    string
		row    []float64
		want   string // the error record's, or "" for a skipped model and its action
		calls  int    // of the real scorer, where it is the one
	}{
		{"scorer error", func(*sessionScorer) Scorer { return broken }, pcaLoop, anomaly, "decide.model pca8-reference: model file corrupt", -1},
		{"scorer panic", func(*sessionScorer) Scorer {
			return scorerFunc(func(context.Context) (map[string]float64, string, error) { panic("index out of range") })
		}, pcaLoop, anomaly, "decide.model pca8-reference: the scorer panicked: index out of range", -1},
		{"timeout", func(*sessionScorer) Scorer { return hang }, pcaLoop, anomaly, "decide.model pca8-reference: context deadline exceeded", -1},
		{"answer after the deadline", func(*sessionScorer) Scorer { return late }, pcaLoop, anomaly, "answered after its deadline of 50ms", -1},
		{"no scorer", func(*sessionScorer) Scorer { return nil }, pcaLoop, anomaly, "decide.model pca8-reference: this node has no model scorer", -1},
		{"no such version", func(s *sessionScorer) Scorer { return s }, strings.Replace(pcaMapped, "version: 1", "version: 7", 1), anomaly, `decide.model pca8-reference@7: no model pca8-reference version "7"`, 1},
		{"unmapped input", func(s *sessionScorer) Scorer { return s }, strings.Replace(pcaLoop, "  h_mean:", "  h_other:", 1), anomaly, "takes h_mean, which the loop does not give", 1},
		{"feature without a value", func(s *sessionScorer) Scorer { return s },
			strings.Replace(strings.Replace(pcaLoop, "score.score > 1.2399036524067855", `"!has(score.score)"`, 1),
				"h_mean: {property: vib1x, fn: last}", "h_mean: {property: vibBandHigh, fn: last, optional: true}", 1),
			anomaly, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			real, _, _ := pca8(t)
			e := newEnv(t, "hub", "")
			e.engine.opts.Scorer = c.scorer(real)
			defineLoops(t, e, c.doc)
			e.object("demo:cnc-1", "demo:cnc-spindle", "", "", "")
			start := time.Now()
			sampleRow(e, "demo:cnc-1", c.row)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the batch took %s", d)
			}
			evs := newEvidenceSince(t, e, 0)
			if len(evs) != 1 {
				t.Fatalf("%d records, want 1", len(evs))
			}
			ev := evs[0]
			if c.calls >= 0 && real.count() != c.calls {
				t.Errorf("the model was called %d times, want %d", real.count(), c.calls)
			}
			if c.want == "" {
				if ev.Kind != KindAction || ev.State != StateRecorded || ev.Model == nil || ev.Model.Skipped != "the feature h_mean has no value yet" || len(ev.Model.Scores) != 0 {
					t.Fatalf("%s, model %+v", describe(ev), ev.Model)
				}
				return
			}
			if ev.Kind != KindError || ev.State != StateError || ev.Action != nil || ev.Alarm != "" || !strings.Contains(ev.Error, c.want) {
				t.Fatalf("want an error record with %q, got %s", c.want, describe(ev))
			}
			if ev.Model == nil || ev.Model.ID != "pca8-reference" || len(ev.Model.Scores) != 0 || !strings.Contains(ev.Model.Error, c.want) {
				t.Fatalf("model %+v", ev.Model)
			}
			// Still no action: within a minute the failure is counted, not
			// written again.
			e.clock.set(goldenBase.Add(10 * time.Second))
			sampleRow(e, "demo:cnc-1", c.row)
			if evs := newEvidenceSince(t, e, ev.ID); len(evs) != 0 {
				t.Fatalf("after the failure: %s", describe(evs[0]))
			}
		})
	}
}

// TestModelDefinition: a bad decide.model is refused with the path of
// each problem; a good one compiles.
func TestModelDefinition(t *testing.T) {
	doc, _ := models.FS.ReadFile("cnc-spindle.model.json")
	m, err := thingmodel.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	const head = "id: m\non: {model: demo:cnc-spindle}\nperceive:\n  rms: {property: vibRms, fn: last}\n  peak: {property: vibPeak, fn: last}\nact: {alarm: {name: a, severity: low}}\ndecide:\n  when: score.score > 1.0\n"
	cases := []struct {
		name, model string
		want        []string // problems, each a path and the start of its message; none: accepted
	}{
		{"id only", "{id: pca8}", nil},
		{"all fields", "{id: spindle.anomaly_2, version: 3, features: {a: rms, b: peak}}", nil},
		{"unknown field", "{id: pca8, versoin: 2}", []string{"$.decide.model.versoin: unknown field; the fields here are id, version, features"}},
		{"not a mapping", "pca8", []string{"$.decide.model: must be a mapping of fields"}},
		{"empty id", "{version: 2}", []string{"$.decide.model.id: required"}},
		{"bad id", "{id: PCA 8}", []string{"$.decide.model.id: must be 1 to 63"}},
		{"version a string", "{id: pca8, version: newest}", []string{"$.decide.model.version: must be an integer"}},
		{"version not an integer", "{id: pca8, version: 1.5}", []string{"$.decide.model.version: must be an integer"}},
		{"negative version", "{id: pca8, version: -1}", []string{"$.decide.model.version: must be 1 or more"}},
		{"features a list", "{id: pca8, features: [rms]}", []string{"$.decide.model.features: must be a mapping"}},
		{"feature not a string", "{id: pca8, features: {a: 1}}", []string{"$.decide.model.features.a: must be a string"}},
		{"empty features", "{id: pca8, features: {}}", []string{"$.decide.model.features: empty"}},
		{"unknown feature", "{id: pca8, features: {a: rms, b: nope}}", []string{`$.decide.model.features.b: "nope" is not a feature of the loop`}},
		{"bad input name", "{id: pca8, features: {\"1a\": rms}}", []string{"$.decide.model.features.1a: a model input's name must be an identifier"}},
		{"several", "{id: '', version: -2, features: {x: y}}", []string{"$.decide.model.features.x: ", "$.decide.model.id: required", "$.decide.model.version: must be 1 or more"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(head + "  model: " + c.model + "\n"))
			if err == nil {
				_, err = Compile(d, m, nil)
			}
			if len(c.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var p Problems
			if !errors.As(err, &p) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("want problems, got %v", err)
			}
			if len(p) != len(c.want) {
				t.Fatalf("problems %v, want %q", p, c.want)
			}
			for i, w := range c.want {
				if got := p[i].String(); !strings.HasPrefix(got, w) {
					t.Errorf("problem %d: %q, want it to start with %q", i, got, w)
				}
			}
		})
	}
}
