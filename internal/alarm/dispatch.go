package alarm

import "sync"

// dispatcher hands committed events to Options.OnEvent in commit order,
// never under a lock: events are queued at commit (store.SharedTx runs the
// commit callbacks in commit order), and one writer at a time drains the
// queue, the others leaving their events to it.
type dispatcher struct {
	mu      sync.Mutex
	queue   []Event
	running bool // a goroutine is draining the queue
}

// push queues committed events.
func (d *dispatcher) push(events []Event) {
	if len(events) == 0 {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, events...)
	d.mu.Unlock()
}

// run delivers the queued events to fn unless another goroutine is doing
// so already (it delivers these too).
func (d *dispatcher) run(fn func(Event)) {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return
	}
	d.running = true
	for len(d.queue) > 0 {
		batch := d.queue
		d.queue = nil
		d.mu.Unlock()
		d.deliver(fn, batch)
		d.mu.Lock()
	}
	d.running = false
	d.mu.Unlock()
}

// deliver calls fn for each event. If fn panics, the event it panicked on
// is dropped, the rest go back to the front of the queue and the next
// writer delivers them; the panic goes on to the caller.
func (d *dispatcher) deliver(fn func(Event), batch []Event) {
	i := 0
	defer func() {
		if i < len(batch) {
			d.mu.Lock()
			d.queue = append(append([]Event(nil), batch[i+1:]...), d.queue...)
			d.running = false
			d.mu.Unlock()
		}
	}()
	for ; i < len(batch); i++ {
		fn(batch[i])
	}
}
