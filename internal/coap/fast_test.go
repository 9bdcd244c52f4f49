package coap

import (
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func TestFastRoute(t *testing.T) {
	post := func(typ message.Type, o message.Options) *message.Message {
		return &message.Message{Type: typ, Code: codes.POST, Options: o}
	}
	cf := withOpt(opts("/t", "t=x"), message.ContentFormat, uint32(message.AppCBOR))
	for _, tt := range []struct {
		name  string
		m     *message.Message
		event string
		ok    bool
	}{
		{"telemetry CON", post(message.Confirmable, cf), "", true},
		{"telemetry NON", post(message.NonConfirmable, opts("/t")), "", true},
		{"event", post(message.Confirmable, opts("/e/overheat", "t=x")), "overheat", true},
		{"event without a name", post(message.Confirmable, opts("/e")), "", false},
		{"twin report", post(message.Confirmable, opts("/tw/r")), "", false},
		{"deeper path", post(message.Confirmable, opts("/e/a/b")), "", false},
		{"GET", &message.Message{Type: message.Confirmable, Code: codes.GET, Options: opts("/t")}, "", false},
		{"block-wise", post(message.Confirmable, withOpt(opts("/t"), message.Block1, 0x08)), "", false},
		// The last block of a transfer, or a single block 0 with M=0,
		// still goes to go-coap's reassembly (RFC 7959 §2.5).
		{"last block", post(message.Confirmable, withOpt(opts("/t"), message.Block1, 0x22)), "", false},
		{"single block", post(message.NonConfirmable, withOpt(opts("/e/overheat"), message.Block1, 0x06)), "", false},
		{"Size1", post(message.Confirmable, withOpt(opts("/t"), message.Size1, 3000)), "", false},
		{"No-Response", post(message.Confirmable, withOpt(opts("/t"), 258, 2)), "", false},
		{"an ACK", &message.Message{Type: message.Acknowledgement, Code: codes.POST, Options: opts("/t")}, "", false},
	} {
		event, ok := fastRoute(tt.m)
		if event != tt.event || ok != tt.ok {
			t.Errorf("%s: fastRoute = %q %v, want %q %v", tt.name, event, ok, tt.event, tt.ok)
		}
	}
}

// TestExchangeCache: RFC 7252 §4.5: a CON retransmitted within
// EXCHANGE_LIFETIME is a duplicate (answered from the cache once there is an
// answer); after it, the id is a new request; the oldest answers make room.
func TestExchangeCache(t *testing.T) {
	var c exchangeCache
	t0 := time.Now()
	if _, dup := c.begin(1, t0); dup {
		t.Fatal("first request taken for a duplicate")
	}
	if a, dup := c.begin(1, t0.Add(time.Second)); !dup || a != nil {
		t.Fatalf("retransmission while handled: %v %v, want a duplicate without answer", a, dup)
	}
	c.finish(1, []byte("ack"))
	if a, dup := c.begin(1, t0.Add(2*time.Second)); !dup || string(a) != "ack" {
		t.Fatalf("retransmission after the answer: %q %v", a, dup)
	}
	if _, dup := c.begin(1, t0.Add(exchangeLifetime+time.Second)); dup {
		t.Fatal("an id reused after EXCHANGE_LIFETIME taken for a duplicate")
	}
	for i := range exchangeCacheSize {
		c.begin(uint16(100+i), t0)
	}
	if _, dup := c.begin(1, t0.Add(exchangeLifetime+2*time.Second)); dup {
		t.Fatal("the oldest id was kept beyond the cache size")
	}
	if _, dup := c.begin(uint16(100+exchangeCacheSize-1), t0); !dup {
		t.Fatal("the newest id was dropped")
	}
	if len(c.entries) > exchangeCacheSize {
		t.Fatalf("%d answers kept, at most %d", len(c.entries), exchangeCacheSize)
	}
}

// TestNoResponse: RFC 7967 §2.1: a request's No-Response option names the
// classes of answer the device is not interested in (2: 2.xx, 8: 4.xx, 16:
// 5.xx); the hub sends none of those, any other, and processes the request
// either way. A CON request whose answer is suppressed still gets an empty
// ACK (§2), or it would be retransmitted. Such requests take go-coap's path,
// not the fast one.
func TestNoResponse(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-15", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	const good, unknown = `{"setpoint":55}`, `{"pressure":1}`
	const none = message.Type(-1)
	cases := []struct {
		name       string
		typ        message.Type
		noResponse uint32
		body       string
		wantType   message.Type // none: no answer at all
		wantCode   codes.Code
	}{
		{"2.04 suppressed", message.NonConfirmable, 2, good, none, 0},
		{"4.22 sent when 2.xx suppressed", message.NonConfirmable, 2, unknown, message.NonConfirmable, codes.Code(0x96)},
		{"2.04 sent when 4.xx suppressed", message.NonConfirmable, 8, good, message.NonConfirmable, codes.Changed},
		{"4.22 suppressed", message.NonConfirmable, 8, unknown, none, 0},
		{"4.22 sent when 5.xx suppressed", message.NonConfirmable, 16, unknown, message.NonConfirmable, codes.Code(0x96)},
		{"everything suppressed", message.NonConfirmable, 26, unknown, none, 0},
		{"CON 2.04 suppressed: empty ACK", message.Confirmable, 2, good, message.Acknowledgement, codes.Empty},
		{"CON 4.22 suppressed: empty ACK", message.Confirmable, 26, unknown, message.Acknowledgement, codes.Empty},
		{"CON 4.22 sent when 2.xx suppressed", message.Confirmable, 2, unknown, message.Acknowledgement, codes.Code(0x96)},
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	stored := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := withOpt(withOpt(opts("/t", "t="+d.token(t)), message.ContentFormat, uint32(message.AppJSON)), message.NoResponse, c.noResponse)
			req := encode(t, message.Message{Type: c.typ, Code: codes.POST, MessageID: int32(0x6000 + i), Token: []byte{6, byte(i)}, Options: o, Payload: []byte(c.body)})
			b := r.roundTrip(req, 500*time.Millisecond)
			if c.body == good {
				stored++
			}
			switch {
			case c.wantType == none && b != nil:
				t.Fatalf("answered %v despite No-Response %d", decode(t, b).Code, c.noResponse)
			case c.wantType == none:
				return
			case b == nil:
				t.Fatalf("no answer, want %v %v", c.wantType, c.wantCode)
			}
			if m := decode(t, b); m.Type != c.wantType || m.Code != c.wantCode || m.MessageID != int32(0x6000+i) && c.typ == message.Confirmable {
				t.Fatalf("answered %v %v (id %#x), want %v %v", m.Type, m.Code, m.MessageID, c.wantType, c.wantCode)
			}
		})
	}
	e.expectSamples(d.code, "setpoint", base, stored)
}
