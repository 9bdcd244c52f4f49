package device

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
)

// mqttTransport keeps one MQTT 5 connection to the hub (docs/PROTOCOL.md
// §1): it connects with a fresh device token (or the client certificate),
// subscribes to what the client has handlers for, renews the connection
// before the token expires, and reconnects with backoff when it is lost.
type mqttTransport struct {
	c      *Client
	addr   string      // host:port
	tls    *tls.Config // nil: plain TCP with device tokens
	prefix string      // wanwu/v1/<tenant>/<id>/

	mu  sync.Mutex
	cur *paho.Client  // nil while disconnected
	up  chan struct{} // closed while cur is set
}

func newMQTT(c *Client, u *url.URL) (*mqttTransport, error) {
	t := &mqttTransport{c: c, up: make(chan struct{})}
	port := "1883"
	switch u.Scheme {
	case "mqtt", "tcp":
	case "mqtts", "tls", "ssl":
		port = "8883"
		host := c.opts.ServerName
		if host == "" {
			host = u.Hostname()
		}
		var err error
		if t.tls, err = c.opts.Identity.TLSConfig(host); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("device: broker %q: want mqtt://host:port or mqtts://host:port", u)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("device: broker %q: no host", u)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	tenant, id, _ := strings.Cut(c.opts.Identity.Code, ":")
	t.prefix = "wanwu/v1/" + tenant + "/" + id + "/"
	return t, nil
}

// run connects, holds the connection until it ends, and connects again,
// until ctx ends.
func (t *mqttTransport) run(ctx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		renewed, err := t.session(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case renewed:
			backoff = 0
			continue
		case err != nil:
			backoff = min(max(2*backoff, 500*time.Millisecond), time.Minute)
			t.c.log.Warn("mqtt: connection failed", "broker", t.addr, "err", err, "retry_in", backoff)
			t.c.failed(err)
		default:
			backoff = 500 * time.Millisecond
			t.c.log.Info("mqtt: connection lost", "broker", t.addr, "retry_in", backoff)
			t.c.failed(errConnectionLost)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

// session is one connection: from dialing to its end. renewed reports that
// it ended because the token was about to expire (reconnect at once).
func (t *mqttTransport) session(ctx context.Context) (renewed bool, err error) {
	id := t.c.opts.Identity
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dial := t.c.opts.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(dctx, "tcp", t.addr)
	if err != nil {
		return false, fmt.Errorf("dial: %w", err)
	}
	if t.tls != nil {
		tc := tls.Client(conn, t.tls)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return false, fmt.Errorf("dial: TLS: %w", err)
		}
		conn = tc
	}
	pc := paho.NewClient(paho.ClientConfig{
		ClientID:          id.Code,
		Conn:              &packetConn{Conn: conn},
		PacketTimeout:     30 * time.Second,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){t.received},
		OnClientError:     func(error) {}, // the session ends; run says so
		OnServerDisconnect: func(d *paho.Disconnect) {
			t.c.log.Info("mqtt: the hub ended the connection", "reason_code", fmt.Sprintf("0x%02x", d.ReasonCode))
		},
	})
	now := t.c.opts.Now()
	rm := uint16(16)
	cp := &paho.Connect{
		ClientID:   id.Code,
		CleanStart: true,
		KeepAlive:  uint16(t.c.opts.KeepAlive / time.Second),
		// Problem information on: refusals come with their reason string.
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm, RequestProblemInfo: true},
	}
	renewAt := time.Time{} // with a certificate there is no token to renew
	if t.tls == nil {
		tok, err := id.Token(now, t.c.opts.TokenTTL)
		if err != nil {
			conn.Close()
			return false, err
		}
		cp.Username, cp.UsernameFlag = id.Code, true
		cp.Password, cp.PasswordFlag = []byte(tok), true
		exp, _ := devtoken.Expiry(tok)
		// Renew a tenth of the lifetime before the token expires (at the
		// latest a minute before), so the session always rests on a token
		// that is still valid.
		renewAt = exp.Add(-min(t.c.opts.TokenTTL/10, time.Minute))
	}
	ca, err := pc.Connect(dctx, cp)
	if err != nil {
		conn.Close()
		if ca != nil {
			return false, fmt.Errorf("connect refused: reason 0x%02x %s", ca.ReasonCode, reasonString(ca))
		}
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() { <-pc.Done() }() // its goroutines are gone before the next session
	if err := t.subscribeAll(ctx, pc); err != nil {
		_ = pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
		return false, err
	}
	t.setCurrent(pc)
	defer t.setCurrent(nil)
	t.c.log.Info("mqtt: connected", "broker", t.addr)
	t.c.connected()
	t.c.signal()

	var renew <-chan time.Time
	if !renewAt.IsZero() {
		timer := time.NewTimer(max(time.Until(renewAt), 0))
		defer timer.Stop()
		renew = timer.C
	}
	select {
	case <-pc.Done():
		return false, nil
	case <-renew:
		t.c.log.Info("mqtt: renewing the connection with a fresh token")
		_ = pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
		return true, nil
	case <-ctx.Done():
		_ = pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
		return false, nil
	}
}

// errConnectionLost is what OnError hears when a connection ends.
var errConnectionLost = errors.New("mqtt: connection lost")

func reasonString(ca *paho.Connack) string {
	if ca.Properties != nil {
		return ca.Properties.ReasonString
	}
	return ""
}

// subscribeAll subscribes pc to the twin delta and the commands the client
// has handlers for; the hub then sends the current delta and waiting
// commands.
func (t *mqttTransport) subscribeAll(ctx context.Context, pc *paho.Client) error {
	var subs []paho.SubscribeOptions
	desired, command := t.c.down.handlers()
	if desired {
		subs = append(subs, paho.SubscribeOptions{Topic: t.prefix + "twin/delta", QoS: 1})
	}
	if command {
		subs = append(subs, paho.SubscribeOptions{Topic: t.prefix + "commands/+", QoS: 1})
	}
	if len(subs) == 0 {
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sa, err := pc.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, rc := range sa.Reasons {
		if rc >= 0x80 {
			return fmt.Errorf("subscribe %s: refused with reason 0x%02x", subs[i].Topic, rc)
		}
	}
	return nil
}

func (t *mqttTransport) setCurrent(pc *paho.Client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur = pc
	if pc != nil {
		close(t.up)
	} else {
		t.up = make(chan struct{})
	}
}

// current waits for a connection.
func (t *mqttTransport) current(ctx context.Context) (*paho.Client, error) {
	for {
		t.mu.Lock()
		pc, up := t.cur, t.up
		t.mu.Unlock()
		if pc != nil {
			return pc, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// subscribe subscribes the current connection to what the application
// just set a handler for (a failure is repaired by the next connection,
// which subscribes to every handler's topic).
func (t *mqttTransport) subscribe(what string) {
	t.mu.Lock()
	pc := t.cur
	t.mu.Unlock()
	topic := t.prefix + "commands/+"
	if what == "desired" {
		topic = t.prefix + "twin/delta"
	}
	t.resubscribe(pc, topic)
}

// lastExchange is not kept: an MQTT connection is always open.
func (t *mqttTransport) lastExchange() time.Time { return time.Time{} }

// poll does nothing: over MQTT the hub sends what waits on its own.
func (t *mqttTransport) poll(context.Context) error { return nil }

func (t *mqttTransport) resubscribe(pc *paho.Client, topic string) {
	if pc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(t.c.ctx, 30*time.Second)
	defer cancel()
	if _, err := pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 1}}}); err != nil {
		t.c.log.Warn("mqtt: subscribe failed; the next connection subscribes", "topic", topic, "err", err)
	}
}

// send publishes at QoS 1 and waits for the PUBACK.
func (t *mqttTransport) send(ctx context.Context, kind msgKind, payload []byte) error {
	topic, ct := t.prefix+"telemetry", "application/senml+json"
	switch kind.what {
	case "reported":
		topic, ct = t.prefix+"twin/reported", "application/json"
	case "result":
		topic, ct = t.prefix+"commands/"+kind.id+"/result", "application/json"
	case "event":
		topic, ct = t.prefix+"events/"+kind.id, "application/json"
	}
	pc, err := t.current(ctx)
	if err != nil {
		return err
	}
	// A publish in flight when its connection ends (a cut, or a renewal)
	// is given up, and sent again on the next connection; paho would wait
	// for its PUBACK for as long as ctx lasts.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-pc.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	pr, err := pc.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload, Properties: &paho.PublishProperties{ContentType: ct}})
	if pr == nil {
		if err == nil {
			err = errors.New("no acknowledgement")
		}
		return fmt.Errorf("mqtt publish: %w", err)
	}
	return pubackError(pr)
}

// pubackError reads a PUBACK: nil for success, *RefusedError for a
// refusal that holds, a plain error for one worth retrying (the hub could
// not make the message durable, its disk is full, the device is over its
// rate).
func pubackError(pr *paho.PublishResponse) error {
	if pr.ReasonCode < 0x80 {
		return nil
	}
	text := ""
	if pr.Properties != nil {
		text = pr.Properties.ReasonString
	}
	reason, msg, ok := strings.Cut(text, ": ")
	if !ok {
		reason, msg = text, ""
	}
	switch {
	case pr.ReasonCode == 0x80, // unavailable: not durable
		pr.ReasonCode == 0x97 && (reason == "rate_limited" || reason == "storage_full"):
		return fmt.Errorf("mqtt: the hub asks to retry: reason 0x%02x %s", pr.ReasonCode, text)
	}
	if reason == "" {
		reason = fmt.Sprintf("0x%02x", pr.ReasonCode)
	}
	return &RefusedError{Reason: reason, Message: msg}
}

// received routes a message from the hub: the twin delta, or a command.
// It only queues; the application's functions run in goroutines of their
// own, so that a slow handler does not hold up the connection.
func (t *mqttTransport) received(p paho.PublishReceived) (bool, error) {
	rest, ok := strings.CutPrefix(p.Packet.Topic, t.prefix)
	if !ok {
		return false, nil
	}
	switch {
	case rest == "twin/delta":
		var d Delta
		if err := json.Unmarshal(p.Packet.Payload, &d); err != nil {
			t.c.log.Warn("mqtt: twin delta not understood", "err", err)
			return true, nil
		}
		t.c.down.twin.set(d)
	case strings.HasPrefix(rest, "commands/") && !strings.Contains(rest[len("commands/"):], "/"):
		var cmd Command
		if err := json.Unmarshal(p.Packet.Payload, &cmd); err != nil || cmd.ID == "" {
			t.c.log.Warn("mqtt: command not understood", "topic", p.Packet.Topic, "err", err)
			return true, nil
		}
		t.c.down.pushCommand(cmd)
	default:
		return false, nil
	}
	return true, nil
}

// latest holds the newest value of something, replacing older ones.
type latest[T any] struct {
	mu    sync.Mutex
	v     T
	has   bool
	ready chan struct{}
}

func newLatest[T any]() *latest[T] { return &latest[T]{ready: make(chan struct{}, 1)} }

func (l *latest[T]) set(v T) {
	l.mu.Lock()
	l.v, l.has = v, true
	l.mu.Unlock()
	l.poke()
}

func (l *latest[T]) take() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.v, l.has
	var zero T
	l.v, l.has = zero, false
	return v, ok
}

func (l *latest[T]) poke() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

// queue is an unbounded FIFO: what the hub sends is bounded by the hub's
// own queue (commands come one unacknowledged delivery at a time), and
// nothing is dropped.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	ready chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{ready: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.poke()
}

func (q *queue[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true
}

func (q *queue[T]) poke() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
