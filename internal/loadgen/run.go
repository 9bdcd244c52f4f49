package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoConnection means no client could connect; the Result's Errors say why.
var ErrNoConnection = errors.New("loadgen: no client connected")

// errCounter counts errors by kind from many goroutines.
type errCounter struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errCounter) add(kind string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[kind]++
	e.mu.Unlock()
}

func (e *errCounter) into(r *Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, v := range e.m {
		r.addErr(k, v)
	}
}

// firstErr keeps the first error of each kind, to show the user one example.
type firstErr struct {
	mu   sync.Mutex
	seen map[string]error
}

func (f *firstErr) keep(kind string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]error{}
	}
	if _, ok := f.seen[kind]; !ok {
		f.seen[kind] = err
	}
}

func (f *firstErr) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for k, err := range f.seen {
		fmt.Fprintf(&b, "%s: %v; ", k, err)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// connectAll connects o.Clients clients with o.ConnectWorkers at a time,
// retrying retryable failures. Failed clients are nil.
func connectAll(ctx context.Context, o Options, d *dialer, errs *errCounter, examples *firstErr) []client {
	clients := make([]client, o.Clients)
	idx := make(chan int)
	var wg sync.WaitGroup
	var connected atomic.Int64
	stopProgress := progressEvery(o.Progress, func() string {
		return fmt.Sprintf("connected %d/%d", connected.Load(), o.Clients)
	})
	defer stopProgress()
	for w := 0; w < min(o.ConnectWorkers, o.Clients); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				spec := connectSpec{
					clientID:   o.CodeFor(i),
					protocol:   o.Protocol,
					keepAlive:  o.KeepAlive,
					timeout:    o.Timeout,
					receiveMax: uint16(min(o.Inflight, 65535)),
				}
				if o.Credentials != nil {
					spec.username, spec.password = o.Credentials(i)
				}
				for try := 1; ; try++ {
					c, err := connect(ctx, d, spec)
					if err == nil {
						clients[i] = c
						connected.Add(1)
						break
					}
					if try >= o.ConnectTries || !retryable(err) || ctx.Err() != nil {
						kind := errKind("connect", err)
						errs.add(kind)
						examples.keep(kind, err)
						break
					}
					errs.add("connect_retry")
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(try) * 500 * time.Millisecond):
					}
				}
			}
		}()
	}
	for i := 0; i < o.Clients && ctx.Err() == nil; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return clients
}

// disconnectAll closes every client, a few at a time.
func disconnectAll(clients []client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range clients {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.disconnect()
			<-sem
		}()
	}
	wg.Wait()
}

// progressEvery calls report with msg() every 2 s until the returned stop.
func progressEvery(report func(string), msg func() string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				report(msg())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func newResult(mode string, o Options) *Result {
	return &Result{
		Mode:              mode,
		Broker:            o.Broker,
		Protocol:          o.Protocol,
		QoS:               o.QoS,
		Clients:           o.Clients,
		MessagesPerClient: o.MessagesPerClient,
		Inflight:          o.Inflight,
		Rate:              o.Rate,
		Aligned:           o.Aligned,
		Started:           time.Now(),
	}
}

// Run publishes the load described by o and counts what is delivered. It
// returns a Result whenever clients connected, also when the context ends
// early; the error is non-nil only when nothing could be measured (or the
// target process cannot be read).
func Run(ctx context.Context, o Options) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	d, err := newDialer(o)
	if err != nil {
		return nil, err
	}
	res := newResult("mqtt", o)
	res.TargetPID = o.TargetPID
	if o.Duration > 0 {
		res.MessagesPerClient = 0
	}
	var tr *tracker
	if o.Duration > 0 {
		tr = newTracker(o.Clients, 0)
	} else {
		tr = newTracker(o.Clients, o.MessagesPerClient)
	}
	for i := 0; i < o.Clients && i < 3; i++ {
		res.PayloadBytes = max(res.PayloadBytes, o.PayloadSize, PayloadLen(o.CodeFor(i), max(o.MessagesPerClient-1, 0)))
	}

	var before ProcSample
	if o.TargetPID != 0 {
		if before, err = SampleProc(o.TargetPID); err != nil {
			return nil, err
		}
		res.TargetRSSBefore = before.RSS
	}
	watch := watchProc(o.TargetPID)
	peak := func() int64 { return watch.close() }
	defer func() {
		if peak != nil {
			peak()
		}
	}()

	var errs errCounter
	var examples firstErr

	// The counting subscriber connects first, so that it sees everything.
	var sub client
	if o.SubscribeTopic != "" {
		codes := make(map[string]int, o.Clients)
		for i := 0; i < o.Clients; i++ {
			codes[o.CodeFor(i)] = i
		}
		onMessage := func(topic string, payload []byte) {
			now := time.Now()
			code, seq, ok := parsePayload(payload)
			if !ok {
				tr.received(-1, 0, now)
				return
			}
			c, ok := codes[code]
			if !ok {
				c, ok = codes[codeFromTopic(topic)]
			}
			if !ok {
				c = -1
			}
			tr.received(c, seq, now)
		}
		sub, err = connect(ctx, d, connectSpec{
			clientID:   subscriberID(),
			username:   o.SubscriberUsername,
			password:   o.SubscriberPassword,
			protocol:   o.SubscriberProtocol,
			keepAlive:  o.KeepAlive,
			timeout:    o.Timeout,
			receiveMax: 65535,
			onMessage:  onMessage,
		})
		if err != nil {
			return nil, fmt.Errorf("loadgen: counting subscriber: %w", err)
		}
		defer sub.disconnect()
		subQoS := byte(o.QoS)
		if o.SubscriberQoS != nil {
			subQoS = *o.SubscriberQoS
		}
		if err := sub.subscribe(ctx, o.SubscribeTopic, subQoS); err != nil {
			return nil, fmt.Errorf("loadgen: counting subscriber: %w", err)
		}
		res.Counted, res.CountedBy = true, "subscriber"
	}
	var counting Store
	if !res.Counted && o.Store != nil {
		counting = o.Store
		res.Counted, res.CountedBy = true, "store"
	}

	o.Progress(fmt.Sprintf("connecting %d clients to %s (MQTT %s)", o.Clients, o.Broker, protoName(o.Protocol)))
	t0 := time.Now()
	clients := connectAll(ctx, o, d, &errs, &examples)
	res.ConnectTime = time.Since(t0)
	defer disconnectAll(clients)
	for _, c := range clients {
		if c != nil {
			res.Connected++
		}
	}
	if res.Connected == 0 {
		errs.into(res)
		return res, fmt.Errorf("%w (%s)", ErrNoConnection, examples.String())
	}

	// The measured window: publishing and draining.
	var cpu0 ProcSample
	if o.TargetPID != 0 {
		cpu0, _ = SampleProc(o.TargetPID)
	}
	self0 := selfCPU()
	sched0 := readSchedDelays()
	start := time.Now()
	var lastAck atomic.Int64 // ns since start
	var acked atomic.Int64
	var ackMu sync.Mutex
	var ackLat []time.Duration
	stopProgress := progressEvery(o.Progress, func() string {
		return fmt.Sprintf("acked %d (%.0f msg/s)", acked.Load(), float64(acked.Load())/time.Since(start).Seconds())
	})

	pubCtx := ctx
	var wg sync.WaitGroup
	var probes sync.WaitGroup
	var qMu sync.Mutex
	var qLat []time.Duration
	queryEvery := o.QueryableEvery
	if queryEvery <= 0 {
		queryEvery = 100
	}
	// sendNext publishes client ci's next message and returns its
	// publish→acknowledgement time; false when the publish failed (a
	// timeout also marks the client stalled, so that its other publishers
	// stop rather than each wait out the timeout in turn).
	sendNext := func(ci int, c client, code, topic string, stalled *atomic.Bool) (time.Duration, bool) {
		now := time.Now()
		seq, ts := tr.next(ci, now)
		payload := appendPayload(make([]byte, 0, max(o.PayloadSize, 96)), code, seq, ts, o.PayloadSize)
		if err := c.publish(pubCtx, topic, byte(o.QoS), payload); err != nil {
			kind := errKind("publish", err)
			errs.add(kind)
			examples.keep(kind, err)
			if strings.HasSuffix(kind, "_timeout") && stalled.CompareAndSwap(false, true) {
				errs.add("client_stalled")
			}
			return 0, false
		}
		done := time.Now()
		tr.ack(ci, seq)
		if n := acked.Add(1); o.Queryable != nil && n%int64(queryEvery) == 0 {
			probes.Add(1)
			go func() {
				defer probes.Done()
				if d, ok := pollQueryable(pubCtx, o.Queryable, code, seq, now); ok {
					qMu.Lock()
					qLat = append(qLat, d)
					qMu.Unlock()
				} else {
					errs.add("not_queryable")
				}
			}()
		}
		for {
			prev, cur := lastAck.Load(), int64(done.Sub(start))
			if cur <= prev || lastAck.CompareAndSwap(prev, cur) {
				break
			}
		}
		return done.Sub(now), true
	}
	stopped := func(c client) bool {
		select {
		case <-pubCtx.Done():
			return true
		case <-c.done():
			return true
		default:
			return false
		}
	}
	for ci, c := range clients {
		if c == nil {
			continue
		}
		code, topic := o.CodeFor(ci), o.TopicFor(ci)
		var stalled atomic.Bool
		if o.Rate > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pace(pubCtx, o, len(clients), ci, start, c, &stalled, func() {
					if d, ok := sendNext(ci, c, code, topic, &stalled); ok {
						ackMu.Lock()
						ackLat = append(ackLat, d)
						ackMu.Unlock()
					}
				})
			}()
			continue
		}
		// As fast as the in-flight window allows: one publisher per slot,
		// each sending its next message once the last one is acknowledged.
		var claimed atomic.Int64
		for w := 0; w < o.Inflight; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				defer func() {
					ackMu.Lock()
					ackLat = append(ackLat, lat...)
					ackMu.Unlock()
				}()
				for !stalled.Load() && !stopped(c) {
					n := claimed.Add(1)
					if o.Duration == 0 && n > int64(o.MessagesPerClient) || o.Duration > 0 && time.Since(start) >= o.Duration {
						return
					}
					if d, ok := sendNext(ci, c, code, topic, &stalled); ok {
						lat = append(lat, d)
					}
				}
			}()
		}
	}
	wg.Wait()
	probes.Wait()
	stopProgress()
	pubEnd := start.Add(time.Duration(lastAck.Load()))
	if lastAck.Load() == 0 {
		pubEnd = time.Now()
	}
	res.PublishWindow = pubEnd.Sub(start)
	res.GeneratorSchedP99 = readSchedDelays().quantileSince(sched0, 0.99)

	// Drain: wait for the subscriber to receive what was acknowledged.
	drainStart := time.Now()
	if res.CountedBy == "subscriber" {
		o.Progress("waiting for deliveries")
		for ctx.Err() == nil {
			pending := tr.pending()
			if pending == 0 {
				break
			}
			last := tr.lastReceipt()
			if last.Before(drainStart) {
				last = drainStart
			}
			if time.Since(last) > o.DrainQuiet || time.Since(drainStart) > o.DrainMax {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if counting != nil {
		o.Progress("waiting for the store")
		waitStored(ctx, o, counting, start, tr, drainStart, &errs, &examples)
	}
	res.DrainTime = time.Since(drainStart)

	res.GeneratorCPUSeconds = (selfCPU() - self0).Seconds()
	if o.TargetPID != 0 {
		after, err := SampleProc(o.TargetPID)
		if err == nil {
			res.TargetCPUSeconds = (after.CPU - cpu0.CPU).Seconds()
			res.TargetRSSAfter = after.RSS
		} else {
			errs.add("target_gone")
			examples.keep("target_gone", err)
		}
	}
	res.TargetRSSPeak = max(peak(), res.TargetRSSAfter, res.TargetRSSBefore)
	peak = nil
	if counting != nil {
		// After the measured window: the check's queries are not the load's cost.
		readStored(ctx, o, counting, start, tr, &errs, &examples)
	}

	tl := tr.tally()
	res.Sent, res.Acked = tl.Sent, tl.Acked
	if res.Counted {
		res.Delivered, res.Lost, res.Duplicates, res.DeliveredUnacked = tl.Delivered, tl.Lost, tl.Duplicates, tl.DeliveredUnacked
		if tl.Foreign > 0 {
			res.addErr("foreign_message", tl.Foreign)
		}
	}
	if s := res.PublishWindow.Seconds(); s > 0 {
		res.Throughput = float64(res.Acked) / s
	}
	if res.Acked > 0 && res.TargetCPUSeconds > 0 {
		res.CPUSecondsPerMillion = res.TargetCPUSeconds / float64(res.Acked) * 1e6
	}
	if o.QoS > 0 {
		res.PublishToAck = Summarize(ackLat)
	}
	tr.mu.Lock()
	res.PublishToDeliver = Summarize(tr.deliver)
	if o.Queryable != nil {
		q := Summarize(qLat)
		res.PublishToQueryable = &q
	}
	tr.mu.Unlock()
	errs.into(res)
	res.Elapsed = time.Since(res.Started)
	return res, nil
}

// Idle connects o.Clients clients, holds them for o.IdleSettle and reports
// the target's resident memory per connection, then disconnects them.
func Idle(ctx context.Context, o Options) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.TargetPID == 0 {
		return nil, fmt.Errorf("%w: idle needs the target's PID to measure its memory", ErrOptions)
	}
	d, err := newDialer(o)
	if err != nil {
		return nil, err
	}
	res := newResult("idle", o)
	res.MessagesPerClient = 0
	res.TargetPID = o.TargetPID
	before, err := SampleProc(o.TargetPID)
	if err != nil {
		return nil, err
	}
	res.TargetRSSBefore = before.RSS
	watch := watchProc(o.TargetPID)
	self0 := selfCPU()

	var errs errCounter
	var examples firstErr
	o.Progress(fmt.Sprintf("connecting %d idle clients to %s (MQTT %s)", o.Clients, o.Broker, protoName(o.Protocol)))
	t0 := time.Now()
	clients := connectAll(ctx, o, d, &errs, &examples)
	res.ConnectTime = time.Since(t0)
	for _, c := range clients {
		if c != nil {
			res.Connected++
		}
	}
	if res.Connected > 0 {
		o.Progress(fmt.Sprintf("holding %d connections for %v", res.Connected, o.IdleSettle))
		select {
		case <-ctx.Done():
		case <-time.After(o.IdleSettle):
		}
	}
	after, err := SampleProc(o.TargetPID)
	res.TargetRSSPeak = max(watch.close(), before.RSS)
	if err != nil {
		errs.add("target_gone")
		examples.keep("target_gone", err)
	} else {
		res.TargetRSSAfter = after.RSS
		res.TargetRSSPeak = max(res.TargetRSSPeak, after.RSS)
		res.TargetCPUSeconds = (after.CPU - before.CPU).Seconds()
		if res.Connected > 0 {
			res.RSSPerConnection = float64(after.RSS-before.RSS) / float64(res.Connected)
		}
	}
	// Count this process's CPU before the teardown.
	res.GeneratorCPUSeconds = (selfCPU() - self0).Seconds()
	disconnectAll(clients)
	errs.into(res)
	res.Elapsed = time.Since(res.Started)
	if res.Connected == 0 {
		return res, fmt.Errorf("%w (%s)", ErrNoConnection, examples.String())
	}
	return res, nil
}

// codeFromTopic maps wanwu/v1/<tenant>/<id>/... back to tenant:id.
func codeFromTopic(topic string) string {
	parts := strings.SplitN(topic, "/", 5)
	if len(parts) < 4 || parts[0] != "wanwu" || parts[1] != "v1" {
		return ""
	}
	return parts[2] + ":" + parts[3]
}

func protoName(p int) string {
	if p == 3 {
		return "3.1.1"
	}
	return "5"
}

// pollQueryable polls until message seq of code is readable, and returns the
// time from its publish; ok is false if it never became readable in 30 s.
func pollQueryable(ctx context.Context, q func(context.Context, string, int, time.Time) (bool, error), code string, seq int, published time.Time) (time.Duration, bool) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ok, err := q(ctx, code, seq, published); err == nil && ok {
			return time.Since(published), true
		}
		// Every 2 ms at first, then a tenth of the time waited so far (at
		// most 50 ms): the figure keeps a resolution of about 10%, and a
		// store that lags does not get a query every 2 ms from each of
		// hundreds of waiting probes on top of its load.
		wait := min(max(time.Since(published)/10, 2*time.Millisecond), 50*time.Millisecond)
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(wait):
		}
	}
	return 0, false
}

// storeWindowSlack widens the store's time window: payload timestamps are
// taken at publish and nudged forward when a client sends two in one
// millisecond.
const storeWindowSlack = time.Minute

// waitStored waits, after publishing, until the store holds as many messages
// of the run as were acknowledged, or holds no more for DrainQuiet, or
// DrainMax passed.
func waitStored(ctx context.Context, o Options, st Store, start time.Time, tr *tracker, drainStart time.Time, errs *errCounter, examples *firstErr) {
	acked := tr.tally().Acked
	last, lastChange := int64(-1), drainStart
	for ctx.Err() == nil {
		n, err := st.Count(ctx, start.Add(-time.Millisecond), time.Now().Add(storeWindowSlack))
		if err != nil {
			errs.add("store_count")
			examples.keep("store_count", err)
			return
		}
		if n >= acked {
			return
		}
		now := time.Now()
		if n != last {
			last, lastChange = n, now
		}
		if now.Sub(lastChange) > o.DrainQuiet || now.Sub(drainStart) > o.DrainMax {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readStored reads every client's stored seqs back and records them as
// delivered.
func readStored(ctx context.Context, o Options, st Store, start time.Time, tr *tracker, errs *errCounter, examples *firstErr) {
	to := time.Now().Add(storeWindowSlack)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(8, o.Clients) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				seqs, err := st.Seqs(ctx, o.CodeFor(c), start.Add(-time.Millisecond), to)
				if err != nil {
					errs.add("store_read")
					examples.keep("store_read", err)
					continue
				}
				for _, seq := range seqs {
					tr.received(c, seq, time.Time{})
				}
			}
		}()
	}
	for c := range o.Clients {
		if ctx.Err() != nil {
			break
		}
		next <- c
	}
	close(next)
	wg.Wait()
}

// pace sends client ci's messages at o.Rate on its own schedule (message n
// at phase + (n-1)/Rate after start; the phase spreads the clients over one
// interval unless o.Aligned), each in a goroutine of its own so that up to
// o.Inflight are outstanding; a message whose time came while the window
// was full waits for a free slot. One goroutine and one timer per client
// keep the generator's own scheduling out of the latencies it measures:
// a publisher goroutine per window slot, each with a timer for its next
// turn, were 16,000 goroutines at 1,000 clients, and their start and the
// collector's scans of their stacks delayed acknowledgements by tens of
// milliseconds in the first second of a run.
func pace(ctx context.Context, o Options, clients, ci int, start time.Time, c client, stalled *atomic.Bool, send func()) {
	var phase time.Duration
	if !o.Aligned {
		phase = time.Duration(float64(ci) / float64(clients) / o.Rate * float64(time.Second))
	}
	slots := make(chan struct{}, o.Inflight)
	var sending sync.WaitGroup
	defer sending.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for n := 1; o.Duration > 0 || n <= o.MessagesPerClient; n++ {
		at := start.Add(phase + time.Duration(float64(n-1)/o.Rate*float64(time.Second)))
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			case <-c.done():
				return
			}
		}
		if o.Duration > 0 && time.Since(start) >= o.Duration {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		case <-c.done():
			return
		}
		if stalled.Load() {
			return
		}
		sending.Add(1)
		go func() {
			defer sending.Done()
			defer func() { <-slots }()
			send()
		}()
	}
}
