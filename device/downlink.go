package device

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// maxRemembered is how many command results are kept for redeliveries.
const maxRemembered = 64

// downlink holds what the hub sends the device, the twin's delta and
// commands, and hands it to the application's functions one at a time,
// whatever the transport: MQTT pushes it, CoAP fetches it (poll).
type downlink struct {
	c *Client

	mu      sync.Mutex
	desired func(context.Context, Delta)
	command func(context.Context, Command) Result
	waiting map[string]bool // ids of commands queued or running

	twin  *latest[Delta]
	cmds  *queue[Command]
	done  map[string]Result // results of the commands carried out, by id (runCommands only)
	order []string          // done's ids, oldest first
}

func newDownlink(c *Client) *downlink {
	return &downlink{c: c, waiting: map[string]bool{}, twin: newLatest[Delta](), cmds: newQueue[Command](), done: map[string]Result{}}
}

// handlers reports which functions the application set.
func (d *downlink) handlers() (desired, command bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.desired != nil, d.command != nil
}

func (d *downlink) setDesired(f func(context.Context, Delta)) {
	d.mu.Lock()
	d.desired = f
	d.mu.Unlock()
	d.twin.poke()
}

func (d *downlink) setCommand(f func(context.Context, Command) Result) {
	d.mu.Lock()
	d.command = f
	d.mu.Unlock()
	d.cmds.poke()
}

// pushCommand queues a command unless it is queued or running already (the
// hub delivers it again when an acknowledgement was lost, or a CoAP poll
// finds it still waiting for its result).
func (d *downlink) pushCommand(cmd Command) {
	d.mu.Lock()
	if d.waiting[cmd.ID] {
		d.mu.Unlock()
		return
	}
	d.waiting[cmd.ID] = true
	d.mu.Unlock()
	d.cmds.push(cmd)
}

// run hands deltas and commands over until ctx ends.
func (d *downlink) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.deliverDeltas(ctx) }()
	go func() { defer wg.Done(); d.runCommands(ctx) }()
	wg.Wait()
}

// deliverDeltas hands the newest delta to the application's function.
func (d *downlink) deliverDeltas(ctx context.Context) {
	for {
		d.mu.Lock()
		f := d.desired
		d.mu.Unlock()
		var delta Delta
		var ok bool
		if f != nil {
			delta, ok = d.twin.take()
		}
		if ok && len(delta.State) > 0 {
			f(ctx, delta)
			continue
		}
		select {
		case <-d.twin.ready:
		case <-ctx.Done():
			return
		}
	}
}

// runCommands carries out commands one at a time and sends their results;
// over CoAP it then asks for the next one.
func (d *downlink) runCommands(ctx context.Context) {
	for {
		d.mu.Lock()
		f := d.command
		d.mu.Unlock()
		var cmd Command
		var ok bool
		if f != nil {
			cmd, ok = d.cmds.pop()
		}
		if !ok {
			select {
			case <-d.cmds.ready:
				continue
			case <-ctx.Done():
				return
			}
		}
		res, again := d.done[cmd.ID]
		if !again {
			res = f(ctx, cmd)
			if ctx.Err() != nil {
				return // closing: the hub delivers the command again later
			}
			d.done[cmd.ID] = res
			d.order = append(d.order, cmd.ID)
			if len(d.order) > maxRemembered {
				delete(d.done, d.order[0])
				d.order = d.order[1:]
			}
		}
		b, err := json.Marshal(res)
		if err != nil {
			b, _ = json.Marshal(Failed("the device could not encode its result: " + err.Error()))
		}
		for ctx.Err() == nil {
			err := d.c.tr.send(ctx, msgKind{what: "result", id: cmd.ID}, b)
			var refused *RefusedError
			if err == nil || errors.As(err, &refused) {
				if refused != nil {
					d.c.log.Warn("command result refused", "command", cmd.ID, "reason", refused.Reason, "message", refused.Message)
				}
				break
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
		d.mu.Lock()
		delete(d.waiting, cmd.ID)
		d.mu.Unlock()
		if ctx.Err() == nil {
			if err := d.c.tr.poll(ctx); err != nil {
				d.c.log.Debug("asking the hub for the next command failed", "err", err)
			}
		}
	}
}
