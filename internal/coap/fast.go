package coap

import (
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// The plain-UDP listener answers the requests NB-IoT devices send most, a
// single-datagram POST /t or POST /e/<event>, itself: it decodes the datagram
// once (the screen did), hands the message to the pipeline without waiting,
// and answers from the pipeline's callback once the message is durable.
// go-coap's connection would parse the datagram again, queue it to the
// endpoint's goroutine, block that goroutine until the message is durable,
// then marshal and cache the answer through its pools: a third of the hub's
// CPU per request in a profile (bench/RESULTS.md), and two goroutine
// hand-offs of latency. Everything else (block-wise bodies, observe, twins, commands,
// No-Response, any other option) still goes through go-coap, and DTLS
// sessions always do.
//
// Deduplication (RFC 7252 §4.5) stays per endpoint: the fast path keeps the
// answers of its own CON requests (exchangeCache); a request takes the same
// path each time it is retransmitted, since the choice depends only on the
// request. NON duplicates are found by the endpoint's NON record, as on the
// slow path.

// fastRoute reports whether m is a request the fast path serves, and the
// event name for POST /e/<event> ("" for /t).
func fastRoute(m *message.Message) (event string, ok bool) {
	if m.Code != codes.POST || (m.Type != message.Confirmable && m.Type != message.NonConfirmable) {
		return "", false
	}
	var segs [2][]byte
	n := 0
	for _, o := range m.Options {
		switch o.ID {
		case message.URIPath:
			if n == len(segs) {
				return "", false
			}
			segs[n] = o.Value
			n++
		case message.URIQuery, message.ContentFormat:
		default:
			return "", false
		}
	}
	switch {
	case n == 1 && string(segs[0]) == "t":
		return "", true
	case n == 2 && string(segs[0]) == "e" && len(segs[1]) > 0:
		return string(segs[1]), true
	}
	return "", false
}

// fastIngest serves a request fastRoute accepted. m shares the read buffer:
// what outlives this call is copied.
func (s *Server) fastIngest(ep *udpEndpoint, cm *coapNet.ControlMessage, m *message.Message, event string) {
	st := s.state(ep.cc)
	if st == nil {
		return
	}
	mid := uint16(m.MessageID)
	con := m.Type == message.Confirmable
	now := time.Now()
	if con {
		if answer, dup := ep.answers.begin(mid, now); dup {
			if answer != nil { // still being handled: the answer will come
				_ = ep.sess.write(answer, cm)
			}
			return
		}
	} else if st.seenNON(int32(mid), now) {
		s.m.dropped.WithLabelValues("duplicate").Inc()
		return
	}
	x := &fastExchange{s: s, ep: ep, cm: cm, con: con, mid: mid}
	if len(m.Token) <= len(x.tokenBuf) {
		x.token = x.tokenBuf[:copy(x.tokenBuf[:], m.Token)]
	} else {
		x.token = append([]byte(nil), m.Token...)
	}
	dev, c, why := s.authenticateToken(st, tokenOf(m.Options))
	if dev == nil {
		s.m.rejected.WithLabelValues(why).Inc()
		x.answer(c, "") // no diagnostic: the source may be spoofed (amplification)
		return
	}
	if rej := s.gate(dev, false, now); rej != nil {
		x.refuse(rej)
		return
	}
	topic := "/t"
	if event != "" {
		topic = "/e/" + event
	}
	x.device, x.event = dev.code, event != ""
	// The intake copies what outlives this call (m shares the read
	// buffer) and keeps a refusal as a dead letter off this loop, which
	// reads for every device.
	s.opts.Intake.Accept(&adapter.Upload{
		Device: ingest.Device{Code: dev.code, Tenant: dev.tenant, Model: dev.model},
		Source: "coap", Topic: topic, Event: event, ContentType: contentTypeOf(m.Options), Payload: m.Payload,
	}, x)
}

// Answer answers once the intake kept a refusal, or the pipeline made the
// message durable or could not.
func (x *fastExchange) Answer(rej *ingest.Rejection, _ bool) {
	if rej != nil {
		x.refuse(rej)
		return
	}
	kind := ingest.Telemetry
	if x.event {
		kind = ingest.Event
	}
	x.s.m.accepted.WithLabelValues(kind.String()).Inc()
	x.answer(codes.Changed, "")
}

// fastExchange is what a fast-path answer needs of its request; it is the
// pipeline's Completion for the request's message.
type fastExchange struct {
	adapter.Pending
	s      *Server
	ep     *udpEndpoint
	cm     *coapNet.ControlMessage
	con    bool
	mid    uint16
	device string // the device's code
	event  bool   // an event rather than telemetry, for the metric
	token  []byte
	// tokenBuf holds the token (at most 8 bytes, RFC 7252 §3) in the
	// exchange's own allocation.
	tokenBuf [8]byte
	// retryAfter is the Max-Age, in seconds, of a refusal that asks the
	// device to wait (5.03).
	retryAfter int
}

func (x *fastExchange) refuse(rej *ingest.Rejection) {
	x.s.m.rejected.WithLabelValues(string(rej.Reason)).Inc()
	x.retryAfter = rej.Reason.RetryAfter()
	x.answer(codes.Code(rej.Reason.CoAPCode()), rej.Error())
}

// answer sends the response (piggybacked on the ACK of a CON request, as a
// NON of the hub's own message id for a NON one) and keeps a CON answer for
// retransmissions. It runs on the pipeline's goroutine: it must not block.
func (x *fastExchange) answer(c codes.Code, diag string) {
	resp := message.Message{Code: c, Token: x.token, Type: message.Acknowledgement, MessageID: int32(x.mid)}
	if !x.con {
		resp.Type, resp.MessageID = message.NonConfirmable, x.ep.cc.GetMessageID()
	}
	if diag != "" {
		if len(diag) > maxDiagnostic {
			diag = diag[:maxDiagnostic]
		}
		// text/plain is Content-Format 0: an option of no bytes.
		resp.Options = message.Options{{ID: message.ContentFormat, Value: []byte{}}}
		if x.retryAfter > 0 {
			resp.Options = append(resp.Options, maxAge(x.retryAfter))
		}
		resp.Payload = []byte(diag)
	}
	size, err := coder.DefaultCoder.Size(resp)
	if err != nil {
		x.s.log.Error("coap: encoding an answer", "err", err)
		return
	}
	data := make([]byte, size)
	if _, err := coder.DefaultCoder.Encode(resp, data); err != nil {
		x.s.log.Error("coap: encoding an answer", "err", err)
		return
	}
	if x.con {
		x.ep.answers.finish(x.mid, data)
	}
	x.s.m.requests.WithLabelValues(ListenerUDP, c.String()).Inc()
	if err := x.ep.sess.write(data, x.cm); err != nil {
		x.s.log.Debug("coap udp: answer not sent", "err", err)
	}
}

// exchangeLifetime is EXCHANGE_LIFETIME (RFC 7252 §4.8.2).
const exchangeLifetime = 247 * time.Second

// exchangeCacheSize bounds the answers an endpoint keeps. A device has one
// request outstanding (NSTART 1, RFC 7252 §4.7) and retransmits only that
// one, so a few would do; a device that keeps more outstanding and has an old
// one retransmitted after this many newer ones gets it processed again.
const exchangeCacheSize = 32

// exchangeCache keeps an endpoint's recent CON answers, the oldest dropped
// first: a ring of at most exchangeCacheSize, searched by message id. A
// scan of 32 ids costs less than the map it replaced (hashing, probing, and
// a delete per request once full: 4.5% of the hub's CPU at 100 devices).
type exchangeCache struct {
	mu      sync.Mutex
	entries []cachedAnswer // in arrival order until full, then a ring
	next    int            // once full: the oldest entry, replaced next
}

type cachedAnswer struct {
	mid  uint16
	at   int64  // when the request's first copy came, unix nanoseconds
	data []byte // nil while the request is being handled
}

func (c *exchangeCache) find(mid uint16) *cachedAnswer {
	for i := range c.entries {
		if c.entries[i].mid == mid {
			return &c.entries[i]
		}
	}
	return nil
}

// begin records a CON request; for a duplicate it returns true and the
// answer (nil while the first copy is still being handled).
func (c *exchangeCache) begin(mid uint16, now time.Time) ([]byte, bool) {
	t := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.find(mid); a != nil {
		if time.Duration(t-a.at) < exchangeLifetime {
			return a.data, true
		}
		*a = cachedAnswer{mid: mid, at: t} // an id used again: keeps its slot
		return nil, false
	}
	a := cachedAnswer{mid: mid, at: t}
	if len(c.entries) < exchangeCacheSize {
		c.entries = append(c.entries, a)
	} else {
		c.entries[c.next] = a
		c.next = (c.next + 1) % exchangeCacheSize
	}
	return nil, false
}

// finish stores the answer to a request begin recorded.
func (c *exchangeCache) finish(mid uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.find(mid); a != nil && a.data == nil {
		a.data = data
	}
}
