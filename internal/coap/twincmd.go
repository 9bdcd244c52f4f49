package coap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/twin"
)

// twinMessage is the representation of /tw/d: the desired state, its
// version and the delta to the reported state.
type twinMessage struct {
	Version int64          `json:"version"`
	Desired map[string]any `json:"desired"`
	Delta   map[string]any `json:"delta"`
}

// commandMessage is a command as /c carries it.
type commandMessage struct {
	ID        string          `json:"id"`
	Action    string          `json:"action"`
	Args      json.RawMessage `json:"args,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// jsonBody accepts a request body as JSON: Content-Format 50 or none.
func (s *Server) jsonBody(w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message) ([]byte, bool) {
	if cf, err := r.ContentFormat(); err == nil && cf != message.AppJSON {
		s.rejectReply(w, ingest.Reject(ingest.UnsupportedFormat, "use application/json (50)"))
		return nil, false
	}
	b, err := readBody(r)
	if err != nil {
		s.rejectReply(w, ingest.Reject(ingest.Malformed, "unreadable body"))
		return nil, false
	}
	if len(b) > s.maxPayload {
		s.rejectReply(w, ingest.Reject(ingest.TooLarge, "body over %d bytes", s.maxPayload))
		return nil, false
	}
	return b, true
}

// twinRejection maps a twin error to the protocol's reasons (as MQTT does).
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

// twinReport handles POST /tw/r: an RFC 7386 merge patch of the reported state.
func (s *Server) twinReport(ctx context.Context, w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, dev *device) {
	if s.opts.Twins == nil {
		reply(w, codes.NotImplemented, "twins are not served by this hub")
		return
	}
	b, ok := s.jsonBody(w, r)
	if !ok {
		return
	}
	if _, err := s.opts.Twins.Report(ctx, dev.code, b); err != nil {
		if rej := twinRejection(err); rej.Reason == ingest.Unavailable {
			s.log.Warn("twin report not stored", "device", dev.code, "err", err)
			s.rejectReply(w, rej)
		} else {
			s.rejectReply(w, rej)
		}
		return
	}
	s.m.accepted.WithLabelValues("twin_reported").Inc()
	reply(w, codes.Changed, "")
}

func (s *Server) twinBody(ctx context.Context, code string) ([]byte, error) {
	t, err := s.opts.Twins.Get(ctx, code)
	if err != nil {
		return nil, err
	}
	return json.Marshal(twinMessage{Version: t.Version, Desired: nonNil(t.Desired), Delta: nonNil(t.Delta())})
}

// observeOption returns the request's Observe option: 0 register, 1
// deregister, -1 none (RFC 7641 §2).
func observeOption(r *pool.Message) int64 {
	v, err := r.Options().Observe()
	if err != nil {
		return -1
	}
	return int64(v)
}

// twinDesired handles GET /tw/d, with Observe (RFC 7641) for notifications
// on every change of the desired state (NotifyTwin).
func (s *Server) twinDesired(ctx context.Context, w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, cc *client.Conn, dev *device) {
	if s.opts.Twins == nil {
		reply(w, codes.NotImplemented, "twins are not served by this hub")
		return
	}
	b, err := s.twinBody(ctx, dev.code)
	if err != nil {
		s.rejectReply(w, twinRejection(err))
		return
	}
	var opts []message.Option
	switch observeOption(r) {
	case 0:
		ob := s.register(cc, r, dev.code, obsTwin)
		opts = append(opts, ob.observeOpt(ob.next()))
	case 1:
		s.obs.cancel(cc, r.Token())
	}
	replyJSON(w, codes.Content, b, opts...)
}

// NotifyTwin sends the current desired state to the observers of a
// device's /tw/d; the hub calls it when the desired state changed.
func (s *Server) NotifyTwin(code string) {
	if s.opts.Twins == nil {
		return
	}
	obs := s.obs.of(code, obsTwin)
	if len(obs) == 0 {
		return
	}
	s.g.Go(func() {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		b, err := s.twinBody(ctx, code)
		if err != nil {
			s.log.Warn("twin not notified", "device", code, "err", err)
			return
		}
		for _, ob := range obs {
			s.g.Go(func() { _, _ = s.notify(ob, b) })
		}
	})
}

// register starts an observation for the request's token.
func (s *Server) register(cc *client.Conn, r *pool.Message, code string, kind obsKind) *observer {
	ob := &observer{cc: cc, token: r.Token(), code: code, kind: kind, con: r.Type() == message.Confirmable, ready: make(chan struct{})}
	if x, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
		x.registered = append(x.registered, ob)
	} else {
		ob.markReady()
	}
	s.obs.add(ob)
	return ob
}

// next returns the next Observe value (RFC 7641 §4.4: 24 bits, increasing).
func (ob *observer) next() uint32 {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.seq = (ob.seq + 1) & 0xffffff
	return ob.seq
}

func (ob *observer) observeOpt(v uint32) message.Option {
	var buf [4]byte
	n, _ := message.EncodeUint32(buf[:], v)
	return message.Option{ID: message.Observe, Value: append([]byte(nil), buf[:n]...)}
}

// notify sends one notification (RFC 7641 §4.2) and reports whether it was
// acknowledged: for a confirmable one, an ACK arrived (an RST ends the
// observation, §3.6); a non-confirmable one counts as sent.
func (s *Server) notify(ob *observer, payload []byte) (bool, error) {
	select {
	case <-ob.ready:
	case <-s.ctx.Done():
		return false, s.ctx.Err()
	case <-ob.cc.Done():
		return false, errors.New("coap: connection closed")
	}
	ob.mu.Lock()
	if ob.gone {
		ob.mu.Unlock()
		return false, errors.New("coap: observation ended")
	}
	ob.seq = (ob.seq + 1) & 0xffffff
	seq := ob.seq
	mid := ob.cc.GetMessageID()
	ob.lastMID = mid
	ob.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.NotifyTimeout)
	defer cancel()
	m := ob.cc.AcquireMessage(ctx)
	defer ob.cc.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(ob.token)
	m.SetObserve(seq)
	m.SetContentFormat(message.AppJSON)
	m.SetBody(bytes.NewReader(payload))
	m.SetMessageID(mid)
	if ob.con {
		m.SetType(message.Confirmable)
	} else {
		m.SetType(message.NonConfirmable)
	}
	if err := ob.cc.WriteMessage(m); err != nil {
		return false, err
	}
	ob.mu.Lock()
	reset := ob.reset
	ob.mu.Unlock()
	if reset {
		return false, errors.New("coap: notification reset")
	}
	return true, nil
}

// commandSink delivers a device's commands to one observation of /c.
type commandSink struct {
	s  *Server
	ob *observer
}

func (k *commandSink) Deliver(c *command.Command) error {
	b, err := json.Marshal(commandMessage{ID: c.ID, Action: c.Action, Args: c.Args, ExpiresAt: c.ExpiresAt})
	if err != nil {
		return err
	}
	if !k.s.g.Go(func() {
		ok, err := k.s.notify(k.ob, b)
		if err != nil || !ok {
			return // unconfirmed: the command service redelivers
		}
		if k.ob.con {
			k.s.confirm(k.ob.code, c.ID)
		} else {
			k.s.sent(k.ob.code, c.ID)
		}
	}) {
		return errStopping
	}
	return nil
}

// errStopping is a delivery refused because the endpoint is shutting down;
// the command service delivers again later.
var errStopping = errors.New("coap: shutting down")

// confirm records the transport's confirmation of a command.
func (s *Server) confirm(code, id string) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if err := s.opts.Commands.Delivered(ctx, code, id); err != nil && !errors.Is(err, command.ErrNotFound) && !errors.Is(err, command.ErrFinished) {
		s.log.Warn("command delivery not recorded", "device", code, "command", id, "err", err)
	}
}

// sent remembers a command handed over without confirmation (a NON
// notification, a poll's response); the device's next GET /c confirms it.
func (s *Server) sent(code, id string) {
	s.unconfirmed.Store(code, id)
}

// confirmSent confirms what was last handed to the device without
// confirmation.
func (s *Server) confirmSent(code string) {
	if v, ok := s.unconfirmed.LoadAndDelete(code); ok {
		s.confirm(code, v.(string))
	}
}

// commandGet handles GET /c. With Observe 0 the device observes its
// commands: each is a notification (confirmable if the registration was),
// starting with those that waited while it slept (queue mode). Without
// Observe it polls: the answer is the next command, or 2.05 with an empty
// payload when none waits.
func (s *Server) commandGet(ctx context.Context, w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, cc *client.Conn, dev *device) {
	if s.opts.Commands == nil {
		reply(w, codes.NotImplemented, "commands are not served by this hub")
		return
	}
	s.confirmSent(dev.code)
	switch observeOption(r) {
	case 0:
		ob := s.register(cc, r, dev.code, obsCommands)
		// The registration's response is empty; the commands follow as
		// notifications once the sink is attached, after this response.
		_ = w.SetResponse(codes.Content, message.AppJSON, nil, ob.observeOpt(ob.next()))
		s.g.Go(func() {
			detach := s.opts.Commands.Attach(dev.code, &commandSink{s: s, ob: ob})
			ob.mu.Lock()
			if ob.gone {
				ob.mu.Unlock()
				detach()
				return
			}
			ob.detach = detach
			ob.mu.Unlock()
		})
		return
	case 1:
		s.obs.cancel(cc, r.Token())
	}
	c, err := s.opts.Commands.Pending(ctx, dev.code)
	if err != nil {
		s.log.Warn("pending command not read", "device", dev.code, "err", err)
		s.rejectReply(w, ingest.Reject(ingest.Unavailable, "the hub could not read the command queue; retry"))
		return
	}
	if c == nil {
		_ = w.SetResponse(codes.Content, message.AppJSON, nil)
		return
	}
	b, err := json.Marshal(commandMessage{ID: c.ID, Action: c.Action, Args: c.Args, ExpiresAt: c.ExpiresAt})
	if err != nil {
		reply(w, codes.InternalServerError, "")
		return
	}
	s.sent(dev.code, c.ID)
	replyJSON(w, codes.Content, b)
}

// commandResult handles POST /c/<id>: {"status","reason","output"}.
func (s *Server) commandResult(ctx context.Context, w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, dev *device, id string) {
	if s.opts.Commands == nil {
		reply(w, codes.NotImplemented, "commands are not served by this hub")
		return
	}
	b, ok := s.jsonBody(w, r)
	if !ok {
		return
	}
	res, err := command.DecodeResult(b)
	if err != nil {
		s.rejectReply(w, ingest.Reject(ingest.Malformed, "%s", err.Error()))
		return
	}
	if _, err := s.opts.Commands.Result(ctx, dev.code, id, res); err != nil {
		switch {
		case errors.Is(err, command.ErrNotFound):
			reply(w, codes.NotFound, "no command "+id+" for this device")
		case errors.Is(err, command.ErrFinished):
			reply(w, codes.Code(0x89) /* 4.09 Conflict, RFC 8132 */, "command already finished")
		case errors.Is(err, command.ErrInvalid):
			s.rejectReply(w, ingest.Reject(ingest.Malformed, "%s", err.Error()))
		default:
			s.log.Warn("command result not stored", "device", dev.code, "command", id, "err", err)
			s.rejectReply(w, ingest.Reject(ingest.Unavailable, "the hub could not store the result; retry"))
		}
		return
	}
	if v, ok := s.unconfirmed.Load(dev.code); ok && v.(string) == id {
		s.unconfirmed.Delete(dev.code)
	}
	s.m.accepted.WithLabelValues("command_result").Inc()
	reply(w, codes.Changed, "")
}
