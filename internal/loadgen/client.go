package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// client is one MQTT connection, whichever library drives it.
type client interface {
	// publish sends one message and, for QoS 1 and 2, waits for its
	// acknowledgement.
	publish(ctx context.Context, topic string, qos byte, payload []byte) error
	// subscribe subscribes to filter; every message goes to the handler
	// given when connecting.
	subscribe(ctx context.Context, filter string, qos byte) error
	// done is closed when the connection is gone.
	done() <-chan struct{}
	disconnect()
}

// reasonError is a negative acknowledgement from the broker.
type reasonError struct {
	packet string // connack, puback, suback
	code   byte
	reason string
}

func (e *reasonError) Error() string {
	s := fmt.Sprintf("%s reason 0x%02x", e.packet, e.code)
	if e.reason != "" {
		s += ": " + e.reason
	}
	return s
}

// errKind classifies an error for Result.Errors.
func errKind(stage string, err error) string {
	var re *reasonError
	switch {
	case errors.As(err, &re):
		return fmt.Sprintf("%s_0x%02x", re.packet, re.code)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errTimeout), os.IsTimeout(err):
		return stage + "_timeout"
	case errors.Is(err, context.Canceled):
		return stage + "_canceled"
	}
	return stage
}

// retryable reports whether a failed connect may succeed when tried again:
// network errors and rate limits yes, refused credentials no.
func retryable(err error) bool {
	var re *reasonError
	if !errors.As(err, &re) {
		return !errors.Is(err, context.Canceled)
	}
	switch re.code {
	case 0x9F, 0x89, 0x88, 0x97, 0x03: // rate exceeded, busy, unavailable, quota; 3.1.1 unavailable
		return true
	}
	return false
}

var errTimeout = errors.New("timed out")

// dialer makes client sockets, binding them round-robin to source addresses.
type dialer struct {
	addr    string // host:port
	tls     *tls.Config
	src     []net.IP
	next    atomic.Uint64
	timeout time.Duration
}

// parseBroker splits a broker URL into whether it uses TLS and host:port.
func parseBroker(broker string) (useTLS bool, hostport string, err error) {
	u, err := url.Parse(broker)
	if err != nil || u.Host == "" {
		return false, "", fmt.Errorf("%w: broker %q: want tcp://host:port or ssl://host:port", ErrOptions, broker)
	}
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		useTLS, port = true, "8883"
	default:
		return false, "", fmt.Errorf("%w: broker %q: scheme %q (want tcp or ssl)", ErrOptions, broker, u.Scheme)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return useTLS, net.JoinHostPort(u.Hostname(), port), nil
}

func newDialer(o Options) (*dialer, error) {
	useTLS, hostport, err := parseBroker(o.Broker)
	if err != nil {
		return nil, err
	}
	d := &dialer{addr: hostport, timeout: o.Timeout}
	if useTLS {
		d.tls = o.TLS
		if d.tls == nil {
			d.tls = &tls.Config{}
		}
		if d.tls.ServerName == "" {
			d.tls = d.tls.Clone()
			d.tls.ServerName, _, _ = net.SplitHostPort(hostport)
		}
	}
	for _, s := range o.SourceAddrs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%w: source address %q", ErrOptions, s)
		}
		d.src = append(d.src, ip)
	}
	return d, nil
}

// netDialer returns the net.Dialer for the next socket.
func (d *dialer) netDialer() *net.Dialer {
	nd := &net.Dialer{Timeout: d.timeout, Control: dialControl}
	if len(d.src) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: d.src[(d.next.Add(1)-1)%uint64(len(d.src))]}
	}
	return nd
}

func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	nd := d.netDialer()
	if d.tls != nil {
		return (&tls.Dialer{NetDialer: nd, Config: d.tls}).DialContext(ctx, "tcp", d.addr)
	}
	return nd.DialContext(ctx, "tcp", d.addr)
}

// connectSpec is what one connection needs.
type connectSpec struct {
	clientID, username, password string
	protocol                     int
	keepAlive, timeout           time.Duration
	receiveMax                   uint16
	// onMessage, when set, receives every PUBLISH (the subscriber).
	onMessage func(topic string, payload []byte)
}

func connect(ctx context.Context, d *dialer, s connectSpec) (client, error) {
	if s.protocol == 3 {
		return connect3(ctx, d, s)
	}
	return connect5(ctx, d, s)
}

// v5 is an MQTT 5 connection driven by paho.golang.
type v5 struct{ c *paho.Client }

func connect5(ctx context.Context, d *dialer, s connectSpec) (client, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, err := d.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	cfg := paho.ClientConfig{
		ClientID:      s.clientID,
		Conn:          newBufConn(conn),
		PacketTimeout: s.timeout,
		OnClientError: func(error) {},
	}
	if s.onMessage != nil {
		h := s.onMessage
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			h(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	rm := s.receiveMax
	cp := &paho.Connect{
		ClientID:   s.clientID,
		CleanStart: true,
		KeepAlive:  uint16(s.keepAlive / time.Second),
		// The library allocates a receive queue of ReceiveMaximum
		// entries per client (65,535 by default): keep it small.
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm},
	}
	if s.username != "" {
		cp.Username, cp.UsernameFlag = s.username, true
	}
	if s.password != "" {
		cp.Password, cp.PasswordFlag = []byte(s.password), true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		if ca != nil && ca.ReasonCode >= 0x80 {
			re := &reasonError{packet: "connack", code: ca.ReasonCode}
			if ca.Properties != nil {
				re.reason = ca.Properties.ReasonString
			}
			return nil, re
		}
		_ = conn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &v5{c: c}, nil
}

func (v *v5) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	pr, err := v.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if pr != nil && pr.ReasonCode >= 0x80 {
		re := &reasonError{packet: "puback", code: pr.ReasonCode}
		if pr.Properties != nil {
			re.reason = pr.Properties.ReasonString
		}
		return re
	}
	return err
}

func (v *v5) subscribe(ctx context.Context, filter string, qos byte) error {
	sa, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa != nil && len(sa.Reasons) > 0 && sa.Reasons[0] >= 0x80 {
		re := &reasonError{packet: "suback", code: sa.Reasons[0]}
		if sa.Properties != nil {
			re.reason = sa.Properties.ReasonString
		}
		return re
	}
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	return nil
}

func (v *v5) done() <-chan struct{} { return v.c.Done() }

func (v *v5) disconnect() { _ = v.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) }

// v3 is an MQTT 3.1.1 connection driven by paho.mqtt.golang.
type v3 struct {
	c       mqtt3.Client
	timeout time.Duration
	lost    chan struct{}
	handler mqtt3.MessageHandler
}

func connect3(ctx context.Context, d *dialer, s connectSpec) (client, error) {
	v := &v3{timeout: s.timeout, lost: make(chan struct{})}
	opts := mqtt3.NewClientOptions().
		AddBroker("tcp://" + d.addr). // the connection comes from d, TLS included
		SetCustomOpenConnectionFn(func(*url.URL, mqtt3.ClientOptions) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, s.timeout)
			defer cancel()
			c, err := d.dial(ctx)
			if err != nil {
				return nil, err
			}
			// Buffered reads: the library reads each packet in pieces.
			return newBufConn(c), nil
		}).
		SetClientID(s.clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(s.keepAlive).
		SetConnectTimeout(s.timeout).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(mqtt3.Client, error) { close(v.lost) })
	if s.username != "" {
		opts.SetUsername(s.username)
	}
	if s.password != "" {
		opts.SetPassword(s.password)
	}
	if s.onMessage != nil {
		h := s.onMessage
		v.handler = func(_ mqtt3.Client, m mqtt3.Message) { h(m.Topic(), m.Payload()) }
	}
	v.c = mqtt3.NewClient(opts)
	tok := v.c.Connect()
	if !tok.WaitTimeout(s.timeout) {
		v.c.Disconnect(0)
		return nil, fmt.Errorf("connect: %w", errTimeout)
	}
	if err := tok.Error(); err != nil {
		if ct, ok := tok.(*mqtt3.ConnectToken); ok && ct.ReturnCode() != 0 {
			return nil, &reasonError{packet: "connack", code: ct.ReturnCode(), reason: err.Error()}
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	return v, nil
}

func (v *v3) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	tok := v.c.Publish(topic, qos, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(v.timeout):
		return fmt.Errorf("publish: %w", errTimeout)
	}
}

func (v *v3) subscribe(_ context.Context, filter string, qos byte) error {
	tok := v.c.Subscribe(filter, qos, v.handler)
	if !tok.WaitTimeout(v.timeout) {
		return fmt.Errorf("subscribe %s: %w", filter, errTimeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	if st, ok := tok.(*mqtt3.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				return &reasonError{packet: "suback", code: code}
			}
		}
	}
	return nil
}

func (v *v3) done() <-chan struct{} { return v.lost }

func (v *v3) disconnect() { v.c.Disconnect(20) }

var subscribers atomic.Int64

// subscriberID is a unique client id for a counting subscriber: a broker
// taking over the session of an earlier run's subscriber with the same id
// could drop the new subscription while tearing down the old one.
func subscriberID() string {
	return "wanwu-bench-sub-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-" + strconv.FormatInt(subscribers.Add(1), 10)
}
