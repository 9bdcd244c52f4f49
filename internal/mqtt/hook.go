package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/auth"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/presence"
	"github.com/wanwu-iot/wanwu/internal/ratelimit"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// errIdentityChanged ends the session of a device whose identity changed
// (revoked, quarantined, a key revoked or rotated): "not authorized", with
// a reason string that tells presence why.
var errIdentityChanged = packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: "identity changed"}

type sessionKind uint8

const (
	kindDevice sessionKind = iota + 1
	kindIntegration
	kindAnonymous
)

// session is what the hook knows about a connected client.
type session struct {
	kind        sessionKind
	code        string // device code
	tenant, id  string
	prefix      string // the device's own topic prefix
	quarantined bool
	model       *thingmodel.Model
	principal   auth.Principal // integrations
	publish     *rate.Limiter
	v5          bool
	// established: the session started (CONNACK sent), so that presence
	// hears of its end.
	established atomic.Bool

	mu       sync.Mutex
	commands *commandSink // while a subscription covers the commands topic
	detach   func()
}

// hook is wanwu's mochi hook.
type hook struct {
	mochi.HookBase
	s        *Server
	sessions sync.Map // *mochi.Client → *session

	connDevice *ratelimit.Keyed[string] // successful authentications, by device code
	connAddr   *ratelimit.Keyed[string] // CONNECTs, by source address
	failAddr   *ratelimit.Keyed[string] // failed authentications, by source address
	failCode   *ratelimit.Keyed[string] // failed authentications, by the code they named

	connects  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	published *prometheus.CounterVec
	clients   prometheus.GaugeFunc
}

func newHook(s *Server) (*hook, error) {
	l := s.opts.Limits
	h := &hook{
		s:          s,
		connDevice: ratelimit.New[string](l.ConnectPerDevice, l.ConnectPerDeviceBurst),
		connAddr:   ratelimit.New[string](l.ConnectPerAddr, l.ConnectPerAddrBurst),
		failAddr:   ratelimit.New[string](l.AuthFailuresPerAddr, l.AuthFailuresPerAddrBurst),
		failCode:   ratelimit.New[string](l.AuthFailuresPerDevice, l.AuthFailuresPerDeviceBurst),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_mqtt_connects_total", Help: "MQTT connect attempts by result (accepted, refused reason).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_mqtt_rejected_total", Help: "MQTT publishes and subscriptions refused, by reason.",
		}, []string{"reason"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_mqtt_accepted_total", Help: "Device messages accepted over MQTT, by kind.",
		}, []string{"kind"}),
	}
	h.clients = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wanwu_mqtt_clients", Help: "Connected MQTT clients.",
	}, func() float64 { return float64(atomic.LoadInt64(&s.broker.Info.ClientsConnected)) })
	// Deliveries the broker gave up on: QoS 1/2 ones to a client already
	// holding the most unacknowledged and queued messages it may, QoS 0 ones
	// to a client whose queue of unwritten packets was full. The hub has the
	// messages (JetStream, the stores); the subscriber missed them live.
	dropped := func(reason string, n *int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wanwu_mqtt_deliveries_dropped_total", Help: "Messages not delivered to a slow subscriber, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(atomic.LoadInt64(n)) })
	}
	if reg := s.opts.Metrics; reg != nil {
		for _, c := range []prometheus.Collector{h.connects, h.rejected, h.published, h.clients,
			dropped("queue_full", &s.broker.Info.InflightDropped), dropped("writes_pending", &s.broker.Info.MessagesDropped)} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

func (h *hook) ID() string { return "wanwu" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnACLCheck,
		mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnPublish, mochi.OnDisconnect,
		mochi.OnClientExpired, mochi.OnWill, mochi.OnQosPublish, mochi.OnQosComplete,
	}, []byte{b})
}

func (h *hook) session(cl *mochi.Client) *session {
	if v, ok := h.sessions.Load(cl); ok {
		return v.(*session)
	}
	return nil
}

// refuse answers a CONNECT with a reason code and ends the connection.
func (h *hook) refuse(cl *mochi.Client, c packets.Code, result string, args ...any) error {
	h.connects.WithLabelValues(result).Inc()
	level := slog.LevelInfo
	if c == packets.ErrConnectionRateExceeded {
		level = slog.LevelDebug // a flood would flood the log; counted above
	}
	h.s.log.Log(context.Background(), level, "mqtt connect refused", append([]any{"reason", result, "client", cl.ID, "remote", cl.Net.Remote}, args...)...)
	if cl.Properties.ProtocolVersion < 5 {
		// MQTT 3.1.1 has six return codes (§3.2.2.3) and mochi passes most
		// MQTT 5 codes through unchanged; where none applies (rate limits)
		// the connection is closed without a CONNACK [MQTT-3.2.2-6] (3.1.1).
		if rc, ok := v3ReturnCodes[c.Code]; ok {
			_ = h.s.broker.SendConnack(cl, packets.Code{Code: rc}, false, nil)
		}
		return c
	}
	_ = h.s.broker.SendConnack(cl, c, false, nil)
	return c
}

// failed refuses a CONNECT whose credentials did not authenticate (or
// whose identity is not admitted) and charges the failure to its source
// address and, when it named one, to the device code: once the code's
// failure budget is spent, failures naming it are answered 0x9F, so a
// guesser spread over many addresses gets no answer about its guesses more
// often than the budget allows. The device's own connect budget is not
// touched: valid credentials pass whatever others sent in its name.
func (h *hook) failed(cl *mochi.Client, host, named string, now time.Time, c packets.Code, result string, args ...any) error {
	h.failAddr.Allow(host, now)
	if named != "" {
		args = append(args, "device", named)
		if !h.failCode.Allow(named, now) {
			return h.refuse(cl, packets.ErrConnectionRateExceeded, "rate_limited_device_failures", args...)
		}
	}
	return h.refuse(cl, c, result, args...)
}

// v3ReturnCodes maps the MQTT 5 CONNACK reason codes the hook uses to
// MQTT 3.1.1 return codes.
var v3ReturnCodes = map[byte]byte{
	packets.ErrNotAuthorized.Code:            packets.Err3NotAuthorized.Code,
	packets.ErrBadUsernameOrPassword.Code:    packets.ErrMalformedUsernameOrPassword.Code,
	packets.ErrClientIdentifierNotValid.Code: packets.Err3ClientIdentifierNotValid.Code,
	packets.ErrServerUnavailable.Code:        packets.Err3ServerUnavailable.Code,
}

// OnConnect authenticates and admits the client before the session starts;
// refusing here lets the CONNACK carry the precise reason code.
//
// The work runs on a goroutine of its own: verifying signatures and reading
// the registry needs a deep stack, and a goroutine's stack does not shrink
// back while it lives. Done on the connection's goroutine, which lives as long
// as the connection, it left every idle device holding a grown stack (and
// raised the size new goroutines start with), most of the hub's memory per
// idle connection.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	errc := make(chan error, 1)
	go func() { errc <- h.connect(cl, pk) }()
	return <-errc
}

func (h *hook) connect(cl *mochi.Client, pk packets.Packet) error {
	now := time.Now()
	host, _, _ := net.SplitHostPort(cl.Net.Remote)
	if !h.connAddr.Allow(host, now) {
		return h.refuse(cl, packets.ErrConnectionRateExceeded, "rate_limited_addr")
	}
	// An address that has spent its failed authentications is refused
	// before any work is done for it; others are not affected.
	if cl.Net.Listener != ListenerDev && h.failAddr.Blocked(host, now) {
		return h.refuse(cl, packets.ErrConnectionRateExceeded, "rate_limited_addr_failures")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v5 := cl.Properties.ProtocolVersion == 5

	if cl.Net.Listener == ListenerDev {
		sess := &session{kind: kindAnonymous, v5: v5}
		if err := h.admitClient(cl, pk, sess); err != nil {
			return err
		}
		h.sessions.Store(cl, sess)
		h.connects.WithLabelValues("accepted_anonymous").Inc()
		return nil
	}

	var cert *x509.Certificate
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if pcs := tc.ConnectionState().PeerCertificates; len(pcs) > 0 {
			cert = pcs[0]
		}
	}
	username, password := string(pk.Connect.Username), string(pk.Connect.Password)
	if cert == nil && strings.HasPrefix(password, auth.Prefix) {
		p, err := h.s.opts.Registry.Authenticate(ctx, password)
		if err != nil {
			return h.failed(cl, host, "", now, packets.ErrNotAuthorized, "bad_api_token")
		}
		sess := &session{kind: kindIntegration, principal: p, v5: v5}
		if err := h.admitClient(cl, pk, sess); err != nil {
			return err
		}
		h.sessions.Store(cl, sess)
		h.connects.WithLabelValues("accepted_integration").Inc()
		return nil
	}
	if cert == nil && password == "" {
		return h.failed(cl, host, "", now, packets.ErrNotAuthorized, "no_credentials")
	}
	claimed := username
	if cert != nil {
		claimed = "" // the certificate names the device
	} else if _, err := code.Parse(claimed); err != nil {
		return h.failed(cl, host, "", now, packets.ErrBadUsernameOrPassword, "bad_username")
	}
	adm, err := h.s.opts.Registry.AuthenticateDevice(ctx, cert, claimed, password)
	if err != nil {
		if errors.Is(err, registry.ErrDeviceAuth) {
			return h.failed(cl, host, claimed, now, packets.ErrNotAuthorized, "bad_credentials", "err", err)
		}
		return h.refuse(cl, packets.ErrServerUnavailable, "registry_unavailable", "err", err)
	}
	switch adm.Status {
	case registry.StatusActive, registry.StatusQuarantined:
	default:
		named := claimed
		if named == "" && adm.Object != nil {
			named = adm.Object.Code
		}
		return h.failed(cl, host, named, now, packets.ErrNotAuthorized, "admission_"+adm.Status, "why", adm.Reason)
	}
	obj := adm.Object
	deviceCode := obj.Code
	// Only a device that proved who it is spends its own connect budget.
	if !h.connDevice.Allow(deviceCode, now) {
		return h.refuse(cl, packets.ErrConnectionRateExceeded, "rate_limited_device", "device", deviceCode)
	}
	// The client id is the code, so no device can take over another's session.
	switch {
	case pk.Connect.ClientIdentifier == "" && v5:
		cl.ID = deviceCode
		cl.Properties.Props.AssignedClientID = deviceCode
	case cl.ID != deviceCode:
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, "client_id_not_code", "device", deviceCode, "client_id", cl.ID)
	}
	c, _ := code.Parse(deviceCode)
	m, err := h.s.opts.Registry.ModelOf(ctx, obj)
	if err != nil {
		return h.refuse(cl, packets.ErrServerUnavailable, "registry_unavailable", "err", err)
	}
	sess := &session{
		kind: kindDevice, code: deviceCode, tenant: c.Namespace, id: c.Local,
		prefix: devicePrefix(c.Namespace, c.Local), quarantined: adm.Status == registry.StatusQuarantined,
		model: m, publish: rate.NewLimiter(h.s.opts.Limits.PublishPerDevice, h.s.opts.Limits.PublishPerDeviceBurst), v5: v5,
	}
	// A will may only announce the device's own status: anything else would
	// let a device publish unchecked data or speak for another device.
	if pk.Connect.WillFlag && !h.willAllowed(sess, pk.Connect.WillTopic) {
		return h.refuse(cl, packets.ErrNotAuthorized, "will_topic", "device", deviceCode, "topic", pk.Connect.WillTopic)
	}
	if !h.mayTakeOver(cl, sess) {
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, "session_of_another", "device", deviceCode)
	}
	h.sessions.Store(cl, sess)
	h.connects.WithLabelValues("accepted_" + adm.Status).Inc()
	return nil
}

// connectionEnded is the broker's connection error handler: a connection
// that ended on malformed traffic or an oversized packet is counted by
// cause and logged, rate-limited (package protoerr). Other ends (the
// network, a refused CONNECT, counted in wanwu_mqtt_connects_total) are
// not protocol errors.
func (h *hook) connectionEnded(cl *mochi.Client, err error) {
	cause, ok := protocolErrorCause(err)
	if !ok {
		h.s.log.Debug("mqtt connection ended", "client", cl.ID, "remote", cl.Net.Remote, "err", err)
		return
	}
	h.s.opts.ProtocolErrors.Record("mqtt", cause, cl.Net.Remote, err)
}

// protocolErrorCause names the protocol error a connection ended with.
func protocolErrorCause(err error) (string, bool) {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return "malformed", true // not TLS at all (on the TLS listener)
	}
	var c packets.Code
	if !errors.As(err, &c) {
		return "", false
	}
	switch c.Code {
	case packets.ErrMalformedPacket.Code:
		return "malformed", true
	case packets.ErrProtocolViolation.Code:
		return "protocol_violation", true
	case packets.ErrUnsupportedProtocolVersion.Code:
		return "unsupported_protocol_version", true
	case packets.ErrReceiveMaximum.Code:
		return "receive_maximum_exceeded", true
	case packets.ErrTopicAliasInvalid.Code:
		return "topic_alias_invalid", true
	case packets.ErrPacketTooLarge.Code:
		return "packet_too_large", true
	}
	return "", false
}

// admitClient applies to integrations and anonymous clients what the code
// check applies to devices: their client id cannot be a device code, so
// they cannot take over (or squat on) a device's session; they cannot take
// over a session of another identity; and a will must be one they could
// publish themselves (integrations publish nothing).
func (h *hook) admitClient(cl *mochi.Client, pk packets.Packet, sess *session) error {
	if _, err := code.Parse(cl.ID); err == nil {
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, "client_id_is_a_code", "client_id", cl.ID)
	}
	if pk.Connect.WillFlag && !h.willAllowed(sess, pk.Connect.WillTopic) {
		return h.refuse(cl, packets.ErrNotAuthorized, "will_topic", "topic", pk.Connect.WillTopic)
	}
	if !h.mayTakeOver(cl, sess) {
		return h.refuse(cl, packets.ErrClientIdentifierNotValid, "session_of_another", "client_id", cl.ID)
	}
	return nil
}

// willAllowed reports whether a session may leave a will on topic: a device
// only its own status, an anonymous client within the development ACL, an
// integration nothing.
func (h *hook) willAllowed(s *session, topic string) bool {
	switch s.kind {
	case kindDevice:
		return topic == s.prefix+KindStatus
	case kindAnonymous:
		return h.allowed(s, topic, true)
	}
	return false
}

// mayTakeOver reports whether the connecting client may take over the
// session its client id names, if there is one: only the same device, an
// integration of the same tenant, or another anonymous client. Otherwise
// the session's queued messages, which were authorized for its owner, would
// be resent to the newcomer.
func (h *hook) mayTakeOver(cl *mochi.Client, s *session) bool {
	existing, ok := h.s.broker.Clients.Get(cl.ID)
	if !ok {
		return true
	}
	old := h.session(existing)
	if old == nil || old.kind != s.kind {
		return old == nil
	}
	switch s.kind {
	case kindDevice:
		return old.code == s.code
	case kindIntegration:
		return old.principal.Tenant == s.principal.Tenant
	}
	return true
}

// OnConnectAuthenticate admits what OnConnect accepted.
func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return h.session(cl) != nil
}

// OnSessionEstablish forgets the session entry of a connection that the new
// one replaces (resumed or discarded, the old connection is gone).
func (h *hook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if existing, ok := h.s.broker.Clients.Get(cl.ID); ok && existing != cl {
		if old := h.session(existing); old != nil {
			h.sessionEnded(old, presence.ReasonTakenOver)
		}
		h.sessions.Delete(existing)
	}
}

// sessionEnded tells presence, once, that a device's session ended.
func (h *hook) sessionEnded(s *session, reason string) {
	if s.kind == kindDevice && h.s.opts.Presence != nil && s.established.CompareAndSwap(true, false) {
		h.s.opts.Presence.Disconnected(s.code, s.tenant, "mqtt", reason)
	}
}

// OnDisconnect forgets a client whose session ends with its connection. A
// session that outlives it (MQTT 5 Session Expiry > 0, MQTT 3.1.1 clean
// session 0) keeps its authorization, so that QoS 1/2 messages for its
// subscriptions are queued while it is away ([MQTT-3.1.2-23], [MQTT-3.1.2-5]
// (3.1.1)); the broker checks every delivery against it.
func (h *hook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	h.s.opts.Usage.Release(netuse.MeterOf(cl.Net.Conn))
	if s := h.session(cl); s != nil {
		s.stopCommands()
		h.sessionEnded(s, endReason(cl, err))
	}
	if expire || cl.IsTakenOver() {
		h.sessions.Delete(cl)
	}
}

// endReason names, for presence, why a device's connection ended: the
// first cause its client was stopped with, else the error its connection
// ended on.
func endReason(cl *mochi.Client, err error) string {
	if cl.IsTakenOver() {
		return presence.ReasonTakenOver
	}
	if c := cl.StopCause(); c != nil {
		err = c
	}
	var code packets.Code
	var rej *ingest.Rejection
	switch {
	case err == nil:
		return presence.ReasonClean
	case errors.As(err, &code):
		switch {
		case code == errIdentityChanged:
			return presence.ReasonRevoked
		case code.Code == packets.CodeDisconnect.Code || code.Code == packets.CodeDisconnectWillMessage.Code:
			return presence.ReasonClean
		case code.Code == packets.ErrServerShuttingDown.Code:
			return presence.ReasonShutdown
		case code.Code == packets.ErrConnectionRateExceeded.Code || code.Code == packets.ErrQuotaExceeded.Code:
			return presence.ReasonRateLimited
		}
		if _, ok := protocolErrorCause(err); ok {
			return presence.ReasonProtocolError
		}
		return presence.ReasonNetwork
	case errors.As(err, &rej):
		if rej.Reason == ingest.RateLimited {
			return presence.ReasonRateLimited
		}
		return presence.ReasonRefused
	case errors.Is(err, os.ErrDeadlineExceeded):
		return presence.ReasonKeepAlive
	}
	if _, ok := protocolErrorCause(err); ok {
		return presence.ReasonProtocolError
	}
	return presence.ReasonNetwork
}

// OnClientExpired forgets a session whose expiry interval has passed.
func (h *hook) OnClientExpired(cl *mochi.Client) {
	h.sessions.Delete(cl)
}

// OnWill drops a will that OnConnect would not have allowed (defence in
// depth). An error would make mochi publish the will unchanged, so a
// dropped will becomes one without a topic, which matches no subscription.
func (h *hook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if s := h.session(cl); s == nil || !h.willAllowed(s, will.TopicName) {
		h.rejected.WithLabelValues("will_topic").Inc()
		return mochi.Will{}, nil
	}
	return will, nil
}

// OnSubscribe turns a shared-subscription filter with an empty share name,
// which mochi would accept, into one it refuses as invalid (SUBACK 0x8F):
// the share name must be at least one character [MQTT-4.8.2-1].
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	for i, f := range pk.Filters {
		if strings.HasPrefix(f.Filter, "$share//") {
			pk.Filters[i].Filter = "$share/"
		}
	}
	return pk
}

// OnACLCheck authorizes a publish (write) to a topic or a subscription (read) to a filter.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	s := h.session(cl)
	if s == nil {
		return false
	}
	if write && topic == "" && (s.kind == kindDevice || s.kind == kindAnonymous) {
		// An MQTT 5 PUBLISH by topic alias alone: mochi checks the ACL before
		// resolving the alias; OnPublish checks the topic it stands for.
		return true
	}
	ok := h.allowed(s, topic, write)
	if !ok {
		h.rejected.WithLabelValues("not_authorized").Inc()
	}
	return ok
}

func (h *hook) allowed(s *session, topic string, write bool) bool {
	switch s.kind {
	case kindAnonymous:
		for _, f := range h.s.opts.DevACL {
			if (write && matchFilter(f, topic)) || (!write && filterCovered(f, stripShare(topic))) {
				return true
			}
		}
		return false
	case kindIntegration:
		if write {
			return false
		}
		filter := stripShare(topic)
		if s.principal.Tenant == "" {
			return strings.HasPrefix(filter, root) || filter == "wanwu/#" || filter == "wanwu/+/#"
		}
		tenant, ok := tenantOfFilter(filter)
		return ok && tenant == s.principal.Tenant
	case kindDevice:
		if write {
			t, err := ParseTopic(topic)
			if err != nil || t.Tenant != s.tenant || t.ID != s.id {
				return false
			}
			if r, ok := requestOf(t); ok {
				return s.mayPublishRequest(r)
			}
			return !s.quarantined && (t.Kind == KindTelemetry || t.Kind == KindEvent || t.Kind == KindStatus)
		}
		filter := stripShare(topic)
		if !filterWithin(filter, s.prefix) {
			return false
		}
		if s.quarantined {
			rest := filter[len(s.prefix):]
			return rest == KindErrors || strings.HasPrefix(rest, KindOTA+"/") || strings.HasPrefix(rest, KindCommands+"/")
		}
		return true
	}
	return false
}

// verdict is what examine decided about a publish: data to make durable
// (msg), a request for the hub to answer (req), or neither, in which case
// err is the answer for the broker (nil: relay the publish as it is).
type verdict struct {
	// up is the upload to accept, when ok; held by value, as a pointer it
	// moved every message to the heap.
	up  adapter.Upload
	ok  bool
	req *deviceRequest
	s   *session
	err error
}

// examine authorizes, rate-limits, decodes and validates a publish. It
// reads pk and does not keep it.
func (h *hook) examine(cl *mochi.Client, pk *packets.Packet) verdict {
	if cl.Net.Inline {
		return verdict{}
	}
	s := h.session(cl)
	if s == nil {
		return verdict{err: packets.ErrRejectPacket}
	}
	if pk.Properties.TopicAliasFlag {
		if pk.TopicName == "" {
			// An alias this connection never mapped [MQTT-3.3.2-7].
			h.rejected.WithLabelValues("topic_alias").Inc()
			_ = h.s.broker.DisconnectClient(cl, packets.ErrProtocolViolation)
			return verdict{s: s, err: packets.ErrRejectPacket}
		}
		if !h.allowed(s, pk.TopicName, true) {
			h.rejected.WithLabelValues("not_authorized").Inc()
			return verdict{s: s, err: h.refusePublish(cl, s, pk, packets.ErrNotAuthorized)}
		}
	}
	if s.kind != kindDevice {
		return verdict{s: s}
	}
	t, perr := ParseTopic(pk.TopicName)
	if perr != nil {
		return verdict{s: s}
	}
	if rq, ok := requestOf(t); ok {
		if !s.publish.Allow() {
			return verdict{s: s, err: h.reject(cl, s, pk, &ingest.Rejection{Reason: ingest.RateLimited, Message: "over the per-device publish rate"}, false)}
		}
		r := rq // declared here, so that only a request moves one to the heap
		return verdict{req: &r, s: s}
	}
	if t.Kind != KindTelemetry && t.Kind != KindEvent {
		return verdict{s: s} // status messages are relayed, not stored
	}
	if !s.publish.Allow() {
		return verdict{s: s, err: h.reject(cl, s, pk, &ingest.Rejection{Reason: ingest.RateLimited, Message: "over the per-device publish rate"}, false)}
	}
	v := verdict{ok: true, s: s, up: adapter.Upload{
		Device: ingest.Device{Code: s.code, Tenant: s.tenant, Model: s.model},
		Source: "mqtt", Topic: pk.TopicName, ContentType: pk.Properties.ContentType, Payload: pk.Payload,
	}}
	if t.Kind == KindEvent {
		v.up.Event = t.Rest
	}
	return v
}

// OnPublish handles what the asynchronous path (OnPublishAsync, installed
// for every QoS 1/2 publish) does not: QoS 0 publishes, handed over without
// waiting, and the inline client's.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	v := h.examine(cl, &pk)
	if v.req != nil {
		// Nobody waits for an answer at QoS 0; a refusal still reaches an
		// MQTT 3.1.1 device's errors topic and the dead letters.
		req, r, s := pk, v.req, v.s // only this branch moves a copy to the heap
		serve := func() {
			if _, rej := h.serveRequest(s, *r, &req); rej != nil {
				_ = h.reject(cl, s, &req, rej, rej.Reason != ingest.Unavailable)
			}
		}
		if !h.s.g.Go(serve) {
			serve() // stopping: its context is done, so it ends at once
		}
		return pk, nil
	}
	if !v.ok {
		return pk, v.err
	}
	rej, queued := h.s.opts.Intake.AcceptNoWait(&v.up)
	switch {
	case rej != nil:
		return pk, h.answer(cl, v.s, &pk, rej, true)
	case !queued:
		h.rejected.WithLabelValues("qos0_dropped").Inc()
	}
	h.published.WithLabelValues(kindOf(&v.up)).Inc()
	return pk, nil
}

// OnPublishAsync takes QoS 1/2 publishes (the broker's AsyncPublisher): the
// connection goes on reading while the message is made durable, and the
// broker sends the PUBACK/PUBREC, in order, when done is called. pk is the
// broker's own copy, valid until done: working on it instead of a copy
// keeps the per-message allocations small.
func (h *hook) OnPublishAsync(cl *mochi.Client, pk *packets.Packet, done func(error)) {
	v := h.examine(cl, pk)
	if v.req != nil {
		// Twin reports and command results are written to the metadata
		// database (durable before the acknowledgement) off the reading
		// goroutine, like telemetry.
		r, s := v.req, v.s
		serve := func() {
			note, rej := h.serveRequest(s, *r, pk)
			if rej != nil {
				done(h.reject(cl, s, pk, rej, rej.Reason != ingest.Unavailable))
				return
			}
			h.published.WithLabelValues(r.kind).Inc()
			if note != "" {
				done(mochi.SuccessNote(note)) // PUBACK 0x00 with the note as its reason string
				return
			}
			done(nil)
		}
		if !h.s.g.Go(serve) {
			serve() // stopping: its context is done, so it ends at once
		}
		return
	}
	if !v.ok {
		done(v.err)
		return
	}
	h.s.opts.Intake.Accept(&v.up, &pending{h: h, cl: cl, s: v.s, pk: pk, done: done, event: v.up.Event != ""})
}

// pending is a publish waiting for the intake's answer: one allocation
// per message.
type pending struct {
	adapter.Pending
	h     *hook
	cl    *mochi.Client
	s     *session
	pk    *packets.Packet
	done  func(error)
	event bool
}

// Answer turns the intake's answer into the broker's: the publish stands,
// or the device is told why not.
func (a *pending) Answer(rej *ingest.Rejection, kept bool) {
	if rej != nil {
		a.done(a.h.answer(a.cl, a.s, a.pk, rej, kept))
		return
	}
	kind := KindTelemetry
	if a.event {
		kind = KindEvent
	}
	a.h.published.WithLabelValues(kind).Inc()
	a.done(nil)
}

func kindOf(u *adapter.Upload) string {
	if u.Event != "" {
		return KindEvent
	}
	return KindTelemetry
}

// reject answers a publish the hook itself refused (a rate limit, a twin
// report or command result the service refused), kept as a dead letter
// when keep says so.
func (h *hook) reject(cl *mochi.Client, s *session, pk *packets.Packet, rej *ingest.Rejection, keep bool) error {
	if keep {
		h.s.opts.Intake.Keep(&adapter.Upload{
			Device: ingest.Device{Code: s.code, Tenant: s.tenant}, Source: "mqtt", Topic: pk.TopicName,
			ContentType: pk.Properties.ContentType, Payload: pk.Payload,
		}, rej)
	}
	return h.answer(cl, s, pk, rej, keep)
}

// answer answers a refused publish: MQTT 5 gets a PUBACK reason code and
// string; MQTT 3.1.1, which has no negative PUBACK, gets the reason on the
// device's errors topic (and, when the message was not kept, a disconnect
// so the device resends later).
func (h *hook) answer(cl *mochi.Client, s *session, pk *packets.Packet, rej *ingest.Rejection, kept bool) error {
	h.rejected.WithLabelValues(string(rej.Reason)).Inc()
	if !s.v5 {
		body, _ := json.Marshal(map[string]any{"reason": rej.Reason, "message": rej.Message, "topic": pk.TopicName, "packet_id": pk.PacketID})
		_ = h.s.broker.Publish(s.prefix+KindErrors, body, false, 0)
		if !kept {
			// Not stored anywhere (hub unavailable, rate limit): withhold the
			// PUBACK and close, so the device resends after reconnecting.
			cl.Stop(errors.New(rej.Error()))
			return packets.ErrRejectPacket
		}
		// Kept as a dead letter: acknowledge so the device does not resend
		// forever, and do not relay it to subscribers.
		return packets.CodeSuccessIgnore
	}
	return h.refusePublish(cl, s, pk, packets.Code{Code: rej.Reason.MQTTCode(), Reason: truncate(rej.Error(), 256)})
}

// refusePublish answers a refused MQTT 5 PUBLISH: QoS 0 is dropped, QoS 1
// gets a PUBACK with the reason, QoS 2 a PUBREC with it, which ends the
// exchange [MQTT-3.3.4-1] [MQTT-4.3.3-9].
func (h *hook) refusePublish(cl *mochi.Client, s *session, pk *packets.Packet, c packets.Code) error {
	switch {
	case !s.v5:
		// Only alias checks get here, and 3.1.1 has no aliases.
		cl.Stop(c)
		return packets.ErrRejectPacket
	case pk.FixedHeader.Qos == 0:
		return packets.ErrRejectPacket
	}
	// The broker answers QoS 1 with a PUBACK and QoS 2 with a PUBREC carrying
	// the reason, in order with the connection's other acknowledgements.
	return c
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
