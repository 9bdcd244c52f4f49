package command

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

var errNoRows = sql.ErrNoRows

// maxTimerWait bounds one sleep of the timer goroutine, so that a wall-clock
// step cannot leave deadlines unnoticed for long.
const maxTimerWait = 5 * time.Minute

// sweepBatch is how many due commands one sweep transaction handles.
const sweepBatch = 256

// Start runs the delivery goroutine and the timer goroutine (expiry, result
// timeouts, redeliveries).
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("command: already started")
	}
	if s.closed {
		return errors.New("command: shut down")
	}
	s.started = true
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.deliveryLoop(runCtx)
	}()
	go func() {
		defer s.wg.Done()
		s.timerLoop(runCtx)
	}()
	if len(s.kicks) > 0 {
		select {
		case s.kickc <- struct{}{}:
		default:
		}
	}
	return nil
}

// Shutdown stops the goroutines and waits for them (or for ctx). Commands
// stay in the database; the next Start resumes them.
func (s *Service) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("command: shutdown: %w", ctx.Err())
	}
}

// Attach registers sink as the way to reach the device now (MQTT: it
// subscribed to its commands topic; CoAP: it observes /c) and starts
// delivering its queue, oldest first. A command handed to an earlier session
// and never confirmed is delivered again. A later Attach for the same device
// replaces the sink; detach removes it if it is still the current one.
func (s *Service) Attach(code string, sink Sink) (detach func()) {
	a := &attachment{sink: sink}
	s.mu.Lock()
	s.sinks[code] = a
	s.mu.Unlock()
	s.kick(code)
	return func() {
		s.mu.Lock()
		if s.sinks[code] == a {
			delete(s.sinks, code)
		}
		s.mu.Unlock()
	}
}

// Delivered records the transport's confirmation that the device received
// command id; the device's next command is offered then. A repeat, or a
// confirmation for a finished command, changes nothing.
func (s *Service) Delivered(ctx context.Context, code, id string) error {
	return s.write(ctx, "", func(c *change) error {
		r, err := c.get(id)
		if err != nil {
			return err
		}
		if r.Code != code {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if r.Status != Queued {
			return nil
		}
		r.markDelivered(c.now)
		if err := c.update(r); err != nil {
			return err
		}
		if err := c.event(EventDelivered, r, nil); err != nil {
			return err
		}
		return c.offer(code) // the next one, in this commit
	})
}

// Wake tells the service that a device sent an uplink after a sleep:
// commands held while it slept are offered now. It costs a map lookup for
// a device with none held.
func (s *Service) Wake(code string) {
	s.mu.Lock()
	held := s.held[code]
	delete(s.held, code)
	s.mu.Unlock()
	if held {
		s.kick(code)
	}
}

// asleep asks Reach whether the device sleeps; one that does is held,
// so that Wake offers its commands when it is back.
func (s *Service) asleep(ctx context.Context, code string) bool {
	if s.opts.Reach == nil {
		return false
	}
	asleep, _, err := s.opts.Reach(ctx, code)
	if err != nil {
		s.log.Warn("device reachability not known; delivering", "device", code, "err", err)
		return false
	}
	if asleep {
		s.mu.Lock()
		s.held[code] = true
		s.mu.Unlock()
	}
	return asleep
}

// Pending returns the command a polling or observing device should get
// next (the oldest queued one), or nil. It does not count as an attempt;
// the adapter calls Delivered once the device has it.
func (s *Service) Pending(ctx context.Context, code string) (*Command, error) {
	r, err := scanRow(s.db.R.QueryRowContext(ctx, `SELECT `+columns+` FROM commands
		WHERE code = ? AND status = 'queued' ORDER BY seq LIMIT 1`, code))
	if err != nil {
		if errors.Is(err, errNoRows) {
			return nil, nil
		}
		return nil, err
	}
	return &r.Command, nil
}

// kick schedules a delivery check for the device.
func (s *Service) kick(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.kickSet[code] {
		return
	}
	s.kickSet[code] = true
	s.kicks = append(s.kicks, code)
	if s.started {
		select {
		case s.kickc <- struct{}{}:
		default:
		}
	}
}

func (s *Service) deliveryLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kickc:
		}
		s.mu.Lock()
		codes := s.kicks
		s.kicks = nil
		clear(s.kickSet)
		s.mu.Unlock()
		if err := s.deliverNext(ctx, codes); err != nil && ctx.Err() == nil {
			s.log.Warn("command delivery", "devices", len(codes), "err", err)
		}
	}
}

// deliverNext offers each device its oldest queued command (c.offer). The
// attempts of all the devices are recorded in one transaction: under a
// burst of commands one commit serves them all.
func (s *Service) deliverNext(ctx context.Context, codes []string) error {
	return s.write(ctx, "", func(c *change) error {
		for _, code := range codes {
			if err := c.offer(code); err != nil {
				return err
			}
		}
		return nil
	})
}

// offer records an attempt to hand the device's oldest queued command to its
// sink, unless no sink is attached or that sink already has it and neither
// a confirmation nor the retry time came yet. The command is handed over
// after the commit (handOver): a confirmation must find its attempt recorded.
// Issue and Delivered offer in their own transactions, so a command for an
// attached device costs no commit of its own to go out.
func (c *change) offer(code string) error {
	s := c.s
	s.mu.Lock()
	a := s.sinks[code]
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	r, err := scanRow(c.tx.QueryRowContext(c.ctx, `SELECT `+columns+` FROM commands
		WHERE code = ? AND status = 'queued' ORDER BY seq LIMIT 1`, code))
	if errors.Is(err, errNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.Attempts >= s.opts.MaxAttempts {
		return nil // the timer fails it when its last wait ends
	}
	s.mu.Lock()
	same := a.sentID == r.ID
	s.mu.Unlock()
	if same && r.nextAt > 0 {
		return nil // waiting for the confirmation
	}
	if s.asleep(c.ctx, code) {
		return nil // no attempt while it sleeps: Wake offers it again
	}
	r.Attempts++
	r.nextAt = ms(c.now.Add(s.opts.AckTimeout))
	if r.Attempts < s.opts.MaxAttempts {
		r.nextAt += s.backoff(r.Attempts).Milliseconds()
	}
	if err := c.update(r); err != nil {
		return err
	}
	kind := EventSent
	if r.Attempts > 1 {
		kind = EventRetry
	}
	if err := c.event(kind, r, nil); err != nil {
		return err
	}
	// The sink counts as having it from here, not only from handOver: a
	// delivery pass that commits between this transaction and the hand-over
	// must not offer it again (that was a spurious retry). Should this
	// transaction roll back, nextAt stays unset and the next offer goes on.
	s.mu.Lock()
	a.sentID = r.ID
	s.mu.Unlock()
	c.sends = append(c.sends, offered{a, r})
	return nil
}

// offered is an attempt recorded by offer, handed over after the commit.
type offered struct {
	a *attachment
	r *row
}

// handOver gives committed attempts to their sinks, unless a sink was
// replaced meanwhile (the new one gets the command from its own offer).
func (s *Service) handOver(sends []offered) {
	for _, sd := range sends {
		code := sd.r.Code
		s.mu.Lock()
		current := s.sinks[code] == sd.a
		if current {
			sd.a.sentID = sd.r.ID
		}
		s.mu.Unlock()
		if !current {
			continue
		}
		cmd := sd.r.Command
		if err := sd.a.sink.Deliver(&cmd); err != nil {
			s.log.Warn("command sink refused", "code", code, "id", sd.r.ID, "attempt", sd.r.Attempts, "err", err)
		}
	}
}

// backoff is the extra wait after the n-th unconfirmed attempt:
// RetryBackoff·2^(n-1), at most MaxBackoff, jittered into [d/2, d].
func (s *Service) backoff(n int) time.Duration {
	d := s.opts.RetryBackoff
	for i := 1; i < n && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

func (s *Service) wakeTimer() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) timerLoop(ctx context.Context) {
	failed := false // the last sweep failed: wait a second before the next
	for {
		var fire <-chan time.Time
		next, ok, err := s.nextDue(ctx)
		switch {
		case err != nil || failed:
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.log.Warn("command timer", "err", err)
			}
			fire = s.opts.After(time.Second)
		case ok:
			d := fromMS(next).Sub(s.now())
			fire = s.opts.After(min(max(d, 0), maxTimerWait))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-fire:
			err := s.Sweep(ctx)
			failed = err != nil
			if failed && ctx.Err() == nil {
				s.log.Warn("command sweep", "err", err)
			}
		}
	}
}

func (s *Service) nextDue(ctx context.Context) (int64, bool, error) {
	var v *int64
	err := s.db.R.QueryRowContext(ctx, `SELECT MIN(due_at) FROM commands WHERE status IN ('queued', 'delivered')`).Scan(&v)
	if err != nil {
		return 0, false, fmt.Errorf("command: next deadline: %w", err)
	}
	if v == nil {
		return 0, false, nil
	}
	return *v, true, nil
}

// Sweep applies every deadline that has passed by Now: queued commands
// expire, delivered ones time out, unconfirmed ones are redelivered or fail
// as undeliverable. The timer goroutine calls it; tests may too.
func (s *Service) Sweep(ctx context.Context) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	for {
		n := 0
		err := s.write(ctx, "", func(c *change) error {
			n = 0
			now := ms(c.now)
			rows, err := c.tx.QueryContext(ctx, `SELECT `+columns+` FROM commands
				WHERE status IN ('queued', 'delivered') AND due_at <= ? ORDER BY due_at LIMIT ?`, now, sweepBatch)
			if err != nil {
				return fmt.Errorf("command: sweep: %w", err)
			}
			var due []*row
			for rows.Next() {
				r, err := scanRow(rows)
				if err != nil {
					rows.Close()
					return err
				}
				due = append(due, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("command: sweep: %w", err)
			}
			n = len(due)
			for _, r := range due {
				if err := s.apply(c, r, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < sweepBatch {
			return nil
		}
	}
}

// apply handles one command whose deadline passed.
func (s *Service) apply(c *change, r *row, now int64) error {
	var kind string
	switch {
	case r.Status == Delivered:
		r.finish(TimedOut, ReasonTimedOut, nil, c.now)
		kind = EventTimedOut
	case ms(r.ExpiresAt) <= now:
		r.finish(Expired, ReasonExpired, nil, c.now)
		kind = EventExpired
	case r.nextAt > 0 && r.nextAt <= now && r.Attempts >= s.opts.MaxAttempts:
		r.finish(Failed, ReasonUndeliverable, nil, c.now)
		kind = EventFailed
	case r.nextAt > 0 && r.nextAt <= now:
		// Redelivery due: the delivery goroutine sends it if the device is
		// attached, else its next Attach does.
		r.nextAt = 0
		c.kick(r.Code)
		return c.update(r)
	default:
		return c.update(r) // due_at was stale; recompute it
	}
	if err := c.update(r); err != nil {
		return err
	}
	c.kick(r.Code)
	return c.event(kind, r, nil)
}
