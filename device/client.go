package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Options configure a Client. Identity, BufferDir and one of Broker and
// CoAP are required.
type Options struct {
	// Identity is the device's identity (Claim, LoadIdentity).
	Identity *Identity
	// Broker is the hub's MQTT endpoint: mqtt://host:port (or tcp://) with
	// device tokens, mqtts://host:port (or tls://, ssl://) with the
	// identity's client certificate. The hub pushes twin deltas and
	// commands over it.
	Broker string
	// CoAP is the hub's CoAP endpoint: coap://host:port (plain UDP, device
	// token in each request) or coaps://host:port (DTLS with the identity's
	// certificate). The client asks for twin deltas and commands after each
	// message it sends (queue mode, for devices that sleep between
	// reports), and on Poll.
	CoAP string
	// SenMLJSON sends telemetry over CoAP as SenML JSON instead of SenML
	// CBOR (MQTT always sends JSON).
	SenMLJSON bool
	// Dial opens the TCP connection to the broker (default: a net.Dialer);
	// TLS, if any, runs over it. A link emulator or a proxy goes here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ListenPacket opens the datagram socket for CoAP over DTLS (default: a
	// UDP socket of its own); plain coap:// always uses its own.
	ListenPacket func(ctx context.Context) (net.PacketConn, error)
	// CoAPAckTimeout is CoAP's ACK_TIMEOUT (RFC 7252 §4.8, default 2 s): a
	// confirmable request not answered within 1 to 1.5 times it is sent
	// again, up to 4 times, doubling each time. On a link whose round trip
	// is longer (NB-IoT: seconds) a longer one spares the radio spurious
	// retransmissions. The DTLS handshake's flights wait half of it, and
	// a handshake not done within MAX_TRANSMIT_WAIT (46.5 times it: 93 s
	// by default) is given up and begun anew.
	CoAPAckTimeout time.Duration
	// CoAPSessionIdle: a CoAP connection idle for longer shakes hands
	// again before its next request, since the hub ends DTLS sessions idle
	// for its coap.session_idle (default 4 minutes, under the hub's 5). A
	// device on a PSM network profile may set its periodic update timer:
	// the hub keeps such a session that long (coap.sleeping_session_idle).
	CoAPSessionIdle time.Duration
	// BufferDir holds the durable buffer of messages the hub has not
	// acknowledged yet (one file, buffer.wwb). A Client started on the same
	// directory after a restart sends what was left in it, first.
	BufferDir string
	// MemoryBuffer keeps the buffer in memory instead (BufferDir must be
	// empty): what the hub has not acknowledged is lost when the process
	// ends. For simulated devices and tests.
	MemoryBuffer bool
	// MaxBuffer bounds the bytes of unacknowledged messages; over it Publish
	// returns ErrBufferFull (default 64 MiB; negative: no bound).
	MaxBuffer int64
	// NoSync skips the fsync after each buffered message: faster, but a
	// power loss may lose what was published since the last sync.
	NoSync bool
	// TokenTTL is the lifetime of the device tokens the client signs
	// (default 1 h, at most 24 h). MQTT sessions are renewed with a fresh
	// token shortly before the token expires.
	TokenTTL time.Duration
	// ServerName is the name the hub's TLS or DTLS certificate must carry
	// (default: the endpoint's host).
	ServerName string
	// KeepAlive is the MQTT keep-alive (default 30 s).
	KeepAlive time.Duration
	// Logger receives connection events (default slog.Default()). Payloads,
	// tokens and keys are never logged.
	Logger *slog.Logger
	// Now is the clock (default time.Now), for the records' times and the
	// tokens.
	Now func() time.Time
	// OnConnect, if set, is called each time the client gets a connection
	// to the hub (an MQTT session, a CoAP/DTLS handshake).
	OnConnect func()
	// OnError, if set, is called with each failure the client retries by
	// itself: a connection refused or lost, a send that failed. Refusals
	// of messages are not among them: Publish returns those.
	OnError func(error)
}

// Errors of a Client.
var (
	// ErrClosed: the client (or its buffer) is closed.
	ErrClosed = errors.New("device: client closed")
	// ErrPending is wrapped, with the context's error, when Publish returns
	// before the hub acknowledged the records: they stay in the buffer and
	// are sent on, in order; do not publish them again.
	ErrPending = errors.New("device: not acknowledged yet; kept in the buffer and sent on")
)

// RefusedError is the hub's refusal of a message (docs/PROTOCOL.md §2): the
// message is not stored, and sending it again would be refused again.
type RefusedError struct {
	// Reason is the hub's reason code: out_of_range, unknown_property,
	// malformed, not_authorized, ...
	Reason string
	// Message is the hub's explanation.
	Message string
}

func (e *RefusedError) Error() string {
	return "device: the hub refused the message: " + e.Reason + ": " + e.Message
}

// transport carries messages to the hub and returns its answer: nil once
// the hub made the message durable, a *RefusedError for a refusal that
// holds, anything else for a failure worth trying again.
type transport interface {
	send(ctx context.Context, kind msgKind, payload []byte) error
	// run keeps the connection until ctx ends (MQTT); it may return at once.
	run(ctx context.Context)
	// subscribe says that the application set a handler for "desired" or
	// "command" (MQTT subscribes to its topic).
	subscribe(what string)
	// poll asks the hub for the twin's delta and the next command (CoAP's
	// queue mode); over MQTT the hub sends them by itself.
	poll(ctx context.Context) error
	// lastExchange is when the hub last answered (CoAP; zero over MQTT).
	lastExchange() time.Time
}

// msgKind is what a message is: telemetry, reported state, a command
// result, an event.
type msgKind struct {
	what string // "telemetry", "reported", "result", "event"
	id   string // the command id of a result, the name of an event
}

var kindTelemetry = msgKind{what: "telemetry"}

// Client is a device's connection to a hub. It is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger
	buf  *buffer
	tr   transport
	mqtt *mqttTransport // nil over CoAP
	down *downlink

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // the sender has work

	mu      sync.Mutex
	waiters map[uint64]chan error
	closed  bool
}

// Connect opens the buffer in opts.BufferDir and starts the client: it
// connects to the hub (and reconnects, with a fresh token, whenever the
// connection is lost) and sends what the buffer holds, oldest first. It
// returns without waiting for the hub: records published while the hub is
// out of reach wait in the buffer. Close stops it.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Identity == nil || opts.Identity.Key == nil {
		return nil, errors.New("device: Options.Identity with a key is required")
	}
	if err := opts.Identity.check(); err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	if (opts.BufferDir == "") == !opts.MemoryBuffer {
		return nil, errors.New("device: give one of Options.BufferDir and Options.MemoryBuffer")
	}
	if (opts.Broker == "") == (opts.CoAP == "") {
		return nil, errors.New("device: give one of Options.Broker and Options.CoAP")
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.TokenTTL < 0 || opts.TokenTTL > 24*time.Hour {
		return nil, fmt.Errorf("device: TokenTTL %v must be in (0, 24h]", opts.TokenTTL)
	}
	if opts.CoAPAckTimeout <= 0 {
		opts.CoAPAckTimeout = 2 * time.Second
	}
	if opts.CoAPSessionIdle <= 0 {
		opts.CoAPSessionIdle = 4 * time.Minute
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.MaxBuffer == 0 {
		opts.MaxBuffer = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Client{opts: opts, log: opts.Logger.With("device", opts.Identity.Code), wake: make(chan struct{}, 1), waiters: map[uint64]chan error{}}
	c.down = newDownlink(c)
	var err error
	if opts.Broker != "" {
		var u *url.URL
		if u, err = url.Parse(opts.Broker); err == nil {
			c.mqtt, err = newMQTT(c, u)
			c.tr = c.mqtt
		}
	} else {
		var u *url.URL
		if u, err = url.Parse(opts.CoAP); err == nil {
			c.tr, err = newCoAP(c, u)
		}
	}
	if err != nil {
		return nil, err
	}
	max := opts.MaxBuffer
	if max < 0 {
		max = 0
	}
	if opts.MemoryBuffer {
		c.buf = memoryBuffer(max)
	} else if c.buf, err = openBuffer(opts.BufferDir, max, opts.NoSync); err != nil {
		return nil, err
	}
	// The client lives until Close: ctx's values carry over, its end does not.
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.tr.run(c.ctx) }()
	go func() { defer c.wg.Done(); c.down.run(c.ctx) }()
	go func() { defer c.wg.Done(); c.sendLoop() }()
	c.signal()
	return c, nil
}

// Close stops the client: it ends the connection and waits for every
// goroutine the client started (a command handler still running gets a
// canceled context and is waited for). Records not yet acknowledged stay in
// the buffer for the next Connect on the same directory.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	for seq, ch := range c.waiters {
		ch <- ErrClosed
		delete(c.waiters, seq)
	}
	c.mu.Unlock()
	return c.buf.close()
}

// Publish sends records as one SenML message on the telemetry topic (MQTT
// QoS 1, SenML JSON) or path (CoAP, confirmable, SenML CBOR unless
// Options.SenMLJSON). It writes the message to the buffer
// first and returns nil once the hub acknowledged it (it is durable there),
// a *RefusedError when the hub refused it (it is dropped from the buffer:
// the hub keeps it as a dead letter), or, when ctx ends first, an error
// wrapping ErrPending: the message stays in the buffer and is sent on.
// Messages reach the hub in the order Publish buffered them.
func (c *Client) Publish(ctx context.Context, records ...Record) error {
	encode := EncodeSenML
	if c.mqtt == nil && !c.opts.SenMLJSON {
		encode = EncodeSenMLCBOR
	}
	payload, err := encode(c.opts.Identity.Code, c.opts.Now(), records...)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	seq, err := c.buf.append(payload)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.waiters[seq] = done
	c.mu.Unlock()
	c.signal()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, seq)
		c.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrPending, ctx.Err())
	}
}

// Buffered is the number of messages waiting for the hub's acknowledgement.
func (c *Client) Buffered() int { return c.buf.len() }

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already; the loop looks at the buffer then
	}
}

// sendLoop sends the buffer's oldest message until the hub answers it, then
// the next: one message in flight keeps them in order.
func (c *Client) sendLoop() {
	backoff := time.Duration(0)
	for {
		p, ok := c.buf.oldest()
		if !ok {
			select {
			case <-c.wake:
				continue
			case <-c.ctx.Done():
				return
			}
		}
		err := c.tr.send(c.ctx, kindTelemetry, p.payload)
		var refused *RefusedError
		switch {
		case err == nil || errors.As(err, &refused):
			if ferr := c.buf.finish(p.seq); ferr != nil {
				c.log.Error("buffer", "err", ferr)
			}
			if !c.answer(p.seq, err) && refused != nil {
				// Nobody waits (published before a restart, or its
				// Publish gave up waiting): say it, without the payload.
				c.log.Warn("message refused by the hub", "seq", p.seq, "reason", refused.Reason, "message", refused.Message)
			}
			backoff = 0
			if _, more := c.buf.oldest(); !more {
				// Awake and nothing left to send: ask for what waits
				// (CoAP; MQTT has it pushed).
				if perr := c.tr.poll(c.ctx); perr != nil {
					c.log.Debug("asking the hub for what waits failed", "err", perr)
				}
			}
		case c.ctx.Err() != nil:
			return
		default:
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			c.log.Debug("send failed; trying again", "seq", p.seq, "in", backoff, "err", err)
			c.failed(err)
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// connected and failed call the application's hooks.
func (c *Client) connected() {
	if c.opts.OnConnect != nil {
		c.opts.OnConnect()
	}
}

func (c *Client) failed(err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(err)
	}
}

// answer hands the hub's answer to the Publish waiting for seq, and
// reports whether one was waiting.
func (c *Client) answer(seq uint64, err error) bool {
	c.mu.Lock()
	ch := c.waiters[seq]
	delete(c.waiters, seq)
	c.mu.Unlock()
	if ch != nil {
		ch <- err
	}
	return ch != nil
}

// ReportState sends the device's reported state, a JSON merge patch (RFC
// 7386) of the twin's reported document (members replace, null deletes),
// and waits for the hub's answer. State reports are not buffered: a report
// that could not be sent should be sent again with the state of then.
func (c *Client) ReportState(ctx context.Context, patch any) error {
	b, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("device: report state: %w", err)
	}
	return c.tr.send(ctx, msgKind{what: "reported"}, b)
}

// Event sends an event of the device's thing model with its data (a value
// that marshals to what the event's schema declares; nil for none) and
// waits for the hub's answer: nil once it is durable, a *RefusedError for a
// refusal. Events are not buffered: send one again if it failed otherwise.
func (c *Client) Event(ctx context.Context, name string, data any) error {
	if name == "" || strings.ContainsAny(name, "/+#") {
		return fmt.Errorf("device: event name %q", name)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("device: event %s: %w", name, err)
	}
	return c.tr.send(ctx, msgKind{what: "event", id: name}, b)
}

// Delta is the difference between a twin's desired and reported state: the
// desired members the device has not reported yet (docs/PROTOCOL.md §8.1).
type Delta struct {
	// Version is the desired document's version.
	Version int64 `json:"version"`
	// State holds the differing members, as JSON values.
	State map[string]any `json:"delta"`
}

// OnDesired sets the function that receives the twin's delta whenever the
// desired state changes (and on every connection), over MQTT. Deltas are
// handed over one at a time, in order; a delta that arrives while the
// function runs replaces one still waiting, since each delta is the whole
// difference. Empty deltas are not handed over. The device acts on the
// delta and reports the state it reached with ReportState.
func (c *Client) OnDesired(f func(ctx context.Context, d Delta)) error {
	c.down.setDesired(f)
	c.tr.subscribe("desired")
	return nil
}

// Command is an action the hub asks the device to perform (docs/PROTOCOL.md
// §8.2).
type Command struct {
	ID        string          `json:"id"`
	Action    string          `json:"action"`
	Args      json.RawMessage `json:"args,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// Result is a command's outcome; make one with Succeeded or Failed.
type Result struct {
	Status string `json:"status"`
	Output any    `json:"output,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Succeeded is the result of a command carried out; output (may be nil) is
// checked against the action's output schema by the hub.
func Succeeded(output any) Result { return Result{Status: "succeeded", Output: output} }

// Failed is the result of a command that could not be carried out.
func Failed(reason string) Result { return Result{Status: "failed", Reason: reason} }

// OnCommand sets the function that carries out commands, over MQTT, and
// subscribes to them: before it is set, commands wait at the hub. Commands
// are handed over one at a time, in the order issued; the result is sent to
// the hub (again after a reconnect, until the hub acknowledged it). A
// command the hub delivers again (its acknowledgement was lost) is not
// carried out twice: its first result is sent again.
func (c *Client) OnCommand(f func(ctx context.Context, cmd Command) Result) error {
	c.down.setCommand(f)
	c.tr.subscribe("command")
	return nil
}

// Poll asks the hub for the twin's delta and the next command, for the
// functions set with OnDesired and OnCommand, and hands them over. Over
// CoAP a device that wakes without anything to send calls it; the client
// polls by itself after sending. Over MQTT it does nothing: the hub sends
// them as they come.
func (c *Client) Poll(ctx context.Context) error { return c.tr.poll(ctx) }

// LastExchange is when the hub last answered a request of this client over
// CoAP: a device that sleeps (PSM) stays reachable for its active timer
// after it, and then may sleep. Zero over MQTT, whose connection stays open.
func (c *Client) LastExchange() time.Time { return c.tr.lastExchange() }

// WaitConnected waits until the client has a connection to the hub, or ctx
// ends. Over CoAP (connectionless) it returns at once.
func (c *Client) WaitConnected(ctx context.Context) error {
	if c.mqtt == nil {
		return nil
	}
	_, err := c.mqtt.current(ctx)
	return err
}
