package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/bus"
)

// LinkOptions configure the edge's link to the hub.
type LinkOptions struct {
	// Hub is the hub's HTTPS API base URL ("https://hub:8443").
	Hub string
	// Client carries the requests: TLS with the edge's client certificate,
	// HTTP/2 with pings (NewClient).
	Client   *http.Client
	Outboxes *Outboxes
	// Epoch names the outboxes; NewEpoch makes and keeps a new one, for
	// outboxes whose sequences are behind what the hub holds of the epoch
	// (a data directory restored from a copy).
	Epoch    string
	NewEpoch func() (string, error)
	// Status, when set, is sent to the hub now and then (JSON).
	Status func(ctx context.Context) []byte
	// MaxBytes and MaxMessages bound one uplink (defaults 1 MiB, 256
	// outbox messages): the most a more urgent class waits behind.
	MaxBytes, MaxMessages int
	// RetryMin and RetryMax bound the wait between failed attempts
	// (defaults 100 ms and 500 ms): the link's return is noticed within
	// RetryMax.
	RetryMin, RetryMax time.Duration
	// Heartbeat is how often an idle link says it is alive (default 5 s).
	Heartbeat time.Duration
	// Linger is how long a few live telemetry or bulk messages wait for
	// more to share their uplink (default 50 ms); alarm and control never
	// wait.
	Linger  time.Duration
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Link sends what the outboxes hold to the hub, the most urgent class
// first, each uplink bounded so that a more urgent class waits for one
// request at most; it resumes after the hub's high-water marks whenever the
// link returns.
type Link struct {
	o   LinkOptions
	log *slog.Logger

	up      atomic.Bool
	lastOK  atomic.Int64 // unix ms of the last answered request
	lastErr atomic.Value // string
	epoch   atomic.Value // string

	sent    *prometheus.CounterVec
	bytes   *prometheus.CounterVec
	errs    prometheus.Counter
	upGauge prometheus.Gauge

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	done   bool
}

// NewLink returns a link that has not started.
func NewLink(o LinkOptions) (*Link, error) {
	if o.Hub == "" || o.Client == nil || o.Outboxes == nil || o.Epoch == "" {
		return nil, errors.New("forward: a link needs Hub, Client, Outboxes and Epoch")
	}
	if _, err := url.Parse(o.Hub); err != nil {
		return nil, fmt.Errorf("forward: hub URL: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 20
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 256
	}
	o.MaxMessages = min(o.MaxMessages, MaxUplinkMessages)
	o.MaxBytes = min(o.MaxBytes, MaxUplinkBytes/2)
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 500 * time.Millisecond
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.Linger <= 0 {
		o.Linger = 50 * time.Millisecond
	}
	l := &Link{o: o, log: o.Logger.With("component", "edge-link"),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_forwarded_messages_total", Help: "Outbox messages the hub acknowledged, by class.",
		}, []string{"class"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_edge_link_bytes_total", Help: "Bytes of request and response bodies on the edge's link to the hub, by direction (up, down).",
		}, []string{"direction"}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wanwu_edge_link_errors_total", Help: "Requests to the hub that failed (the link was down, or the hub refused).",
		}),
		upGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_edge_link_up", Help: "1 while the last request to the hub was answered.",
		}),
	}
	l.epoch.Store(o.Epoch)
	l.lastErr.Store("")
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{l.sent, l.bytes, l.errs, l.upGauge} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("forward: metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Start starts sending.
func (l *Link) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.run(ctx)
	}()
}

// Shutdown stops sending and waits for the request in flight to end.
func (l *Link) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || l.cancel == nil {
		return nil
	}
	l.done = true
	l.cancel()
	ch := make(chan struct{})
	go func() { l.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LinkStatus is the link's state.
type LinkStatus struct {
	Up        bool      `json:"up"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Epoch     string    `json:"epoch"`
}

// Status reports the link's state.
func (l *Link) Status() LinkStatus {
	s := LinkStatus{Up: l.up.Load(), LastError: l.lastErr.Load().(string), Epoch: l.epoch.Load().(string)}
	if ms := l.lastOK.Load(); ms > 0 {
		s.LastOK = time.UnixMilli(ms)
	}
	return s
}

func (l *Link) run(ctx context.Context) {
	var next [NumClasses]uint64
	synced := false
	wait := l.o.RetryMin
	lastStatus := time.Time{}
	lingered := false
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		l.errs.Inc()
		if l.up.Swap(false) || wait == l.o.RetryMin {
			l.log.Warn("the hub link is down; what the edge accepts waits in its outboxes", "hub", l.o.Hub, "err", err)
		}
		l.upGauge.Set(0)
		l.lastErr.Store(err.Error())
		synced = false
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, l.o.RetryMax)
	}
	for ctx.Err() == nil {
		if !synced {
			st, err := l.state(ctx)
			if err != nil {
				fail(err)
				continue
			}
			behind := false
			for _, c := range Classes() {
				box := l.o.Outboxes.Box(c)
				last, _, err := box.Last(ctx)
				if err != nil && !errors.Is(err, bus.ErrOutboxEmpty) {
					fail(err)
					break
				}
				if st.HWM[c] > last {
					behind = true
				}
				next[c] = st.HWM[c] + 1
				if err := l.o.Outboxes.Acked(ctx, c, st.HWM[c], 0); err != nil {
					l.log.Warn("removing what the hub holds from an outbox failed; will retry", "class", c, "err", err)
				}
			}
			if behind {
				if err := l.renewEpoch(); err != nil {
					fail(err)
				}
				continue
			}
			synced = true
			if !l.up.Swap(true) {
				l.log.Info("the hub link is up", "hub", l.o.Hub, "epoch", l.epoch.Load())
			}
			l.upGauge.Set(1)
			l.lastErr.Store("")
			wait = l.o.RetryMin
		}
		c, u, records, err := l.nextUplink(ctx, &next)
		if err != nil {
			fail(err)
			continue
		}
		// Live telemetry and bulk wait a moment for more to fill the
		// uplink (one request per outbox message costs the edge a request
		// and the hub a commit each); alarm and control go at once, and a
		// backlog fills uplinks by itself.
		if u != nil && c >= Telemetry && len(u.Seqs) < l.o.MaxMessages/4 && !lingered {
			lingered = true
			t := time.NewTimer(l.o.Linger)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		lingered = false
		if u == nil {
			if time.Since(lastStatus) < l.o.Heartbeat {
				t := time.NewTimer(l.o.Heartbeat - time.Since(lastStatus))
				select {
				case <-ctx.Done():
				case <-l.o.Outboxes.Appended():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			u = &Uplink{Epoch: l.epoch.Load().(string), Class: uint8(Control)}
		}
		if l.o.Status != nil && time.Since(lastStatus) >= l.o.Heartbeat {
			u.Status = l.o.Status(ctx)
		}
		ack, err := l.send(ctx, u)
		if err != nil {
			fail(err)
			continue
		}
		if u.Status != nil || len(u.Seqs) == 0 {
			lastStatus = time.Now()
		}
		if len(u.Seqs) == 0 {
			continue
		}
		if ack.HWM < u.Seqs[len(u.Seqs)-1] {
			fail(fmt.Errorf("the hub acknowledged class %s through %d, not %d", c, ack.HWM, u.Seqs[len(u.Seqs)-1]))
			continue
		}
		next[c] = ack.HWM + 1
		l.sent.WithLabelValues(c.String()).Add(float64(len(u.Seqs)))
		if err := l.o.Outboxes.Acked(ctx, c, ack.HWM, records); err != nil {
			l.log.Warn("removing what the hub holds from an outbox failed; will retry", "class", c, "err", err)
		}
	}
}

// renewEpoch starts a new epoch: the outboxes' sequences are behind what
// the hub holds of this one, so continuing would have the hub take new
// messages for ones it has.
func (l *Link) renewEpoch() error {
	if l.o.NewEpoch == nil {
		return errors.New("the hub holds more of this epoch than the outboxes ever held, and no new epoch can be made")
	}
	e, err := l.o.NewEpoch()
	if err != nil {
		return err
	}
	l.log.Error("the hub holds more of this edge's epoch than its outboxes ever held (a restored or replaced data directory); forwarding goes on in a new epoch",
		"old", l.epoch.Load(), "new", e)
	l.epoch.Store(e)
	return nil
}

// nextUplink reads the most urgent class's next messages; nil when every
// class is sent.
func (l *Link) nextUplink(ctx context.Context, next *[NumClasses]uint64) (Class, *Uplink, int64, error) {
	for _, c := range Classes() {
		box := l.o.Outboxes.Box(c)
		u := &Uplink{Epoch: l.epoch.Load().(string), Class: uint8(c)}
		size := 0
		var records int64
		var derr error
		_, err := box.Read(ctx, next[c], l.o.MaxMessages, func(seq uint64, data []byte) bool {
			if len(u.Seqs) > 0 && size+len(data) > l.o.MaxBytes {
				return false
			}
			msgs, err := Decode(data)
			if err != nil {
				derr = err
			}
			records += int64(countRecords(msgs))
			u.Seqs = append(u.Seqs, seq)
			u.Data = append(u.Data, bytes.Clone(data))
			size += len(data)
			return true
		})
		if err != nil {
			return c, nil, 0, err
		}
		if derr != nil {
			l.log.Error("an outbox message could not be decoded; it is sent as it is for the hub to refuse", "class", c, "err", derr)
		}
		if len(u.Seqs) > 0 {
			return c, u, records, nil
		}
	}
	return 0, nil, 0, nil
}

// state asks the hub what it holds of the epoch.
func (l *Link) state(ctx context.Context) (*State, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.o.Hub+"/api/v1/edge/forward?epoch="+url.QueryEscape(l.epoch.Load().(string)), nil)
	if err != nil {
		return nil, err
	}
	var st State
	if err := l.do(req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// send posts one uplink and returns the hub's answer.
func (l *Link) send(ctx context.Context, u *Uplink) (*Ack, error) {
	body, err := EncodeUplink(u)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.o.Hub+"/api/v1/edge/forward", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/cbor")
	l.bytes.WithLabelValues("up").Add(float64(len(body)))
	var ack Ack
	if err := l.do(req, &ack); err != nil {
		return nil, err
	}
	return &ack, nil
}

// do runs a request and decodes its JSON answer.
func (l *Link) do(req *http.Request, into any) error {
	resp, err := l.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	l.bytes.WithLabelValues("down").Add(float64(len(body)))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("hub answered %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("hub answer: %w", err)
	}
	l.lastOK.Store(time.Now().UnixMilli())
	return nil
}
