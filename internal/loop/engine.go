package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/alarm"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/detect"
	"github.com/wanwu-iot/wanwu/internal/feature"
	"github.com/wanwu-iot/wanwu/internal/guard"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Objects is what the engine asks the registry: the objects a loop
// selects and their relatives.
type Objects interface {
	Object(ctx context.Context, code string) (*registry.Object, error)
	List(ctx context.Context, f registry.ListFilter) ([]*registry.Object, string, error)
	Model(ctx context.Context, id, version string) (*thingmodel.Model, error)
}

// Options configure an Engine.
type Options struct {
	Store    *Store
	Objects  Objects
	Commands *command.Service
	Twins    *twin.Service
	Alarms   *alarm.Service // nil: loops that raise alarms fail to act
	// Emit records an event of a loop (act.event) for its object through
	// the node's pipeline; nil: events are only in the evidence.
	Emit func(ctx context.Context, msg ingest.Message) error
	// Role is "hub" or "edge"; Edge is the edge's own code at an edge.
	Role, Edge string
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// OnEvidence is called after every evidence write, on the engine's
	// goroutine; it must not block (the edge forwards records from it).
	OnEvidence func(*Evidence)
	// Tick is how often time-driven work runs: delays, repeats,
	// verification deadlines, approvals' expiry (default 1s).
	Tick time.Duration
	// Retention is how long final evidence is kept (default 30 days).
	Retention time.Duration
	// MaxSampleAge: samples older than this when they reach the engine
	// are not used (counted as stale): a loop does not act on old data,
	// a device's backlog after an outage or the log read again after a
	// restart (default 5m).
	MaxSampleAge time.Duration
	// MemoryBudget bounds what the feature windows of all loops hold
	// (default DefaultMemoryBudget); objects beyond it are not run and
	// are counted.
	MemoryBudget int
	// Scorer fills the score map of the loops that name a model
	// (decide.model). nil: such loops are loaded (the log says they
	// cannot decide) and every decision of theirs fails, with an error
	// record; they never act.
	Scorer Scorer
	// ScoreTimeout bounds each call of the Scorer, one per decision
	// (default DefaultScoreTimeout): the engine's other work waits for it.
	ScoreTimeout time.Duration
}

// Engine runs the loops of one node: it takes the ingest log's batches
// (it is a pipeline consumer), keeps the windows, decides, and acts
// through the guards, writing evidence for every decision. One goroutine
// owns all of its state; API calls hand it work.
type Engine struct {
	opts     Options
	log      *slog.Logger
	in       chan []sample
	captures chan capture
	calls    chan func()
	reload   chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	metrics  *metrics

	// Owned by the run goroutine.
	loops    map[string]*running
	devices  map[string]*device
	hist     *guard.History
	kill     guard.Kill
	bypasses []guard.Bypass
	open     map[int64]*Evidence
	bytes    int
	// dirty are the targets that got samples in the batch being taken,
	// in the order they got them: evaluated after it.
	dirty []dirtyTarget
	// pending are the evidence writes waiting for the end of the batch,
	// tick or vote (write, flush).
	pending []evidenceWrite

	statsMu sync.Mutex
	stats   map[string]*LoopStats

	// remote is the latest bundle from the hub (at an edge).
	remote atomic.Pointer[Bundle]
}

// LoopStats counts what one loop did since the engine started.
type LoopStats struct {
	Key      string         `json:"key"`
	Mode     Mode           `json:"mode"`
	Version  int            `json:"version"`
	Killed   string         `json:"killed,omitempty"`
	Objects  int            `json:"objects"`
	On       int            `json:"on"` // objects whose decision is on
	Outcomes map[string]int `json:"outcomes"`
	Errors   int            `json:"errors"`
	LastAt   *time.Time     `json:"last_at,omitempty"`
	Last     string         `json:"last,omitempty"` // the latest decision's state and object
}

type sample struct {
	device string
	prop   string
	t      int64
	v      float64
}

type running struct {
	info    *Info
	c       *Compiled
	targets map[string]*target
	sources map[string]*source
	shadow  *guard.History // a shadow loop's own history, as if it acted
}

type source struct {
	states []*feature.State // per feature index; nil where the feature does not read this object
	last   map[string]float64
	bytes  int
}

type target struct {
	obj       *registry.Object
	related   map[string][]string // relation+model+tags → codes
	relatedAt time.Time
	delay     detect.Delay
	ewma      *detect.EWMA
	cusum     *detect.CUSUM
	detOut    map[string]float64
	on        bool
	lastAct   time.Time
	dirty     bool
	twin      *twin.Twin
	twinAt    time.Time
	lastErr   time.Time
	errs      int
	model     *ModelUse // the latest scores of the loop's model
}

type dirtyTarget struct {
	r    *running
	code string
	t    *target
}

type device struct {
	obj   *registry.Object
	at    time.Time
	loops []*running // loops this device feeds (as target or source)
}

// deviceTTL is how long the engine trusts what it looked up about a
// device (its model, tags, place in the hierarchy).
const deviceTTL = time.Minute

// NewEngine checks the options and returns an engine that is not running.
func NewEngine(o Options) (*Engine, error) {
	if o.Store == nil || o.Objects == nil || o.Commands == nil || o.Twins == nil {
		return nil, errors.New("loop: Store, Objects, Commands and Twins are required")
	}
	if o.Role != "hub" && o.Role != "edge" {
		return nil, fmt.Errorf("loop: role must be hub or edge, not %q", o.Role)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.MaxSampleAge <= 0 {
		o.MaxSampleAge = 5 * time.Minute
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	if o.ScoreTimeout <= 0 {
		o.ScoreTimeout = DefaultScoreTimeout
	}
	e := &Engine{
		opts:     o,
		log:      o.Logger.With("component", "loop"),
		in:       make(chan []sample, 64),
		captures: make(chan capture, 64),
		calls:    make(chan func()),
		reload:   make(chan struct{}, 1),
		metrics:  newMetrics(o.Registerer),
		loops:    map[string]*running{},
		devices:  map[string]*device{},
		hist:     guard.NewHistory(64),
		open:     map[int64]*Evidence{},
		stats:    map[string]*LoopStats{},
	}
	return e, nil
}

// Start loads the loops and the open actions and starts the engine's
// goroutine.
func (e *Engine) Start(ctx context.Context) error {
	if err := e.load(ctx); err != nil {
		return err
	}
	open, err := e.opts.Store.ListEvidence(ctx, EvidenceFilter{States: []string{StateAwaiting, StateSent, StateVerify}, Limit: 1000})
	if err != nil {
		return err
	}
	for _, ev := range open {
		if ev.Origin == "" {
			e.open[ev.ID] = ev
		}
	}
	ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.done = make(chan struct{})
	go e.run(ctx)
	return nil
}

// Shutdown stops the engine's goroutine and waits for it.
func (e *Engine) Shutdown(ctx context.Context) error {
	if e.cancel == nil {
		return nil
	}
	e.cancel()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload makes the engine read the loops, kill switches and bypasses
// again (after a change through the API).
func (e *Engine) Reload() {
	select {
	case e.reload <- struct{}{}:
	default:
	}
}

// do runs fn on the engine's goroutine and waits for it.
func (e *Engine) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case e.calls <- func() { fn(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errors.New("loop: the engine has stopped")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Add takes one batch of the ingest log (pipeline.Consumer): the numbers
// and booleans of the devices some loop reads.
func (e *Engine) Add(msgs []ingest.Message) {
	var out []sample
	e.collect(msgs, &out)
	if len(out) == 0 || e.done == nil {
		return
	}
	select {
	case e.in <- out:
	case <-e.done:
	}
}

// collect copies the numbers and booleans of telemetry messages.
func (e *Engine) collect(msgs []ingest.Message, out *[]sample) {
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != ingest.Telemetry {
			continue
		}
		for j := range m.Records {
			r := &m.Records[j]
			switch r.Kind {
			case ingest.KindFloat:
				*out = append(*out, sample{device: m.Device, prop: r.Property, t: r.Time, v: r.Float})
			case ingest.KindBool:
				v := 0.0
				if r.Bool {
					v = 1
				}
				*out = append(*out, sample{device: m.Device, prop: r.Property, t: r.Time, v: v})
			}
		}
	}
}

// Write does nothing: the engine keeps its windows in memory and its
// decisions are written as they are made.
func (e *Engine) Write(context.Context) error { return nil }

// Commit does nothing (see Write).
func (e *Engine) Commit(context.Context) error { return nil }

func (e *Engine) run(ctx context.Context) {
	defer close(e.done)
	t := time.NewTicker(e.opts.Tick)
	defer t.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-e.in:
			e.ingest(ctx, batch)
		case c := <-e.captures:
			e.captured(ctx, c)
		case fn := <-e.calls:
			fn()
		case <-e.reload:
			if err := e.load(ctx); err != nil {
				e.log.Error("loops not reloaded", "err", err)
			}
		case <-t.C:
			e.tick(ctx)
		case <-prune.C:
			if n, err := e.opts.Store.pruneEvidence(ctx, e.opts.Now().Add(-e.opts.Retention)); err != nil {
				e.log.Warn("evidence not pruned", "err", err)
			} else if n > 0 {
				e.log.Info("evidence pruned", "records", n)
			}
		}
	}
}

// load reads the loops and compiles them; a loop that no longer compiles
// (its model changed) is logged and left out.
func (e *Engine) load(ctx context.Context) error {
	infos, err := e.opts.Store.List(ctx, "")
	if err != nil {
		return err
	}
	if err := e.refreshGuards(ctx); err != nil {
		return err
	}
	remote, _, _ := e.remoteState()
	local := map[string]bool{}
	for _, info := range infos {
		local[info.Key] = true
	}
	for _, info := range remote {
		if !local[info.Key] {
			infos = append(infos, info)
		}
	}
	next := make(map[string]*running, len(infos))
	for _, info := range infos {
		if old := e.loops[info.Key]; old != nil && old.info.Digest == info.Digest && old.info.Mode == info.Mode && old.info.Version == info.Version {
			old.info = info
			next[info.Key] = old
			continue
		}
		if e.opts.Role == "edge" {
			// An edge knows the models of the objects behind it only: a
			// loop over another model has nothing to run for here.
			if _, err := e.opts.Objects.Model(ctx, info.Def.On.Model, ""); errors.Is(err, registry.ErrNotFound) {
				e.log.Debug("loop not run here: no object of its model is behind this edge", "loop", info.Key, "model", info.Def.On.Model)
				continue
			}
		}
		c, err := e.compile(ctx, info.Def)
		if err != nil {
			e.log.Error("loop does not compile against its model; not run", "loop", info.Key, "version", info.Version, "err", err)
			e.metrics.errors.WithLabelValues(info.Key).Inc()
			continue
		}
		if mr := c.Def.Decide.Model; mr != nil && e.opts.Scorer == nil {
			e.log.Error("loop names a model but this node has no model scorer: every decision of it fails (error records) and it never acts", "loop", info.Key, "version", info.Version, "model", mr.ID)
		}
		next[info.Key] = &running{info: info, c: c, targets: map[string]*target{}, sources: map[string]*source{}, shadow: guard.NewHistory(64)}
	}
	e.loops = next
	e.devices = map[string]*device{}
	e.bytes = 0
	for _, r := range e.loops {
		for _, s := range r.sources {
			e.bytes += s.bytes
		}
	}
	e.publishStats()
	return nil
}

// refreshGuards reads the kill switches and the bypasses in force: the
// store's and the hub's (at an edge).
func (e *Engine) refreshGuards(ctx context.Context) error {
	kill, err := e.opts.Store.Kills(ctx)
	if err != nil {
		return err
	}
	bps, err := e.opts.Store.activeBypasses(ctx)
	if err != nil {
		return err
	}
	_, rkill, rbps := e.remoteState()
	e.kill, e.bypasses = mergeKills(kill, rkill), append(bps, rbps...)
	return nil
}

// compile compiles a stored definition against its models now.
func (e *Engine) compile(ctx context.Context, d *Definition) (*Compiled, error) {
	return CompileWith(ctx, e.opts.Objects, d)
}

// CompileWith looks up the models a definition names and compiles it.
func CompileWith(ctx context.Context, objs Objects, d *Definition) (*Compiled, error) {
	m, err := objs.Model(ctx, d.On.Model, "")
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return nil, err
	}
	related := map[string]*thingmodel.Model{}
	for _, f := range d.Perceive {
		if f.Of != nil && f.Of.Model != "" {
			rm, err := objs.Model(ctx, f.Of.Model, "")
			if err != nil && !errors.Is(err, registry.ErrNotFound) {
				return nil, err
			}
			if rm != nil {
				related[f.Of.Model] = rm
			}
		}
	}
	return Compile(d, m, related)
}

// device returns what the engine knows about a device, looking it up
// when it has not or the knowledge is old.
func (e *Engine) device(ctx context.Context, code string, now time.Time) *device {
	d := e.devices[code]
	if d != nil && now.Sub(d.at) < deviceTTL {
		return d
	}
	obj, err := e.opts.Objects.Object(ctx, code)
	if err != nil {
		obj = nil
	}
	d = &device{obj: obj, at: now}
	if obj != nil {
		// In the order of the loops' keys: a sample's decisions are
		// evaluated, and their evidence written, in that order.
		for _, key := range slices.Sorted(maps.Keys(e.loops)) {
			r := e.loops[key]
			if e.selects(r, obj) || r.feeds(obj) {
				d.loops = append(d.loops, r)
			}
		}
	}
	e.devices[code] = d
	return d
}

// selects reports whether the loop runs for obj on this node.
func (e *Engine) selects(r *running, obj *registry.Object) bool {
	d := r.c.Def
	if r.info.Mode == Disabled || obj.Tenant != r.info.Tenant || obj.Model == nil || obj.Model.ID != d.On.Model {
		return false
	}
	if obj.Status != "" && obj.Status != "active" {
		return false
	}
	if len(d.On.Objects) > 0 && !slices.Contains(d.On.Objects, obj.Code) {
		return false
	}
	for k, v := range d.On.Tags {
		if obj.Tags[k] != v {
			return false
		}
	}
	if d.On.Under != "" {
		path := strings.Join(obj.Path, "/")
		if path != d.On.Under && !strings.HasPrefix(path, d.On.Under+"/") {
			return false
		}
	}
	switch e.opts.Role {
	case "hub":
		return d.Placement == Hub || (d.Placement == Auto && obj.Edge == "")
	default:
		return d.Placement != Hub && obj.Edge == e.opts.Edge
	}
}

// feeds reports whether obj may be a related object of some target of
// the loop.
func (r *running) feeds(obj *registry.Object) bool {
	if obj.Tenant != r.info.Tenant {
		return false
	}
	for _, f := range r.c.Features {
		if f.Of != nil && relatedMatch(f.Of, obj, r.c.Def.On.Model) {
			return true
		}
	}
	return false
}

func relatedMatch(of *Related, obj *registry.Object, loopModel string) bool {
	model := of.Model
	if model == "" {
		model = loopModel
	}
	if obj.Model == nil || obj.Model.ID != model {
		return false
	}
	for k, v := range of.Tags {
		if obj.Tags[k] != v {
			return false
		}
	}
	return true
}

func (e *Engine) ingest(ctx context.Context, batch []sample) {
	now := e.opts.Now()
	oldest := now.Add(-e.opts.MaxSampleAge).UnixMilli()
	for _, s := range batch {
		if s.t < oldest {
			e.metrics.samples.WithLabelValues("stale").Inc()
			continue
		}
		d := e.device(ctx, s.device, now)
		for _, r := range d.loops {
			e.addSample(ctx, r, d.obj, s, now)
		}
	}
	e.evaluateDirty(ctx, now)
}

// evaluateDirty decides for the targets that got samples, then writes the
// evidence. Only those: scanning every target of every loop after each
// batch cost more than the decisions with many objects.
func (e *Engine) evaluateDirty(ctx context.Context, now time.Time) {
	for _, d := range e.dirty {
		d.t.dirty = false
		e.evaluate(ctx, d.r, d.code, d.t, now)
	}
	clear(e.dirty)
	e.dirty = e.dirty[:0]
	e.flush(ctx)
}

// markDirty has the loop decide for the object after the batch.
func (e *Engine) markDirty(r *running, obj *registry.Object) {
	t := e.target(r, obj)
	if !t.dirty {
		t.dirty = true
		e.dirty = append(e.dirty, dirtyTarget{r: r, code: obj.Code, t: t})
	}
}

func (e *Engine) addSample(ctx context.Context, r *running, obj *registry.Object, s sample, now time.Time) {
	isTarget := e.selects(r, obj)
	src := r.sources[obj.Code]
	for i, f := range r.c.Features {
		if f.Property != s.prop {
			continue
		}
		if f.Of == nil && !isTarget || f.Of != nil && !relatedMatch(f.Of, obj, r.c.Def.On.Model) {
			continue
		}
		if src == nil {
			if e.bytes >= e.opts.MemoryBudget {
				e.metrics.overBudget.Inc()
				return
			}
			src = &source{states: make([]*feature.State, len(r.c.Features)), last: map[string]float64{}}
			r.sources[obj.Code] = src
		}
		if src.states[i] == nil {
			src.states[i] = feature.NewState(f.Spec)
		}
		st := src.states[i]
		before := st.Bytes()
		if ok, reason := st.Add(s.t, s.v); !ok {
			e.metrics.samples.WithLabelValues(reason).Inc()
		} else {
			e.metrics.samples.WithLabelValues("accepted").Inc()
		}
		delta := st.Bytes() - before
		src.bytes += delta
		e.bytes += delta
	}
	if src == nil && isTarget {
		src = &source{states: make([]*feature.State, len(r.c.Features)), last: map[string]float64{}}
		r.sources[obj.Code] = src
	}
	if src != nil {
		src.last[s.prop] = s.v
	}
	if isTarget {
		e.markDirty(r, obj)
	}
}

// target returns the loop's state for an object it runs for, made on
// first use.
func (e *Engine) target(r *running, obj *registry.Object) *target {
	t := r.targets[obj.Code]
	if t == nil {
		t = &target{obj: obj, delay: detect.Delay{On: r.c.Def.Decide.OnDelay.D(), Off: r.c.Def.Decide.OffDelay.D()}}
		if dt := r.c.Def.Decide.Detector; dt != nil {
			switch dt.Kind {
			case "ewma":
				t.ewma = &detect.EWMA{Alpha: dt.Alpha, Warmup: dt.Warmup}
			case "cusum":
				t.cusum = &detect.CUSUM{Target: dt.Target, Sigma: dt.Sigma, K: dt.K, H: dt.H, Warmup: dt.Warmup, Learn: dt.Sigma == 0}
			}
		}
		r.targets[obj.Code] = t
	}
	t.obj = obj
	return t
}

// tick runs the time-driven work: decisions whose delays or repeats are
// due, verifications, approvals' expiry, the alarms' sweep.
func (e *Engine) tick(ctx context.Context) {
	now := e.opts.Now()
	if err := e.refreshGuards(ctx); err != nil {
		e.log.Warn("kill switches and bypasses not read; the last known apply", "err", err)
	}
	for _, r := range e.loops {
		for code, t := range r.targets {
			e.evaluate(ctx, r, code, t, now)
		}
	}
	for _, ev := range e.open {
		e.follow(ctx, ev, now)
	}
	e.flush(ctx)
	if e.opts.Alarms != nil {
		if err := e.opts.Alarms.Sweep(ctx); err != nil {
			e.log.Warn("alarm sweep failed", "err", err)
		}
	}
	e.publishStats()
}

// vars builds what a loop's expressions see for one object; the loop's
// model, when it has one, fills score (t.model says how that went).
func (e *Engine) vars(ctx context.Context, r *running, code string, t *target, now time.Time) (map[string]any, map[string]float64, bool) {
	feats := make(map[string]float64, len(r.c.Features))
	nowMs := now.UnixMilli()
	for i, f := range r.c.Features {
		var v float64
		var ok bool
		if f.Of == nil {
			if src := r.sources[code]; src != nil && src.states[i] != nil {
				v, ok = src.states[i].Value(nowMs)
			}
		} else {
			v, ok = e.across(ctx, r, i, code, t, nowMs, now)
		}
		if !ok {
			if !f.Optional {
				return nil, nil, false
			}
			v = math.NaN()
		}
		feats[f.Name] = v
	}
	// The twin is read (from the database, at most once a second per
	// object) only for a loop whose expressions read it: for the others it
	// is no input of the decision, and the read was most of a decision's
	// cost.
	twinVars := map[string]any{"reported": map[string]any{}, "desired": map[string]any{}, "version": int64(0)}
	if r.c.readsTwin {
		tw := e.twinOf(ctx, code, t, now)
		twinVars = map[string]any{"reported": tw.Reported, "desired": tw.Desired, "version": tw.Version}
	}
	vars := map[string]any{
		"twin":    twinVars,
		"object":  objectVars(t.obj),
		"now":     now,
		"score":   map[string]float64{},
		"state":   t.on,
		"values":  map[string]any{},
		"current": map[string]float64{},
	}
	if src := r.sources[code]; src != nil {
		vars["current"] = maps.Clone(src.last)
	}
	for k, v := range feats {
		vars[k] = v
	}
	if r.c.Def.Decide.Detector != nil {
		vars["detector"] = t.detectorOut(r.c.Def.Decide.Detector, feats)
	}
	if u := e.score(ctx, r, t, feats, now); u != nil && u.Scores != nil {
		vars["score"] = u.Scores
	}
	return vars, feats, true
}

func objectVars(o *registry.Object) map[string]any {
	tags := map[string]any{}
	for k, v := range o.Tags {
		tags[k] = v
	}
	path := make([]any, len(o.Path))
	for i, p := range o.Path {
		path[i] = p
	}
	return map[string]any{"code": o.Code, "tenant": o.Tenant, "tags": tags, "path": path, "edge": o.Edge, "network": o.Network}
}

// detectorOut feeds the detector its input's value once per new value.
func (t *target) detectorOut(dt *Detector, feats map[string]float64) map[string]float64 {
	x := feats[dt.Input]
	if t.detOut == nil {
		t.detOut = map[string]float64{"score": 0, "alarm": 0, "ready": 0, "hi": 0, "lo": 0, "input": math.NaN()}
	}
	if t.detOut["input"] == x {
		return t.detOut
	}
	t.detOut["input"] = x
	switch {
	case t.ewma != nil:
		score, ready := t.ewma.Update(x)
		t.detOut["score"], t.detOut["ready"] = score, b2f(ready)
		t.detOut["alarm"] = b2f(ready && math.Abs(score) > dt.Threshold)
	case t.cusum != nil:
		hi, lo, alarm, ready := t.cusum.Update(x)
		t.detOut["hi"], t.detOut["lo"], t.detOut["ready"], t.detOut["alarm"] = hi, lo, b2f(ready), b2f(alarm)
		t.detOut["score"] = math.Max(hi, lo)
	}
	return t.detOut
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// across combines a related feature over the target's related objects.
func (e *Engine) across(ctx context.Context, r *running, i int, code string, t *target, nowMs int64, now time.Time) (float64, bool) {
	f := r.c.Features[i]
	codes := e.relatedOf(ctx, r, f.Of, t, now)
	var vals []float64
	for _, c := range codes {
		if src := r.sources[c]; src != nil && src.states[i] != nil {
			if v, ok := src.states[i].Value(nowMs); ok {
				vals = append(vals, v)
			}
		}
	}
	if f.Of.Across == "count" {
		return float64(len(vals)), true
	}
	if len(vals) == 0 {
		return 0, false
	}
	out := vals[0]
	switch f.Of.Across {
	case "max":
		out = slices.Max(vals)
	case "min":
		out = slices.Min(vals)
	case "sum", "mean":
		out = 0
		for _, v := range vals {
			out += v
		}
		if f.Of.Across == "mean" {
			out /= float64(len(vals))
		}
	}
	return out, true
}

// relatedOf returns the codes related to the target, looked up again
// after deviceTTL.
func (e *Engine) relatedOf(ctx context.Context, r *running, of *Related, t *target, now time.Time) []string {
	key := of.Relation + "|" + of.Model + "|" + fmt.Sprint(of.Tags)
	if t.related == nil || now.Sub(t.relatedAt) > deviceTTL {
		t.related, t.relatedAt = map[string][]string{}, now
	}
	if codes, ok := t.related[key]; ok {
		return codes
	}
	under := t.obj.Path
	if of.Relation == "children" {
		_, local, _ := strings.Cut(t.obj.Code, ":")
		under = append(slices.Clone(t.obj.Path), local)
	}
	var codes []string
	after := ""
	for {
		objs, next, err := e.opts.Objects.List(ctx, registry.ListFilter{Tenant: t.obj.Tenant, Under: under, Tags: of.Tags, After: after, Limit: 1000})
		if err != nil {
			e.log.Warn("related objects not listed", "loop", r.info.Key, "object", t.obj.Code, "err", err)
			break
		}
		for _, o := range objs {
			if o.Code == t.obj.Code || !slices.Equal(o.Path, under) || !relatedMatch(of, o, r.c.Def.On.Model) {
				continue
			}
			codes = append(codes, o.Code)
		}
		if next == "" || len(codes) > 10000 {
			break
		}
		after = next
	}
	t.related[key] = codes
	return codes
}

// twinOf returns the object's twin, read again after a second.
func (e *Engine) twinOf(ctx context.Context, code string, t *target, now time.Time) *twin.Twin {
	if t.twin != nil && now.Sub(t.twinAt) < time.Second {
		return t.twin
	}
	tw, err := e.opts.Twins.Get(ctx, code)
	if err != nil || tw == nil {
		tw = &twin.Twin{Code: code, Desired: map[string]any{}, Reported: map[string]any{}}
	}
	t.twin, t.twinAt = tw, now
	return tw
}

// evaluate decides for one object.
func (e *Engine) evaluate(ctx context.Context, r *running, code string, t *target, now time.Time) {
	if r.info.Mode == Disabled {
		return
	}
	vars, feats, ok := e.vars(ctx, r, code, t, now)
	if !ok {
		return
	}
	e.metrics.evaluations.Inc()
	if r.c.Def.Decide.Model != nil && t.model != nil && t.model.err != nil {
		// Fail-safe: no scores, no decision (the state stays as it was).
		e.fail(ctx, r, code, t, now, feats, vars, t.model.err)
		return
	}
	var raw bool
	var err error
	if t.on && r.c.clear != nil {
		var off bool
		off, err = evalBool(r.c.clear, vars)
		raw = !off
	} else {
		raw, err = evalBool(r.c.when, vars)
	}
	if err != nil {
		e.fail(ctx, r, code, t, now, feats, vars, fmt.Errorf("decide: %w", err))
		return
	}
	on, changed := t.delay.Update(now.UnixMilli(), raw)
	t.on = on
	vars["state"] = on
	switch {
	case changed && on:
		e.propose(ctx, r, code, t, now, feats, vars)
	case on && r.c.Def.Decide.Repeat > 0 && now.Sub(t.lastAct) >= r.c.Def.Decide.Repeat.D():
		e.propose(ctx, r, code, t, now, feats, vars)
	case changed && !on:
		e.cleared(ctx, r, code, t, now, feats, vars)
	}
}

// Store returns the engine's store.
func (e *Engine) Store() *Store { return e.opts.Store }
