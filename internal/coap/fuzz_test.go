package coap

import (
	"net/netip"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzCoAPMessage feeds raw datagrams through the plain UDP listener's
// whole path: the screen, go-coap's parsing, deduplication and block-wise
// reassembly, and the request handler (which refuses them: they carry no
// valid token). Seeds in testdata/fuzz/FuzzCoAPMessage cover option delta
// and length overflows (nibbles 13/14/15), truncated tokens, reserved token
// lengths, payload markers without payload, Block1 bombs, and Block1
// transfers that do not start at block 0 or carry no token (RFC 7959).
func FuzzCoAPMessage(f *testing.F) {
	f.Add([]byte{0x40, 0x02, 0x00, 0x01, 0xb1, 't'})
	e := newEnv(f, func(o *Options) { o.DTLSListen = "" })
	raddr := netip.MustParseAddrPort("127.0.0.1:9") // discard: answers go nowhere
	var opts message.Options
	f.Fuzz(func(t *testing.T, data []byte) {
		var v verdict
		v, opts = e.srv.screen(netip.MustParseAddr("127.0.0.2"), data, opts)
		if len(v.reply) > len(data) {
			t.Fatalf("screen answers %d bytes to %d", len(v.reply), len(data))
		}
		if v.pass {
			m := pool.NewMessage(t.Context())
			if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, data); err == nil {
				_ = e.srv.blockTooLarge(m)
				_ = pathSegments(m)
				_ = queryToken(m)
				_ = observeOption(m)
			}
		}
		e.srv.udp.datagram(raddr, nil, data)
	})
}
