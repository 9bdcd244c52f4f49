package mlreg

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wanwu-iot/wanwu/internal/ml"
)

// DefaultScorerSessions is how many loaded sessions a Scorer keeps unless
// told otherwise.
const DefaultScorerSessions = 16

// ErrScorerClosed is returned by Score after Close.
var ErrScorerClosed = errors.New("mlreg: scorer closed")

// Scorer runs registered models, keeping one loaded session per (tenant,
// id, version): at most a bounded number, the least recently used closed
// first. A session in use when it is evicted is closed when its last
// caller is done with it. Safe for concurrent use.
type Scorer struct {
	reg *Registry
	rt  ml.Runtime
	max int
	m   scorerMetrics

	mu      sync.Mutex
	lru     *list.List // of *scorerEntry, most recent first
	byKey   map[string]*list.Element
	closed  bool
	stages  Stages                // the node's rollouts (staged.go)
	meters  map[string]*planMeter // by rollout
	stats   map[string]*versionStats
	flagged Flagged
}

type scorerEntry struct {
	key     string
	tenant  string
	id      string
	version string
	sess    ml.Session
	meta    ml.Meta
	refs    int
	evicted bool

	facts versionFacts // of its meta, for staged scoring

	dmu   sync.Mutex
	drift *ml.Drift // the inputs against the training data
}

// scorerMetrics are what the scorer tells Prometheus per model version:
// inferences by result, their latency, the scores' distribution and each
// input's drift (PSI).
type scorerMetrics struct {
	inferences *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	scores     *prometheus.HistogramVec
	psi        *prometheus.GaugeVec
}

// psiEvery is how many inferences pass between updates of the drift
// gauges.
const psiEvery = 25

func newScorerMetrics() scorerMetrics {
	labels := []string{"tenant", "model", "version"}
	return scorerMetrics{
		inferences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_ml_inferences_total",
			Help: "Model inferences by result (ok, error: the model failed, was late or lacked a feature)."}, append(labels, "result")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wanwu_ml_inference_seconds",
			Help: "Time of a model inference, the session's wait included.", Buckets: prometheus.ExponentialBuckets(5e-6, 2.5, 12)}, labels),
		scores: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wanwu_ml_score",
			Help: "The values a model's score outputs took.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}, append(labels, "output")),
		psi: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wanwu_ml_input_psi",
			Help: "Population stability index of a model input over its last 500 values against the training data (the document's mean and std, as a normal distribution): above 0.25, the input has moved."}, append(labels, "feature")),
	}
}

// Register registers the scorer's metrics.
func (s *Scorer) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.m.inferences, s.m.latency, s.m.scores, s.m.psi} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("mlreg: scorer metrics: %w", err)
		}
	}
	return nil
}

// NewScorer returns a scorer of reg's models loaded with rt (nil: gonnx),
// keeping DefaultScorerSessions sessions.
func NewScorer(reg *Registry, rt ml.Runtime) *Scorer {
	return NewScorerSize(reg, rt, DefaultScorerSessions)
}

// NewScorerSize is NewScorer keeping at most n sessions (at least 1).
func NewScorerSize(reg *Registry, rt ml.Runtime, n int) *Scorer {
	if rt == nil {
		rt = ml.NewGonnx()
	}
	return &Scorer{reg: reg, rt: rt, max: max(n, 1), lru: list.New(), byKey: map[string]*list.Element{}, m: newScorerMetrics()}
}

// Score runs the model version (version "": the newest) on features, by
// name; a feature the model takes and features lacks is an error naming
// it (wrapping ml.ErrInput), features it does not take are ignored. It
// returns the Result's Scores (a loop's score map) and the version that
// ran.
func (s *Scorer) Score(ctx context.Context, tenant, id, version string, features map[string]float64) (map[string]float64, string, error) {
	scores, version, _, _, err := s.score(ctx, tenant, id, version, features)
	return scores, version, err
}

// score is Score, also giving the version's facts (nil when it did not
// load) and how long its inference took (0 when none ran): the latency of
// the model, not of finding and loading it.
func (s *Scorer) score(ctx context.Context, tenant, id, version string, features map[string]float64) (map[string]float64, string, *versionFacts, time.Duration, error) {
	v, err := s.reg.resolve(ctx, tenant, id, version)
	if err != nil {
		return nil, "", nil, 0, err
	}
	version = strconv.Itoa(v)
	e, err := s.acquire(ctx, tenant, id, version)
	if err != nil {
		return nil, version, nil, 0, err
	}
	defer s.release(e)
	x := make([]float64, len(e.meta.Inputs))
	for i, f := range e.meta.Inputs {
		val, ok := features[f.Name]
		if !ok {
			return nil, version, &e.facts, 0, fmt.Errorf("mlreg: model %s@%s: %w: feature %q missing", id, version, ml.ErrInput, f.Name)
		}
		x[i] = val
	}
	start := time.Now()
	res, err := e.sess.Infer(ctx, x)
	took := time.Since(start)
	s.m.latency.WithLabelValues(tenant, id, version).Observe(took.Seconds())
	st := s.statsOf(tenant, id, version)
	if err != nil {
		s.m.inferences.WithLabelValues(tenant, id, version, "error").Inc()
		st.observe(start, took, err, e.meta, nil)
		return nil, version, &e.facts, took, fmt.Errorf("mlreg: model %s@%s: %w", id, version, err)
	}
	s.m.inferences.WithLabelValues(tenant, id, version, "ok").Inc()
	scores := res.Scores(e.meta)
	st.observe(start, took, nil, e.meta, scores)
	for _, o := range e.meta.Outputs {
		if v, ok := scores[o.Name]; ok && o.Kind == ml.OutputScore {
			s.m.scores.WithLabelValues(tenant, id, version, o.Name).Observe(v)
		}
	}
	s.observeDrift(e, x)
	return scores, version, &e.facts, took, nil
}

// observeDrift adds an input vector to the entry's drift meter and, every
// psiEvery vectors, sets the drift gauges.
func (s *Scorer) observeDrift(e *scorerEntry, x []float64) {
	e.dmu.Lock()
	defer e.dmu.Unlock()
	if e.drift == nil {
		e.drift = ml.NewDrift(e.meta, ml.DriftWindow)
	}
	e.drift.Observe(x)
	if e.drift.Observed()%psiEvery != 0 {
		return
	}
	for i, psi := range e.drift.PSI() {
		s.m.psi.WithLabelValues(e.tenant, e.id, e.version, e.meta.Inputs[i].Name).Set(psi)
	}
}

// acquire returns the entry of a loaded session, loading it on a miss,
// with a reference the caller releases.
func (s *Scorer) acquire(ctx context.Context, tenant, id, version string) (*scorerEntry, error) {
	key := tenant + "\x00" + id + "\x00" + version
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrScorerClosed
	}
	if el, ok := s.byKey[key]; ok {
		s.lru.MoveToFront(el)
		e := el.Value.(*scorerEntry)
		e.refs++
		s.mu.Unlock()
		return e, nil
	}
	s.mu.Unlock()

	// Load outside the lock: a load runs a trial inference.
	rec, err := s.reg.Get(ctx, tenant, id, version)
	if err != nil {
		return nil, err
	}
	meta, err := ml.ParseMeta(rec.Meta)
	if err != nil {
		return nil, fmt.Errorf("mlreg: stored model %s@%s: %w", id, version, err)
	}
	sess, err := s.rt.Load(rec.ONNX, meta)
	if err != nil {
		return nil, fmt.Errorf("mlreg: loading %s@%s: %w", id, version, err)
	}

	var done []ml.Session // closed after the lock: Close waits for a run under way
	defer func() { closeAll(done) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		done = append(done, sess)
		return nil, ErrScorerClosed
	}
	if el, ok := s.byKey[key]; ok { // another caller loaded it meanwhile
		done = append(done, sess)
		s.lru.MoveToFront(el)
		e := el.Value.(*scorerEntry)
		e.refs++
		return e, nil
	}
	e := &scorerEntry{key: key, tenant: tenant, id: id, version: version, sess: sess, meta: sess.Meta(), refs: 1}
	e.facts = factsOf(e.meta)
	s.byKey[key] = s.lru.PushFront(e)
	for s.lru.Len() > s.max {
		done = s.evict(s.lru.Back(), done)
	}
	return e, nil
}

// evict removes an entry (s.mu held) and appends its session to done
// unless a caller still uses it (release closes it then).
func (s *Scorer) evict(el *list.Element, done []ml.Session) []ml.Session {
	e := s.lru.Remove(el).(*scorerEntry)
	delete(s.byKey, e.key)
	e.evicted = true
	if e.refs == 0 {
		done = append(done, e.sess)
	}
	return done
}

func closeAll(ss []ml.Session) {
	for _, sess := range ss {
		_ = sess.Close() // a session's Close has nothing to report but ErrClosed
	}
}

func (s *Scorer) release(e *scorerEntry) {
	s.mu.Lock()
	e.refs--
	last := e.evicted && e.refs == 0
	s.mu.Unlock()
	if last {
		_ = e.sess.Close()
	}
}

// Loaded is how many sessions the scorer holds.
func (s *Scorer) Loaded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Close closes every session (one in use when its caller is done) and
// refuses later scores.
func (s *Scorer) Close() error {
	var done []ml.Session
	s.mu.Lock()
	s.closed = true
	for s.lru.Len() > 0 {
		done = s.evict(s.lru.Back(), done)
	}
	s.mu.Unlock()
	closeAll(done)
	return nil
}

// VersionStats are a model version's figures at this node since the
// scorer started: inferences by result, their rate over the last minute,
// latency and score quantiles over the last 500, the share of
// inferences that crossed each threshold, and each input's drift (PSI).
type VersionStats struct {
	OK        int64              `json:"ok"`
	Errors    int64              `json:"errors"`
	PerSecond float64            `json:"per_second"`
	LatencyMS map[string]float64 `json:"latency_ms,omitempty"` // p50, p99
	Score     map[string]float64 `json:"score,omitempty"`      // p50, p90, p99 of the first score output
	Flagged   map[string]float64 `json:"flagged,omitempty"`    // by threshold: share of the last 500
	PSI       map[string]float64 `json:"psi,omitempty"`        // by input
}

// versionStats accumulates a VersionStats.
type versionStats struct {
	mu      sync.Mutex
	ok, err int64
	recent  []time.Time // inference times within the last minute
	lat     []float64
	score   []float64
	flags   map[string][]float64
}

func (s *Scorer) statsOf(tenant, id, version string) *versionStats {
	key := tenant + "\x00" + id + "\x00" + version
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats == nil {
		s.stats = map[string]*versionStats{}
	}
	st := s.stats[key]
	if st == nil {
		st = &versionStats{flags: map[string][]float64{}}
		s.stats[key] = st
	}
	return st
}

func (st *versionStats) observe(now time.Time, took time.Duration, err error, meta ml.Meta, scores map[string]float64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	cut := 0
	for cut < len(st.recent) && now.Sub(st.recent[cut]) > time.Minute {
		cut++
	}
	st.recent = append(st.recent[cut:], now)
	st.lat = pushWindow(st.lat, float64(took)/float64(time.Millisecond))
	if err != nil {
		st.err++
		return
	}
	st.ok++
	for _, o := range meta.Outputs {
		if o.Kind == ml.OutputScore {
			st.score = pushWindow(st.score, scores[o.Name])
			break
		}
	}
	for name := range meta.Thresholds {
		st.flags[name] = pushWindow(st.flags[name], scores[name])
	}
}

func quantiles(xs []float64, qs map[string]float64) map[string]float64 {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	out := map[string]float64{}
	for name, q := range qs {
		out[name] = s[min(len(s)-1, int(q*float64(len(s))))]
	}
	return out
}

// Stats returns a version's figures at this node (nil when it never
// scored here).
func (s *Scorer) Stats(tenant, id, version string) *VersionStats {
	key := tenant + "\x00" + id + "\x00" + version
	s.mu.Lock()
	st := s.stats[key]
	var entry *scorerEntry
	if el, ok := s.byKey[key]; ok {
		entry = el.Value.(*scorerEntry)
	}
	s.mu.Unlock()
	var psi map[string]float64
	if entry != nil {
		entry.dmu.Lock()
		if entry.drift != nil && entry.drift.Observed() > 0 {
			psi = map[string]float64{}
			for i, v := range entry.drift.PSI() {
				psi[entry.meta.Inputs[i].Name] = v
			}
		}
		entry.dmu.Unlock()
	}
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	out := &VersionStats{OK: st.ok, Errors: st.err, PerSecond: float64(len(st.recent)) / 60,
		LatencyMS: quantiles(st.lat, map[string]float64{"p50": 0.5, "p99": 0.99}),
		Score:     quantiles(st.score, map[string]float64{"p50": 0.5, "p90": 0.9, "p99": 0.99})}
	for name, xs := range st.flags {
		if out.Flagged == nil {
			out.Flagged = map[string]float64{}
		}
		on := 0.0
		for _, x := range xs {
			on += x
		}
		out.Flagged[name] = on / float64(len(xs))
	}
	out.PSI = psi
	return out
}

// VersionRef names a model version.
type VersionRef struct {
	Tenant  string `json:"tenant"`
	ID      string `json:"id"`
	Version string `json:"version"`
}

// VersionFigures is one version's figures in an edge's report to the hub.
type VersionFigures struct {
	VersionRef
	Figures *VersionStats `json:"figures"`
}

// Scored lists the versions that scored at this node.
func (s *Scorer) Scored() []VersionRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VersionRef, 0, len(s.stats))
	for key := range s.stats {
		p := strings.SplitN(key, "\x00", 3)
		out = append(out, VersionRef{Tenant: p[0], ID: p[1], Version: p[2]})
	}
	slices.SortFunc(out, func(a, b VersionRef) int {
		return strings.Compare(a.Tenant+"\x00"+a.ID+"\x00"+a.Version, b.Tenant+"\x00"+b.ID+"\x00"+b.Version)
	})
	return out
}
