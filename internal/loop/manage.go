package loop

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	evaluations prometheus.Counter
	decisions   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	samples     *prometheus.CounterVec
	overBudget  prometheus.Counter
	bytes       prometheus.Gauge
	objects     *prometheus.GaugeVec
	scoreErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{Name: "wanwu_loop_evaluations_total", Help: "Decisions evaluated (a loop for an object)."}),
		decisions:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_loop_evidence_total", Help: "Evidence records written, by loop and state."}, []string{"loop", "state"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_loop_errors_total", Help: "Loop failures: expressions that failed at run time, actions not computed, evidence not written."}, []string{"loop"}),
		samples:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_loop_samples_total", Help: "Samples the feature windows took, by result (accepted, late, duplicate)."}, []string{"result"}),
		overBudget:  prometheus.NewCounter(prometheus.CounterOpts{Name: "wanwu_loop_samples_over_budget_total", Help: "Samples of objects left out because the windows' memory budget was spent."}),
		bytes:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "wanwu_loop_window_bytes", Help: "Memory the feature windows hold, approximately."}),
		objects:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "wanwu_loop_objects", Help: "Objects each loop runs for on this node."}, []string{"loop"}),
		scoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_loop_model_errors_total", Help: "Calls of a loop's model (decide.model) that gave no scores: an error, a timeout, no scorer on the node."}, []string{"loop"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.evaluations, m.decisions, m.errors, m.samples, m.overBudget, m.bytes, m.objects, m.scoreErrors} {
			reg.MustRegister(c)
		}
	}
	return m
}

// publishStats refreshes what Stats returns from the engine's state.
func (e *Engine) publishStats() {
	e.metrics.bytes.Set(float64(e.bytes))
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	for key, r := range e.loops {
		s := e.stats[key]
		if s == nil {
			s = &LoopStats{Key: key, Outcomes: map[string]int{}}
			e.stats[key] = s
		}
		s.Mode, s.Version, s.Killed = r.info.Mode, r.info.Version, e.kill.Loops[key]
		s.Objects = len(r.targets)
		s.On = 0
		for _, t := range r.targets {
			if t.on {
				s.On++
			}
		}
		e.metrics.objects.WithLabelValues(key).Set(float64(s.Objects))
	}
	for key := range e.stats {
		if e.loops[key] == nil {
			delete(e.stats, key)
			e.metrics.objects.DeleteLabelValues(key)
		}
	}
}

// Stats returns what each loop did since the engine started, by key.
func (e *Engine) Stats() []LoopStats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	out := make([]LoopStats, 0, len(e.stats))
	for _, s := range e.stats {
		c := *s
		c.Outcomes = make(map[string]int, len(s.Outcomes))
		for k, v := range s.Outcomes {
			c.Outcomes[k] = v
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b LoopStats) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return out
}

// Define parses, checks and stores a definition as the loop's next
// version (tenant: the caller's, when the definition names none), and
// makes the engine run it.
func (e *Engine) Define(ctx context.Context, actor, tenant string, doc []byte) (*Info, bool, error) {
	d, err := Parse(doc)
	if err != nil {
		return nil, false, err
	}
	if d.Tenant == "" {
		d.Tenant = tenant
	}
	if tenant != "" && d.Tenant != tenant {
		return nil, false, Problems{{Path: "$.tenant", Message: fmt.Sprintf("must be the caller's tenant %q", tenant)}}
	}
	if d.Tenant == "" {
		return nil, false, Problems{{Path: "$.tenant", Message: "required: the tenant whose objects the loop runs for"}}
	}
	return e.put(ctx, actor, d)
}

func (e *Engine) put(ctx context.Context, actor string, d *Definition) (*Info, bool, error) {
	d.Version = 0
	c, err := CompileWith(ctx, e.opts.Objects, d)
	if err != nil {
		return nil, false, err
	}
	info, changed, err := e.opts.Store.Put(ctx, actor, d, c.Digest)
	if err != nil {
		return nil, false, err
	}
	e.Reload()
	return info, changed, nil
}

// SetMode switches a loop to a mode: a new version, audited.
func (e *Engine) SetMode(ctx context.Context, actor, key string, mode Mode) (*Info, error) {
	switch mode {
	case Active, Shadow, Disabled:
	default:
		return nil, Problems{{Path: "$.mode", Message: fmt.Sprintf("must be active, shadow or disabled, not %q", mode)}}
	}
	info, err := e.opts.Store.Get(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	d := *info.Def
	d.Mode = mode
	info, _, err = e.put(ctx, actor, &d)
	return info, err
}

// Comparison sets a shadow loop's decisions beside another loop's (the
// active one it would replace) over the same objects and time.
type Comparison struct {
	Shadow string        `json:"shadow"`
	Active string        `json:"active"`
	Since  time.Time     `json:"since"`
	Window time.Duration `json:"-"`
	// WindowS is how far apart two decisions may be to count as the same.
	WindowS float64 `json:"window_s"`
	// Both: both loops decided to act on the object within the window;
	// ShadowOnly and ActiveOnly: only one did.
	Both       int             `json:"both"`
	ShadowOnly int             `json:"shadow_only"`
	ActiveOnly int             `json:"active_only"`
	Agreement  float64         `json:"agreement"` // Both / (Both + ShadowOnly + ActiveOnly)
	Objects    []ObjectCompare `json:"objects"`
}

// ObjectCompare is one object's part of a Comparison.
type ObjectCompare struct {
	Object     string `json:"object"`
	Both       int    `json:"both"`
	ShadowOnly int    `json:"shadow_only"`
	ActiveOnly int    `json:"active_only"`
}

// Compare matches the action decisions of two loops since a time: a
// decision of one matches the other's on the same object within window.
func (s *Store) Compare(ctx context.Context, shadowKey, activeKey string, since time.Time, window time.Duration) (*Comparison, error) {
	if window <= 0 {
		window = time.Minute
	}
	load := func(key string) (map[string][]time.Time, error) {
		out := map[string][]time.Time{}
		before := int64(0)
		for {
			evs, err := s.ListEvidence(ctx, EvidenceFilter{Loop: key, Before: before, Limit: 1000})
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				if ev.Kind == KindAction && !ev.At.Before(since) {
					out[ev.Object] = append(out[ev.Object], ev.At)
				}
			}
			if len(evs) < 1000 || evs[len(evs)-1].At.Before(since) {
				return out, nil
			}
			before = evs[len(evs)-1].ID
		}
	}
	if _, err := s.Get(ctx, shadowKey, 0); err != nil {
		return nil, err
	}
	if _, err := s.Get(ctx, activeKey, 0); err != nil {
		return nil, err
	}
	sh, err := load(shadowKey)
	if err != nil {
		return nil, err
	}
	ac, err := load(activeKey)
	if err != nil {
		return nil, err
	}
	c := &Comparison{Shadow: shadowKey, Active: activeKey, Since: since, Window: window, WindowS: window.Seconds(), Objects: []ObjectCompare{}}
	objs := map[string]bool{}
	for o := range sh {
		objs[o] = true
	}
	for o := range ac {
		objs[o] = true
	}
	for _, o := range slices.Sorted(mapsKeys(objs)) {
		oc := ObjectCompare{Object: o}
		a := slices.Clone(ac[o])
		slices.SortFunc(a, func(x, y time.Time) int { return x.Compare(y) })
		used := make([]bool, len(a))
		for _, t := range sh[o] {
			matched := false
			for i, u := range a {
				if !used[i] && absDur(t.Sub(u)) <= window {
					used[i], matched = true, true
					break
				}
			}
			if matched {
				oc.Both++
			} else {
				oc.ShadowOnly++
			}
		}
		for _, u := range used {
			if !u {
				oc.ActiveOnly++
			}
		}
		c.Both += oc.Both
		c.ShadowOnly += oc.ShadowOnly
		c.ActiveOnly += oc.ActiveOnly
		c.Objects = append(c.Objects, oc)
	}
	if n := c.Both + c.ShadowOnly + c.ActiveOnly; n > 0 {
		c.Agreement = float64(c.Both) / float64(n)
	}
	return c, nil
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
