package loop

import (
	"context"
	"time"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/feature"
)

// capture is a device's result for a capture action, handed to the
// engine's goroutine.
type capture struct {
	code, action string
	at           time.Time
	output       []byte
}

// CommandEvent takes the command service's events: a succeeded result
// that carries a raw window feeds the band-energy features of the loops
// that read that action's captures (whoever issued the command). It does
// not block: a result that finds the engine's queue full is dropped and
// counted.
func (e *Engine) CommandEvent(ev command.Event) {
	if ev.Kind != command.EventSucceeded || len(ev.Command.Output) == 0 {
		return
	}
	select {
	case e.captures <- capture{code: ev.Command.Code, action: ev.Command.Action, at: ev.Time, output: ev.Command.Output}:
	default:
		e.metrics.samples.WithLabelValues("capture_dropped").Inc()
	}
}

// captured computes the band energies a capture gives and adds them to
// the windows of the loops that read them.
func (e *Engine) captured(ctx context.Context, c capture) {
	now := e.opts.Now()
	d := e.device(ctx, c.code, now)
	var win *feature.RawWindow
	for _, r := range d.loops {
		if !e.selects(r, d.obj) {
			continue
		}
		for i, f := range r.c.Features {
			if f.Capture != c.action {
				continue
			}
			if win == nil {
				w, err := feature.DecodeRawWindow(c.output)
				if err != nil {
					e.metrics.samples.WithLabelValues("capture_malformed").Inc()
					e.log.Warn("a capture's raw window is malformed; not used", "device", c.code, "action", c.action, "err", err)
					return
				}
				win = &w
			}
			v, err := win.BandEnergy(f.Band[0], f.Band[1])
			if err != nil {
				e.metrics.samples.WithLabelValues("capture_malformed").Inc()
				continue
			}
			src := r.sources[c.code]
			if src == nil {
				src = &source{states: make([]*feature.State, len(r.c.Features)), last: map[string]float64{}}
				r.sources[c.code] = src
			}
			if src.states[i] == nil {
				src.states[i] = feature.NewState(f.Spec)
			}
			before := src.states[i].Bytes()
			if ok, reason := src.states[i].Add(c.at.UnixMilli(), v); !ok {
				e.metrics.samples.WithLabelValues(reason).Inc()
			} else {
				e.metrics.samples.WithLabelValues("capture").Inc()
			}
			delta := src.states[i].Bytes() - before
			src.bytes += delta
			e.bytes += delta
			e.markDirty(r, d.obj)
		}
	}
	e.evaluateDirty(ctx, now)
}
