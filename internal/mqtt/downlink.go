package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// Twin and command topics under a device's prefix (docs/PROTOCOL.md §1.2).
const (
	twinReported = KindTwin + "/reported" // device → hub: merge patch of reported state
	twinGet      = KindTwin + "/get"      // device → hub: ask for desired and delta now
	twinDesired  = KindTwin + "/desired"  // hub → device: {"version","desired"}
	twinDelta    = KindTwin + "/delta"    // hub → device: {"version","delta"}
	resultSuffix = "/result"              // commands/<id>/result: device → hub
)

// maxRequestPayload bounds a twin report or command result: twin sections
// are limited to a few KiB, so a larger request is refused before parsing.
const maxRequestPayload = 64 << 10

// deviceRequest is a device publish that the hub answers itself: a twin
// report or get, or a command result.
type deviceRequest struct {
	kind string // twinReported, twinGet, resultSuffix
	id   string // the command id of a result
}

// requestOf classifies a device topic's twin and command parts; ok is false
// for topics that are not requests.
func requestOf(t Topic) (deviceRequest, bool) {
	switch t.Kind {
	case KindTwin:
		switch t.Rest {
		case "reported":
			return deviceRequest{kind: twinReported}, true
		case "get":
			return deviceRequest{kind: twinGet}, true
		}
	case KindCommands:
		if id, ok := strings.CutSuffix(t.Rest, resultSuffix); ok && id != "" && !strings.Contains(id, "/") {
			return deviceRequest{kind: resultSuffix, id: id}, true
		}
	}
	return deviceRequest{}, false
}

// mayPublishRequest reports whether a device may publish the request.
// Quarantined devices may still answer commands: remediation needs results.
func (s *session) mayPublishRequest(r deviceRequest) bool {
	return !s.quarantined || r.kind == resultSuffix
}

// serveRequest answers a device request; a nil rejection means accepted,
// with what the acknowledgement should say when the request is accepted
// but not as the device meant it (a late command result).
func (h *hook) serveRequest(s *session, r deviceRequest, pk *packets.Packet) (note string, rej *ingest.Rejection) {
	ctx, cancel := context.WithTimeout(h.s.ctx, 10*time.Second)
	defer cancel()
	if h.s.opts.Presence != nil {
		h.s.opts.Presence.Seen(s.code, s.tenant, "mqtt")
	}
	if len(pk.Payload) > maxRequestPayload {
		return "", &ingest.Rejection{Reason: ingest.TooLarge, Message: "request payload over 64 KiB"}
	}
	switch r.kind {
	case twinReported:
		if h.s.opts.Twins == nil {
			return "", &ingest.Rejection{Reason: ingest.Unavailable, Message: "twins are not served by this hub"}
		}
		if _, err := h.s.opts.Twins.Report(ctx, s.code, pk.Payload); err != nil {
			return "", twinRejection(err)
		}
	case twinGet:
		if h.s.opts.Twins == nil {
			return "", &ingest.Rejection{Reason: ingest.Unavailable, Message: "twins are not served by this hub"}
		}
		h.s.g.Go(func() { h.s.pushTwin(s.code) })
	case resultSuffix:
		if h.s.opts.Commands == nil {
			return "", &ingest.Rejection{Reason: ingest.Unavailable, Message: "commands are not served by this hub"}
		}
		res, err := command.DecodeResult(pk.Payload)
		if err != nil {
			return "", &ingest.Rejection{Reason: ingest.Malformed, Message: err.Error()}
		}
		c, err := h.s.opts.Commands.Result(ctx, s.code, r.id, res)
		if errors.Is(err, command.ErrFinished) && c != nil {
			// A late result, recorded; resending would not help.
			return "late_result: recorded; command " + r.id + " had already ended as " + string(c.Status), nil
		}
		if err != nil {
			if errors.Is(err, command.ErrNotFound) {
				return "", &ingest.Rejection{Reason: ingest.NotAuthorized, Message: "no command " + r.id + " for this device"}
			}
			if errors.Is(err, command.ErrInvalid) {
				return "", &ingest.Rejection{Reason: ingest.Malformed, Message: err.Error()}
			}
			h.s.log.Warn("command result not stored", "device", s.code, "command", r.id, "err", err)
			return "", &ingest.Rejection{Reason: ingest.Unavailable, Message: "the hub could not store the result; retry"}
		}
	}
	return "", nil
}

// twinRejection maps a twin error to the protocol's reasons.
func twinRejection(err error) *ingest.Rejection {
	switch {
	case errors.Is(err, twin.ErrTooLarge):
		return &ingest.Rejection{Reason: ingest.TooLarge, Message: err.Error()}
	case errors.Is(err, twin.ErrInvalid):
		return &ingest.Rejection{Reason: ingest.Malformed, Message: err.Error()}
	case errors.Is(err, twin.ErrNotFound):
		return &ingest.Rejection{Reason: ingest.NotAuthorized, Message: err.Error()}
	}
	return &ingest.Rejection{Reason: ingest.Unavailable, Message: "the hub could not store the twin; retry"}
}

// twinMessage is what the hub publishes on twin/desired and twin/delta.
type twinMessage struct {
	Version int64          `json:"version"`
	Desired map[string]any `json:"desired,omitempty"`
	Delta   map[string]any `json:"delta,omitempty"`
}

// PushTwin publishes a device's desired state and delta to its twin topics
// (QoS 1): the hub calls it when the desired state changed, and the hook
// when the device subscribes or asks. A device that is away with a
// persistent session gets them queued; one without gets them when it
// subscribes again.
func (s *Server) PushTwin(code string) { s.pushTwin(code) }

// TwinChanged is PushTwin, for adapter.Adapter.
func (s *Server) TwinChanged(code string) { s.pushTwin(code) }

func (s *Server) pushTwin(code string) {
	if s.opts.Twins == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	t, err := s.opts.Twins.Get(ctx, code)
	if err != nil {
		s.log.Warn("twin not pushed", "device", code, "err", err)
		return
	}
	prefix := prefixOfCode(code)
	if prefix == "" {
		return
	}
	desired, _ := json.Marshal(twinMessage{Version: t.Version, Desired: nonNilMap(t.Desired)})
	delta, _ := json.Marshal(twinMessage{Version: t.Version, Delta: nonNilMap(t.Delta())})
	if err := s.broker.Publish(prefix+twinDesired, desired, false, 1); err != nil {
		s.log.Warn("twin not pushed", "device", code, "err", err)
	}
	if err := s.broker.Publish(prefix+twinDelta, delta, false, 1); err != nil {
		s.log.Warn("twin delta not pushed", "device", code, "err", err)
	}
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func prefixOfCode(c string) string {
	tenant, id, ok := strings.Cut(c, ":")
	if !ok {
		return ""
	}
	return devicePrefix(tenant, id)
}

// commandMessage is what a device receives on commands/<id>.
type commandMessage struct {
	ID        string          `json:"id"`
	Action    string          `json:"action"`
	Args      json.RawMessage `json:"args,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// commandSink delivers one connection's commands. A QoS 0 subscription has
// no acknowledgement, so delivery is confirmed when the message is handed
// to the connection; otherwise the device's PUBACK (or PUBCOMP) confirms it.
type commandSink struct {
	s    *Server
	cl   *mochi.Client
	code string
	qos  byte

	mu      sync.Mutex
	pending map[uint16]string // outbound packet id → command id
}

func (k *commandSink) Deliver(c *command.Command) error {
	body, err := json.Marshal(commandMessage{ID: c.ID, Action: c.Action, Args: c.Args, ExpiresAt: c.ExpiresAt})
	if err != nil {
		return err
	}
	if err := k.s.broker.Publish(prefixOfCode(k.code)+KindCommands+"/"+c.ID, body, false, 1); err != nil {
		return err
	}
	if k.qos == 0 {
		go k.confirm(c.ID)
	}
	return nil
}

func (k *commandSink) confirm(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.s.opts.Commands.Delivered(ctx, k.code, id); err != nil && !errors.Is(err, command.ErrNotFound) && !errors.Is(err, command.ErrFinished) {
		k.s.log.Warn("command delivery not recorded", "device", k.code, "command", id, "err", err)
	}
}

// sent remembers which packet id carries which command to this connection.
func (k *commandSink) sent(pk packets.Packet) {
	t, err := ParseTopic(pk.TopicName)
	if err != nil || t.Kind != KindCommands || t.Code() != k.code || strings.Contains(t.Rest, "/") {
		return
	}
	k.mu.Lock()
	k.pending[pk.PacketID] = t.Rest
	k.mu.Unlock()
}

func (k *commandSink) acknowledged(id uint16) {
	k.mu.Lock()
	cid, ok := k.pending[id]
	delete(k.pending, id)
	k.mu.Unlock()
	if ok {
		go k.confirm(cid)
	}
}

// commandFilterQoS returns the QoS of the first filter among subs that
// covers a command topic of the device (a filter like commands/# or
// commands/+), and whether there is one.
func commandFilterQoS(prefix string, subs []packets.Subscription) (byte, bool) {
	probe := prefix + KindCommands + "/x"
	for _, sub := range subs {
		f := stripShare(sub.Filter)
		if matchFilter(f, probe) {
			return sub.Qos, true
		}
	}
	return 0, false
}

// twinFilterCovered reports whether a filter among subs receives twin pushes.
func twinFilterCovered(prefix string, subs []packets.Subscription) bool {
	for _, sub := range subs {
		f := stripShare(sub.Filter)
		if matchFilter(f, prefix+twinDesired) || matchFilter(f, prefix+twinDelta) {
			return true
		}
	}
	return false
}

// followDownlink looks at a device connection's subscriptions: commands are
// delivered while one covers the commands topic, and the twin is pushed
// when twin topics are newly covered (on subscribe, or on connect with a
// resumed session: "delta on connect").
func (h *hook) followDownlink(cl *mochi.Client, s *session, subs []packets.Subscription, pushTwin bool) {
	if s == nil || s.kind != kindDevice {
		return
	}
	if h.s.opts.Commands != nil {
		qos, ok := commandFilterQoS(s.prefix, subs)
		s.mu.Lock()
		switch {
		case ok && s.commands == nil:
			sink := &commandSink{s: h.s, cl: cl, code: s.code, qos: qos, pending: map[uint16]string{}}
			s.commands = sink
			s.detach = h.s.opts.Commands.Attach(s.code, sink)
		}
		s.mu.Unlock()
	}
	if pushTwin && h.s.opts.Twins != nil && twinFilterCovered(s.prefix, subs) {
		h.s.g.Go(func() { h.s.pushTwin(s.code) })
	}
}

// stopCommands detaches the connection's command sink.
func (s *session) stopCommands() {
	s.mu.Lock()
	detach := s.detach
	s.commands, s.detach = nil, nil
	s.mu.Unlock()
	if detach != nil {
		detach()
	}
}

func (s *session) commandSink() *commandSink {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands
}

// OnSubscribed follows new subscriptions of a device to its twin and
// command topics.
func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, reasonCodes []byte) {
	var granted []packets.Subscription
	for i, f := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] <= 2 {
			f.Qos = reasonCodes[i]
			granted = append(granted, f)
		}
	}
	h.followDownlink(cl, h.session(cl), granted, true)
}

// OnUnsubscribed stops command delivery when no subscription covers the
// command topics any more.
func (h *hook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	s := h.session(cl)
	if s == nil || s.kind != kindDevice {
		return
	}
	if _, ok := commandFilterQoS(s.prefix, currentSubscriptions(cl)); !ok {
		s.stopCommands()
	}
}

// OnSessionEstablished is where a resumed session's subscriptions already
// exist: follow them (and push the twin, "delta on connect").
func (h *hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	s := h.session(cl)
	if s != nil && s.kind == kindDevice && h.s.opts.Presence != nil {
		s.established.Store(true)
		h.s.opts.Presence.Connected(s.code, s.tenant, "mqtt", cl.Net.Remote)
	}
	if s != nil && s.kind == kindDevice {
		h.s.opts.Usage.Attribute(netuse.MeterOf(cl.Net.Conn), s.code, s.tenant)
	}
	h.followDownlink(cl, s, currentSubscriptions(cl), true)
}

func currentSubscriptions(cl *mochi.Client) []packets.Subscription {
	all := cl.State.Subscriptions.GetAll()
	out := make([]packets.Subscription, 0, len(all))
	for _, sub := range all {
		out = append(out, sub)
	}
	return out
}

// OnQosPublish notes which packet carries which command to a device.
func (h *hook) OnQosPublish(cl *mochi.Client, pk packets.Packet, sent int64, resends int) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if s := h.session(cl); s != nil && s.kind == kindDevice {
		if k := s.commandSink(); k != nil {
			k.sent(pk)
		}
	}
}

// OnQosComplete confirms a command's delivery when the device acknowledged it.
func (h *hook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Puback && pk.FixedHeader.Type != packets.Pubcomp {
		return
	}
	if s := h.session(cl); s != nil && s.kind == kindDevice {
		if k := s.commandSink(); k != nil {
			k.acknowledged(pk.PacketID)
		}
	}
}

// PublishAlarm sends an alarm's change to the subscribers of the object's
// alarms topic ({t}/{id}/alarms, QoS 1, not retained): integrations of its
// tenant.
func (s *Server) PublishAlarm(code string, body []byte) error {
	prefix := prefixOfCode(code)
	if prefix == "" {
		return fmt.Errorf("mqtt: %q is not a code", code)
	}
	return s.broker.Publish(prefix+KindAlarms, body, false, 1)
}
