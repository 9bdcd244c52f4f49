// Package capture takes windows of raw data for the learning loop: when an
// alarm is raised, when a loop decides to act, or when an operator asks,
// it reads the object's numeric properties from the node's time-series
// store over [at − Before, at + After] and stores the window in the
// node's dataset store (package dataset), with the loop's features at
// decision time.
//
// At an edge, the window stays whole in the edge's own store, and what
// goes up to the hub (Options.Up) is Redact's copy: the series of the
// properties classified important or core without a sharing grant are
// left out, their summaries go up. Captures are queued and taken After
// the trigger (so the window holds what followed it); a full queue drops
// the trigger and counts it, and a trigger already taken (an evidence
// record's later states, a raised alarm updated) is taken once.
package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/dataset"
	"github.com/wanwu-iot/wanwu/internal/loop"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/tsdb"
)

// Defaults of a window's span around its trigger.
const (
	DefaultBefore = 2 * time.Minute
	DefaultAfter  = 10 * time.Second
	queueSize     = 256
	seenSize      = 4096
)

// Trigger is why and about what a window is taken.
type Trigger struct {
	Tenant, Object string
	Reason         string // dataset.ReasonAlarm, ReasonDecision, ReasonRequest
	Ref, Loop      string
	At             time.Time
	Features       map[string]float64
	// Key, when set, is what a repeat is recognised by instead of the
	// reason, Ref and time.
	Key string
}

// Options configure a Capturer.
type Options struct {
	TSDB *tsdb.Store
	// Object returns an object and its thing model.
	Object func(ctx context.Context, code string) (*registry.Object, *thingmodel.Model, error)
	Store  *dataset.Store
	// Shared reports whether a property's raw values may leave the node
	// (the edge's sharing grants, "model id/property"); nil: all may.
	Shared func(modelID, property string) bool
	// Up is given the window as it may leave the node (an edge sends it to
	// the hub); nil: nothing leaves.
	Up func(w *dataset.Window)
	// Edge is the edge's code ("" at the hub).
	Edge          string
	Before, After time.Duration
	Registerer    prometheus.Registerer
	Now           func() time.Time
	Logger        *slog.Logger
}

// Capturer takes windows. Schedule is safe for concurrent use.
type Capturer struct {
	o     Options
	queue chan Trigger

	mu   sync.Mutex
	seen map[string]bool
	ring []string

	captured *prometheus.CounterVec
	dropped  prometheus.Counter

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a capturer; Start runs its queue.
func New(o Options) (*Capturer, error) {
	if o.TSDB == nil || o.Object == nil || o.Store == nil {
		return nil, errors.New("capture: TSDB, Object and Store are required")
	}
	if o.Before <= 0 {
		o.Before = DefaultBefore
	}
	if o.After < 0 {
		o.After = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Capturer{o: o, queue: make(chan Trigger, queueSize), seen: map[string]bool{},
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wanwu_dataset_windows_captured_total",
			Help: "Windows of raw data captured for the learning loop, by reason and result (ok, error)."}, []string{"reason", "result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "wanwu_dataset_captures_dropped_total",
			Help: "Capture triggers dropped because the capture queue was full."}),
	}
	if o.Registerer != nil {
		for _, col := range []prometheus.Collector{c.captured, c.dropped} {
			if err := o.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("capture: metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Start runs the queue until Shutdown.
func (c *Capturer) Start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			select {
			case <-ctx.Done():
				return
			case t := <-c.queue:
				if wait := t.At.Add(c.o.After).Sub(c.o.Now()); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
				if _, err := c.Capture(ctx, t, t.At.Add(-c.o.Before), t.At.Add(c.o.After)); err != nil && ctx.Err() == nil {
					c.o.Logger.Warn("a window could not be captured", "object", t.Object, "reason", t.Reason, "err", err)
				}
			}
		}
	}()
}

// Shutdown stops the queue (triggers not taken yet are dropped) and waits.
func (c *Capturer) Shutdown(ctx context.Context) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Schedule queues a trigger; one with the reason, Ref and time of one
// seen before (a later state of the same decision, the same activation of
// an alarm) is ignored.
func (c *Capturer) Schedule(t Trigger) {
	if t.Ref != "" || t.Key != "" {
		key := t.Reason + "\x00" + t.Ref + "\x00" + t.At.UTC().Format(time.RFC3339Nano)
		if t.Key != "" {
			key = "\x00" + t.Key
		}
		c.mu.Lock()
		if c.seen[key] {
			c.mu.Unlock()
			return
		}
		c.seen[key] = true
		c.ring = append(c.ring, key)
		if len(c.ring) > seenSize {
			delete(c.seen, c.ring[0])
			c.ring = c.ring[1:]
		}
		c.mu.Unlock()
	}
	select {
	case c.queue <- t:
	default:
		c.dropped.Inc()
	}
}

// Objects looks up an object and its thing model in a registry (an
// Options.Object).
func Objects(reg *registry.Registry) func(ctx context.Context, code string) (*registry.Object, *thingmodel.Model, error) {
	return func(ctx context.Context, code string) (*registry.Object, *thingmodel.Model, error) {
		o, err := reg.Object(ctx, code)
		if err != nil {
			return nil, nil, err
		}
		m, err := reg.ModelOf(ctx, o)
		return o, m, err
	}
}

// Alarm takes a window around each activation of an alarm raised on this
// node (an imported one was captured where it was raised); c may be nil.
func (c *Capturer) Alarm(ev alarm.Event) {
	if c == nil || ev.Kind != alarm.KindRaised || ev.Alarm.Origin != "" || ev.Alarm.ID == "" {
		return
	}
	c.Schedule(Trigger{Tenant: ev.Alarm.Tenant, Object: ev.Alarm.Object, Reason: dataset.ReasonAlarm,
		Ref: ev.Alarm.ID, Loop: ev.Alarm.Source, At: ev.Alarm.RaisedAt})
}

// Decision takes a window around each loop decision to act made on this
// node, with the features it decided on; c may be nil.
func (c *Capturer) Decision(ev *loop.Evidence) {
	if c == nil || ev == nil || ev.Kind != loop.KindAction || ev.Origin != "" {
		return
	}
	c.Schedule(Trigger{Tenant: ev.Tenant, Object: ev.Object, Reason: dataset.ReasonDecision,
		Ref: strconv.FormatInt(ev.ID, 10), Loop: ev.Loop, At: ev.At, Features: ev.Features})
}

// CandidateRef is the Ref of a window taken where a rollout's candidate
// flagged an object its baseline did not (its shadow's would-be alarms).
func CandidateRef(plan, version string) string { return plan + ":v" + version }

// Candidate takes a window where a rollout's candidate flagged what the
// version in effect did not, at most one per plan, object and 10 minutes;
// c may be nil.
func (c *Capturer) Candidate(tenant, object, plan, version string, at time.Time, features map[string]float64) {
	if c == nil {
		return
	}
	c.Schedule(Trigger{Tenant: tenant, Object: object, Reason: dataset.ReasonDecision, Ref: CandidateRef(plan, version),
		At: at, Features: features, Key: plan + "\x00" + object + "\x00" + at.Truncate(10*time.Minute).Format(time.RFC3339)})
}

// maxSteps bounds the points read per property (one per step).
const maxSteps = 10_000

// Capture takes the window [from, to] of the trigger's object now: every
// numeric property of its thing model with samples in it.
func (c *Capturer) Capture(ctx context.Context, t Trigger, from, to time.Time) (w *dataset.Window, err error) {
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		c.captured.WithLabelValues(t.Reason, result).Inc()
	}()
	obj, model, err := c.o.Object(ctx, t.Object)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if model == nil {
		return nil, fmt.Errorf("capture: object %s has no thing model", t.Object)
	}
	step := max(to.Sub(from)/maxSteps, time.Millisecond)
	w = &dataset.Window{Tenant: obj.Tenant, Object: obj.Code, Model: model.Key(), Edge: c.o.Edge, Reason: t.Reason,
		Ref: t.Ref, Loop: t.Loop, From: from, To: to, Series: map[string][]dataset.Point{},
		Features: finite(t.Features), Classification: thingmodel.ClassPublic, CapturedAt: c.o.Now()}
	for _, name := range slices.Sorted(maps.Keys(model.Properties)) {
		p := model.Properties[name]
		if p == nil || (p.Type != "number" && p.Type != "integer") || len(w.Series) >= dataset.MaxProperties {
			continue
		}
		series, err := c.o.TSDB.Range(ctx, []tsdb.Matcher{{Name: "tenant", Op: "=", Value: obj.Tenant},
			{Name: "device", Op: "=", Value: obj.Code}, {Name: "__name__", Op: "=", Value: name}}, from, to, step, tsdb.AggLast)
		if err != nil {
			return nil, fmt.Errorf("capture: %s: %w", name, err)
		}
		var pts []dataset.Point
		for _, s := range series {
			for _, pt := range s.Points {
				pts = append(pts, dataset.Point{T: time.UnixMilli(pt.T).UTC(), V: pt.V})
			}
		}
		if len(pts) == 0 {
			continue
		}
		w.Series[name] = pts
		if rank(p.Classification) > rank(w.Classification) {
			w.Classification = p.Classification
		}
	}
	if len(w.Series) == 0 {
		return nil, fmt.Errorf("capture: object %s has no numeric samples between %s and %s", t.Object, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	stored, err := c.o.Store.AddWindow(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	if c.o.Up != nil {
		up := dataset.Redact(stored, func(prop string) bool {
			p := model.Properties[prop]
			local := p != nil && (p.Classification == thingmodel.ClassImportant || p.Classification == thingmodel.ClassCore)
			return !local || c.o.Shared != nil && c.o.Shared(model.ID, prop)
		})
		c.o.Up(up)
	}
	return stored, nil
}

func rank(class string) int {
	switch class {
	case thingmodel.ClassPublic:
		return 0
	case thingmodel.ClassImportant:
		return 2
	case thingmodel.ClassCore:
		return 3
	}
	return 1 // internal, the default
}

func finite(m map[string]float64) map[string]float64 {
	if len(m) == 0 {
		return nil
	}
	out := map[string]float64{}
	for k, v := range m {
		if v == v && v-v == 0 {
			out[k] = v
		}
	}
	return out
}
