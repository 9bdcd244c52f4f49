package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Meter is what measures a node's candidates: the figures of a plan's
// candidate since its last Reset (a new stage).
type Meter interface {
	Figures(plan string) Figures
	Reset(plan string)
}

// Assignment is what a node runs of an artifact: Version in effect
// (None: none; "" with None false: no plan ever staged the artifact here,
// so the newest), and the plan staging a candidate here now (nil when
// none) with the node's Stage in it.
type Assignment struct {
	Version string
	None    bool
	Plan    *Plan
	Stage   string
}

// ControllerOptions configure a node's controller.
type ControllerOptions struct {
	Store *Store
	// Node is "hub" or the edge's code.
	Node string
	// Uses reports whether the node's loops use an artifact (for plans
	// with all_edges); nil: every artifact.
	Uses  func(tenant, kind, artifact string) bool
	Meter Meter
	// Extra adds figures measured elsewhere (the hub's false-alarm rate
	// from labels); nil: none.
	Extra func(ctx context.Context, p *Plan) map[string]float64
	// Global is called once per evaluation for every running plan, at
	// any node or none (the hub judges gates on figures of the whole
	// plan, such as false alarms against labels, and ends the plan).
	Global func(ctx context.Context, p *Plan)
	// OnRecord is told every stage change made here, after it is stored
	// (an edge sends it up; the hub ends plans).
	OnRecord func(ctx context.Context, rec *Record)
	// Every is the time between evaluations (default 5s).
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Controller moves the stages of the plans at one node: it starts each
// plan that targets the node in shadow (or the stage an operator forced),
// evaluates the gates on the meter's figures every tick, records every
// change with its evidence, and answers which version the node runs.
type Controller struct {
	o      ControllerOptions
	assign atomic.Pointer[map[string]Assignment]
	wake   chan struct{}
	mu     sync.Mutex // one evaluation at a time
	cancel context.CancelFunc
	done   chan struct{}
}

// NewController returns a controller; Start runs it.
func NewController(o ControllerOptions) (*Controller, error) {
	if o.Store == nil || o.Node == "" {
		return nil, errors.New("rollout: Store and Node are required")
	}
	if o.Every <= 0 {
		o.Every = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Controller{o: o, wake: make(chan struct{}, 1)}
	empty := map[string]Assignment{}
	c.assign.Store(&empty)
	return c, nil
}

// Start evaluates once, then every Every until Shutdown.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.Evaluate(ctx); err != nil {
		c.o.Logger.Warn("rollouts could not be evaluated at start; will retry", "err", err)
	}
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.o.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-c.wake:
			}
			if err := c.Evaluate(ctx); err != nil && ctx.Err() == nil {
				c.o.Logger.Warn("rollouts could not be evaluated; will retry", "err", err)
			}
		}
	}()
	return nil
}

// Shutdown stops the controller and waits for it.
func (c *Controller) Shutdown(ctx context.Context) error {
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

// Wake asks for an evaluation now (a plan changed).
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Lookup returns what the node runs of an artifact.
func (c *Controller) Lookup(tenant, kind, artifact string) (Assignment, bool) {
	a, ok := (*c.assign.Load())[key(tenant, kind, artifact)]
	return a, ok
}

func key(tenant, kind, artifact string) string { return tenant + "\x00" + kind + "\x00" + artifact }

// maxPlans bounds the plans an evaluation reads (the newest).
const maxPlans = 500

// Evaluate runs one evaluation of every plan at the node.
func (c *Controller) Evaluate(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	plans, err := c.o.Store.List(ctx, "", "", false)
	if err != nil {
		return err
	}
	if len(plans) > maxPlans {
		plans = plans[:maxPlans]
	}
	slices.Reverse(plans) // oldest first: later plans decide the version in effect
	assign := map[string]Assignment{}
	var errs []error
	for _, p := range plans {
		if c.o.Global != nil && p.State == Running {
			c.o.Global(ctx, p)
		}
		uses := c.o.Uses == nil || c.o.Uses(p.Tenant, p.Kind, p.Artifact)
		if !p.TargetsNode(c.o.Node, uses) {
			continue
		}
		k := key(p.Tenant, p.Kind, p.Artifact)
		a, seen := assign[k]
		if !seen {
			a = Assignment{Version: p.Baseline, None: p.Baseline == ""}
		}
		stage, err := c.step(ctx, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", p.ID, err))
		}
		switch stage {
		case "":
			// not started here (ended before it reached the node)
		case Active:
			a = Assignment{Version: p.Version}
		case RolledBack:
			a.Plan, a.Stage = nil, ""
		default:
			a.Plan, a.Stage = p, stage
		}
		assign[k] = a
	}
	c.assign.Store(&assign)
	return errors.Join(errs...)
}

// step starts or moves the plan at the node; it returns the node's stage.
func (c *Controller) step(ctx context.Context, p *Plan) (string, error) {
	st, ok, err := c.o.Store.Node(ctx, p.ID, c.o.Node)
	if err != nil {
		return "", err
	}
	now := c.o.Now().UTC().Truncate(time.Millisecond)
	if !ok {
		if p.State != Running {
			return "", nil
		}
		to, reason, by := Shadow, "deployed", ""
		if f := p.Forced(c.o.Node); f != nil {
			to, reason, by = f.Stage, "deployed; forced by "+f.By, f.By
		}
		rec := &Record{Plan: p.ID, Tenant: p.Tenant, Node: c.o.Node, At: now, To: to, Reason: reason, By: by}
		if err := c.commit(ctx, rec); err != nil {
			return "", err
		}
		return to, nil
	}
	if Terminal(st.Stage) && p.Forced(c.o.Node) == nil && p.State != Aborted {
		return st.Stage, nil
	}
	f := Figures{}
	if c.o.Meter != nil {
		f = c.o.Meter.Figures(p.ID)
	}
	if c.o.Extra != nil {
		if extra := c.o.Extra(ctx, p); len(extra) > 0 {
			if f.Values == nil {
				f.Values = map[string]float64{}
			}
			maps.Copy(f.Values, extra)
		}
	}
	v := Evaluate(p, c.o.Node, st.Stage, st.Since, f, now)
	if v.To == "" || v.To == st.Stage {
		return st.Stage, nil
	}
	rec := &Record{Plan: p.ID, Tenant: p.Tenant, Node: c.o.Node, At: now, From: st.Stage, To: v.To,
		Reason: v.Reason, By: v.By, Figures: f, Results: v.Results}
	if err := c.commit(ctx, rec); err != nil {
		return st.Stage, err
	}
	return v.To, nil
}

func (c *Controller) commit(ctx context.Context, rec *Record) error {
	actor := "rollout"
	if rec.By != "" {
		actor = rec.By
	}
	if err := c.o.Store.Transition(ctx, actor, rec); err != nil {
		return err
	}
	if c.o.Meter != nil {
		c.o.Meter.Reset(rec.Plan)
	}
	c.o.Logger.Info("rollout stage changed", "rollout", rec.Plan, "node", rec.Node, "from", rec.From, "to", rec.To, "reason", rec.Reason)
	if c.o.OnRecord != nil {
		c.o.OnRecord(ctx, rec)
	}
	return nil
}
