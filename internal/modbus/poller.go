package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/senml"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// maxQueued bounds the commands handed to one device's loop and not yet
// written. The command service hands out one unconfirmed command per
// device at a time, so more means redeliveries; past the bound Deliver
// refuses, which the service counts as an unconfirmed attempt.
const maxQueued = 16

// poller is one device's poll loop. Its goroutine owns the connection and
// the schedule; the rest (status, queued commands, the twin flag) is
// shared under mu.
type poller struct {
	d     *Driver
	t     *target
	after <-chan struct{} // the device's previous loop, to wait for
	done  chan struct{}   // closed when run returns

	cancel context.CancelFunc
	wake   chan struct{} // a command or a twin change waits

	// Owned by the goroutine.
	client   *mb.ModbusClient
	open     bool
	next     []time.Time // each group's next poll
	fails    []int       // each group's failed polls in a row
	retryAt  time.Time   // while the device is down: the next attempt
	failures int         // attempts in a row that did not reach it
	buf      []float64   // a poll's values

	mu         sync.Mutex
	st         Status
	cmds       []*command.Command
	twin       bool
	detach     func()
	stopReason string
}

func newPoller(d *Driver, t *target, after <-chan struct{}) *poller {
	return &poller{
		d: d, t: t, after: after, done: make(chan struct{}), wake: make(chan struct{}, 1),
		next: make([]time.Time, len(t.plan.groups)), fails: make([]int, len(t.plan.groups)),
		st: Status{Code: t.dev.Code},
	}
}

// stop ends the loop; reason is what presence hears if it was online.
func (p *poller) stop(reason string) {
	p.mu.Lock()
	if p.stopReason == "" {
		p.stopReason = reason
	}
	p.mu.Unlock()
	p.cancel()
}

func (p *poller) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // one is pending: the loop looks at everything when it wakes
	}
}

func (p *poller) twinChanged() {
	p.mu.Lock()
	p.twin = true
	p.mu.Unlock()
	p.signal()
}

func (p *poller) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

func (p *poller) run(ctx context.Context) {
	defer close(p.done)
	if p.after != nil {
		select {
		case <-p.after:
		case <-ctx.Done():
			return
		}
	}
	defer p.finish()
	if len(p.t.plan.groups) == 0 {
		// Nothing to poll: commands are offered at once, and their
		// writes tell whether the device answers.
		p.attach()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
		}
		p.serveWrites(ctx)
		p.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		timer.Reset(time.Until(p.due()))
	}
}

// due is when the loop has something to do next: a group's poll, or
// writes waiting; none before the backoff ends.
func (p *poller) due() time.Time {
	at := time.Now().Add(time.Hour) // only writes: woken by them
	for _, n := range p.next {
		if n.Before(at) {
			at = n
		}
	}
	p.mu.Lock()
	pending := len(p.cmds) > 0 || p.twin
	p.mu.Unlock()
	if pending || at.Before(p.retryAt) {
		at = p.retryAt
	}
	return at
}

// poll reads every group that is due, unless the device is in its backoff.
func (p *poller) poll(ctx context.Context) {
	now := time.Now()
	if now.Before(p.retryAt) {
		return
	}
	for i, g := range p.t.plan.groups {
		if now.Before(p.next[i]) {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !p.pollGroup(ctx, g) {
			return // the device is down: no group is read until its retry
		}
	}
}

// pollGroup reads one group and publishes its values. It returns false
// when the device did not answer.
func (p *poller) pollGroup(ctx context.Context, g *groupPlan) bool {
	start := time.Now()
	p.mu.Lock()
	p.st.LastPoll = start
	p.mu.Unlock()
	p.d.m.polls.Inc()
	if cap(p.buf) < len(g.readings) {
		p.buf = make([]float64, len(g.readings))
	}
	vals := p.buf[:len(g.readings)]
	for i := range g.reqs {
		if err := p.read(&g.reqs[i], g, vals); err != nil {
			return p.failed(g, err)
		}
	}
	p.answered()
	p.fails[g.index] = 0
	// Keep the cadence: the next poll is an interval after this one was
	// due, unless that has passed already (a slow device, a backoff).
	p.next[g.index] = p.next[g.index].Add(g.interval)
	if !p.next[g.index].After(start) {
		p.next[g.index] = start.Add(g.interval)
	}
	p.mu.Lock()
	p.st.LastSuccess = start
	p.st.Polls++
	p.mu.Unlock()
	p.publish(ctx, g, vals, start)
	return true
}

// read runs one request and decodes its values into vals.
func (p *poller) read(r *request, g *groupPlan, vals []float64) error {
	if err := p.connect(); err != nil {
		return err
	}
	words := make([]uint16, r.count)
	switch r.table {
	case thingmodel.ModbusHolding, thingmodel.ModbusInput:
		typ := mb.HOLDING_REGISTER
		if r.table == thingmodel.ModbusInput {
			typ = mb.INPUT_REGISTER
		}
		regs, err := p.client.ReadRegisters(r.start, r.count, typ)
		if err != nil {
			return err
		}
		if len(regs) != int(r.count) { // the library checks; a wrong length must not index past
			return mb.ErrProtocolError
		}
		copy(words, regs)
	default:
		var bits []bool
		var err error
		if r.table == thingmodel.ModbusCoil {
			bits, err = p.client.ReadCoils(r.start, r.count)
		} else {
			bits, err = p.client.ReadDiscreteInputs(r.start, r.count)
		}
		if err != nil {
			return err
		}
		if len(bits) != int(r.count) {
			return mb.ErrProtocolError
		}
		for i, b := range bits {
			if b {
				words[i] = 1
			}
		}
	}
	for _, it := range r.items {
		rd := &g.readings[it.reading]
		v, err := decode(&rd.p, words[it.off:it.off+rd.p.words])
		if err != nil {
			// One value the device cannot express (a sensor's NaN) leaves
			// that property out of this poll, not the others.
			p.d.m.errors.WithLabelValues(causeBadValue).Inc()
			p.d.log.Debug("modbus value left out", "device", p.t.dev.Code, "property", rd.prop, "err", err)
			v = math.NaN()
		}
		vals[it.reading] = v
	}
	return nil
}

// connect opens the connection if it is not open.
func (p *poller) connect() error {
	if p.open {
		return nil
	}
	if p.client == nil {
		c, err := mb.NewClient(&mb.ClientConfiguration{URL: p.t.dev.URL, Timeout: p.t.timeout, Logger: p.d.lib})
		if err != nil { // SetDevices checked the URL
			return fmt.Errorf("modbus client: %w", err)
		}
		if err := c.SetUnitId(p.t.dev.UnitID); err != nil {
			return err
		}
		p.client = c
	}
	if err := p.client.Open(); err != nil {
		return err
	}
	p.open = true
	return nil
}

// disconnect closes the connection: after a timeout or a malformed answer
// a late or partial frame may still arrive, and the next request must not
// read it as its answer.
func (p *poller) disconnect() {
	if p.open {
		_ = p.client.Close() // a close error changes nothing: a new connection is dialed
		p.open = false
	}
}

// failed handles a failed request of group g (nil: a write) and reports
// whether the device still counts as answering.
func (p *poller) failed(g *groupPlan, err error) bool {
	f := classify(err)
	p.d.m.errors.WithLabelValues(f.cause).Inc()
	if f.cause != causeException {
		p.disconnect()
	}
	now := time.Now()
	p.mu.Lock()
	first := p.st.LastError != err.Error()
	p.st.LastError, p.st.LastErrorAt = err.Error(), now
	p.mu.Unlock()
	if f.down {
		p.failures++
		wait := p.d.backoff(p.failures)
		p.retryAt = now.Add(wait)
		p.down(f, wait)
		return false
	}
	if g != nil {
		p.fails[g.index]++
		p.next[g.index] = now.Add(max(g.interval, p.d.backoff(p.fails[g.index])))
		if first {
			p.d.log.Warn("modbus poll failed; the group waits", "device", p.t.dev.Code, "group", g.index, "cause", f.cause, "err", err)
		}
	}
	p.answered() // an exception or a malformed frame is an answer
	return true
}

// answered records that the device answered: it is online.
func (p *poller) answered() {
	p.failures, p.retryAt = 0, time.Time{}
	p.mu.Lock()
	was := p.st.Online
	p.st.Online, p.st.Reason, p.st.Failures, p.st.Backoff = true, "", 0, 0
	p.mu.Unlock()
	if was {
		return
	}
	p.d.m.online.Inc()
	p.d.log.Info("modbus device online", "device", p.t.dev.Code, "remote", p.t.remote)
	if pr := p.d.o.Presence; pr != nil {
		pr.Connected(p.t.dev.Code, p.t.dev.Tenant, Protocol, p.t.remote)
	}
	p.attach()
	if p.d.o.Twins != nil {
		p.mu.Lock()
		p.twin = true // the desired state may have changed while it was away
		p.mu.Unlock()
		p.signal()
	}
}

// down records that the device did not answer.
func (p *poller) down(f failure, wait time.Duration) {
	p.mu.Lock()
	was, changed := p.st.Online, p.st.Reason != f.reason
	p.st.Online, p.st.Reason, p.st.Failures, p.st.Backoff = false, f.reason, p.failures, wait
	p.mu.Unlock()
	if was || changed {
		p.d.log.Warn("modbus device offline", "device", p.t.dev.Code, "remote", p.t.remote, "reason", f.reason, "retry_in", wait, "err", f.err)
	}
	if !was {
		return
	}
	p.d.m.online.Dec()
	if pr := p.d.o.Presence; pr != nil {
		pr.Disconnected(p.t.dev.Code, p.t.dev.Tenant, Protocol, f.reason)
	}
	if len(p.t.plan.groups) > 0 {
		// Commands wait in their queue until it answers again.
		p.detachCommands()
	}
}

// finish ends the loop's session: the connection closes, and an online
// device goes offline with the reason it was stopped for.
func (p *poller) finish() {
	p.disconnect()
	p.detachCommands()
	p.mu.Lock()
	was, reason := p.st.Online, p.stopReason
	p.st.Online = false
	p.mu.Unlock()
	if !was {
		return
	}
	if reason == "" {
		reason = presence.ReasonShutdown
	}
	p.d.m.online.Dec()
	if pr := p.d.o.Presence; pr != nil {
		pr.Disconnected(p.t.dev.Code, p.t.dev.Tenant, Protocol, reason)
	}
}

// publish hands a poll's values to the intake as one SenML pack stamped
// with the poll's time. Values the model refuses become a dead letter
// there, like any device's. Values the intake could not make durable (a
// full disk) are lost, logged: the next poll reads the device again.
func (p *poller) publish(ctx context.Context, g *groupPlan, vals []float64, at time.Time) {
	recs := make([]senml.Resolved, 0, len(vals))
	at = at.UTC().Truncate(time.Millisecond)
	for i, v := range vals {
		if v != v { // left out (NaN)
			continue
		}
		rd := &g.readings[i]
		r := senml.Resolved{Name: rd.prop, Unit: rd.p.unit, Time: at, Kind: senml.KindFloat, Float: v}
		if rd.p.isBool() {
			r.Kind, r.Bool, r.Float = senml.KindBool, v != 0, 0
		}
		recs = append(recs, r)
	}
	if len(recs) == 0 {
		return
	}
	payload, err := senml.EncodeJSON(recs, "")
	if err != nil { // names are the model's property names: cannot happen
		p.d.log.Error("modbus values not encoded", "device", p.t.dev.Code, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, submitTimeout)
	defer cancel()
	rej, kept := p.d.o.Intake.AcceptWait(ctx, &adapter.Upload{
		Device: ingest.Device{Code: p.t.dev.Code, Tenant: p.t.dev.Tenant, Model: p.t.dev.Model},
		Source: Protocol, Topic: topic(p.t, g.index), ContentType: ingest.ContentSenMLJSON, Payload: payload,
	})
	switch {
	case rej == nil:
	case kept:
		p.d.m.errors.WithLabelValues(causeRefused).Inc()
		p.d.log.Debug("modbus values refused; kept as a dead letter", "device", p.t.dev.Code, "group", g.index, "reason", rej.Reason, "err", rej.Message)
	case ctx.Err() == nil:
		p.d.log.Warn("modbus values not stored", "device", p.t.dev.Code, "group", g.index, "reason", rej.Reason, "err", rej.Message)
	}
}

// Commands and desired state.

// sink delivers a device's commands to its loop.
type sink struct{ p *poller }

// Deliver queues the command for the loop and returns at once.
func (s sink) Deliver(c *command.Command) error {
	p := s.p
	p.mu.Lock()
	for _, q := range p.cmds {
		if q.ID == c.ID {
			p.mu.Unlock()
			return nil // a redelivery of one still waiting
		}
	}
	if len(p.cmds) >= maxQueued {
		p.mu.Unlock()
		return errors.New("modbus: too many commands waiting for the device")
	}
	p.cmds = append(p.cmds, c)
	p.mu.Unlock()
	p.signal()
	return nil
}

func (p *poller) attach() {
	if p.d.o.Commands == nil {
		return
	}
	detach := p.d.o.Commands.Attach(p.t.dev.Code, sink{p})
	p.mu.Lock()
	old := p.detach
	p.detach = detach
	p.mu.Unlock()
	if old != nil {
		old()
	}
}

// detachCommands stops deliveries and forgets the commands waiting: the
// service hands them out again when the device is back.
func (p *poller) detachCommands() {
	p.mu.Lock()
	detach := p.detach
	p.detach, p.cmds = nil, nil
	p.mu.Unlock()
	if detach != nil {
		detach()
	}
}

// serveWrites runs the commands waiting, then the desired state; none
// before the backoff ends.
func (p *poller) serveWrites(ctx context.Context) {
	if time.Now().Before(p.retryAt) {
		return
	}
	for ctx.Err() == nil {
		p.mu.Lock()
		if len(p.cmds) == 0 {
			p.mu.Unlock()
			break
		}
		c := p.cmds[0]
		p.cmds = p.cmds[1:]
		p.mu.Unlock()
		if !p.runCommand(ctx, c) {
			return // the device is down: the rest waits for it
		}
	}
	p.mu.Lock()
	tw := p.twin && ctx.Err() == nil && (p.st.Online || len(p.t.plan.groups) == 0)
	if tw {
		p.twin = false
	}
	p.mu.Unlock()
	if tw {
		p.writeDesired(ctx)
	}
}

// runCommand writes what the command's action maps to and records the
// result. It returns false when the device did not answer: the command
// stays unconfirmed, and the service offers it again.
func (p *poller) runCommand(ctx context.Context, c *command.Command) bool {
	res := command.Result{Status: string(command.Succeeded)}
	w := p.t.plan.actions[c.Action]
	var v float64
	var err error
	switch {
	case w == nil:
		err = fmt.Errorf("action %s has no Modbus write in model %s", c.Action, p.t.dev.Model.Key())
	case w.arg == "":
		v = w.value
	default:
		v, err = argument(c.Args, w)
	}
	if err == nil {
		if err = p.write(&w.p, v); err != nil && !p.refusedValue(err) {
			f := classify(err)
			if !p.failed(nil, err) {
				p.d.m.writes.WithLabelValues(writeUnreached).Inc()
				p.d.log.Info("modbus command not written; the device does not answer", "device", p.t.dev.Code, "command", c.ID, "err", err)
				return false
			}
			if f.cause == causeException {
				err = errors.New(exceptionReason(err))
			} else {
				err = fmt.Errorf("the device's answer was malformed: %w", err)
			}
		}
	}
	if err != nil {
		res = command.Result{Status: string(command.Failed), Reason: truncate(err.Error())}
		p.d.m.writes.WithLabelValues(writeFailed).Inc()
	} else {
		p.d.m.writes.WithLabelValues(writeSucceeded).Inc()
	}
	rctx, cancel := context.WithTimeout(ctx, resultTimeout)
	defer cancel()
	if _, err := p.d.o.Commands.Result(rctx, p.t.dev.Code, c.ID, res); err != nil &&
		!errors.Is(err, command.ErrFinished) && !errors.Is(err, command.ErrNotFound) {
		p.d.log.Warn("modbus command result not recorded", "device", p.t.dev.Code, "command", c.ID, "err", err)
	}
	return true
}

// argument is the engineering value of the action's argument in args, in
// the write's unit.
func argument(args json.RawMessage, w *write) (float64, error) {
	var m map[string]any
	if err := json.Unmarshal(args, &m); err != nil {
		return 0, fmt.Errorf("arguments: %w", err)
	}
	return value(m[w.arg], w.argUnit, &w.p, "argument "+w.arg)
}

// value turns a decoded JSON value into what p writes, converting a number
// from unit to p's unit.
func value(x any, unit string, p *point, what string) (float64, error) {
	if b, ok := x.(bool); ok && p.isBool() {
		if b {
			return 1, nil
		}
		return 0, nil
	}
	f, ok := thingmodel.Number(x)
	if !ok || p.isBool() {
		return 0, fmt.Errorf("%s is %T, which does not fit a %s", what, x, p.typ)
	}
	if p.unit != "" && unit != "" && unit != p.unit {
		if f, ok = ingest.ConvertUnit(f, unit, p.unit); !ok {
			return 0, fmt.Errorf("%s: %s does not convert to %s", what, unit, p.unit)
		}
	}
	return f, nil
}

// write writes v to p: a coil (05), a register (06) or several (16).
func (p *poller) write(pt *point, v float64) error {
	words, err := encode(pt, v)
	if err != nil {
		return fmt.Errorf("%s at %d: %w", pt.table, pt.addr, err)
	}
	if err := p.connect(); err != nil {
		return err
	}
	switch {
	case pt.table == thingmodel.ModbusCoil:
		return p.client.WriteCoil(pt.addr, words[0] != 0)
	case len(words) == 1:
		return p.client.WriteRegister(pt.addr, words[0])
	default:
		return p.client.WriteRegisters(pt.addr, words)
	}
}

// writeDesired writes each desired property that differs from the reported
// state and has a writable register, then reports what it wrote.
func (p *poller) writeDesired(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, resultTimeout)
	defer cancel()
	tw, err := p.d.o.Twins.Get(ctx, p.t.dev.Code)
	if err != nil {
		p.d.log.Warn("modbus desired state not read", "device", p.t.dev.Code, "err", err)
		return
	}
	reported := map[string]any{}
	delta := tw.Delta()
	for _, name := range sortedCodes(delta) {
		pt := p.t.plan.desired[name]
		if pt == nil {
			continue
		}
		prop := p.t.dev.Model.Properties[name]
		v, err := value(delta[name], prop.Unit, pt, "desired "+name)
		if err == nil {
			err = p.write(pt, v)
		}
		if err != nil {
			if !p.refusedValue(err) && !p.failed(nil, err) {
				p.d.m.writes.WithLabelValues(writeUnreached).Inc()
				p.mu.Lock()
				p.twin = true // again once it answers
				p.mu.Unlock()
				break
			}
			p.d.m.writes.WithLabelValues(writeFailed).Inc()
			p.d.log.Warn("modbus desired value not written", "device", p.t.dev.Code, "property", name, "err", err)
			continue
		}
		p.d.m.writes.WithLabelValues(writeSucceeded).Inc()
		reported[name] = delta[name]
	}
	if len(reported) == 0 {
		return
	}
	patch, err := json.Marshal(reported)
	if err == nil {
		_, err = p.d.o.Twins.Report(ctx, p.t.dev.Code, patch)
	}
	if err != nil {
		p.d.log.Warn("modbus written desired state not reported", "device", p.t.dev.Code, "err", err)
	}
}

// refusedValue reports whether a write failed on the value itself (out of
// the register's range, not a finite number) before it was sent.
func (p *poller) refusedValue(err error) bool {
	return errors.Is(err, errRange) || errors.Is(err, errNotFinite)
}

func truncate(s string) string {
	if len(s) > command.MaxReasonLen {
		return s[:command.MaxReasonLen]
	}
	return s
}
