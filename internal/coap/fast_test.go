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

// TestNoResponseTakesTheFullPath: a request with an option the fast path
// does not handle, here No-Response (RFC 7967) suppressing 2.xx, is served
// by go-coap's connection: stored, and not answered.
func TestNoResponseTakesTheFullPath(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-15", true)
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	o := withOpt(withOpt(opts("/t", "t="+d.token(t)), message.ContentFormat, uint32(message.AppJSON)), 258, 2)
	req := encode(t, message.Message{Type: message.NonConfirmable, Code: codes.POST, MessageID: 0x6000, Token: []byte{6}, Options: o, Payload: []byte(`{"setpoint":55}`)})
	if b := r.roundTrip(req, 500*time.Millisecond); b != nil {
		t.Fatalf("answered %x despite No-Response 2", b)
	}
	if n := e.waitSamples(d.code, "setpoint", base, time.Now().Add(time.Minute), 1); n != 1 {
		t.Fatalf("stored %d samples, want 1", n)
	}
}
