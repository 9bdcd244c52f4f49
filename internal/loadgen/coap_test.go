package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	coapudp "github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/wanwu-iot/wanwu/internal/senml"
)

func TestSenMLCBORDecodes(t *testing.T) {
	for _, size := range []int{0, 60, 100, 120, 300} {
		b := appendSenMLCBOR(nil, "bench:dev-7", 42, 1_760_000_000_123, size)
		if size >= 100 && (len(b) < size || len(b) > size+1) {
			t.Errorf("size %d: payload is %d bytes", size, len(b))
		}
		pack, err := senml.DecodeCBOR(b, senml.Limits{})
		if err != nil {
			t.Fatalf("size %d: %v (% x)", size, err, b)
		}
		if len(pack) != 2 {
			t.Fatalf("size %d: %d records", size, len(pack))
		}
		r0, r1 := pack[0], pack[1]
		if r0.BaseName != "bench:dev-7/" || r0.Name != "temperature" || r0.Value == nil || *r0.Value != 21.5 || r0.Time != 1_760_000_000.123 {
			t.Errorf("size %d: first record %+v", size, r0)
		}
		if r1.Name != "seq" || r1.Value == nil || *r1.Value != 42 {
			t.Errorf("size %d: second record %+v", size, r1)
		}
	}
}

func TestSplitQuery(t *testing.T) {
	if got := SplitQuery("t", "abc"); len(got) != 1 || got[0] != "t=abc" {
		t.Errorf("short: %q", got)
	}
	long := strings.Repeat("x", 600)
	got := SplitQuery("t", long)
	var joined strings.Builder
	for _, q := range got {
		if len(q) > 255 || !strings.HasPrefix(q, "t=") {
			t.Fatalf("option %q", q)
		}
		joined.WriteString(q[2:])
	}
	if len(got) != 3 || joined.String() != long {
		t.Errorf("long: %d options, joined %d bytes", len(got), joined.Len())
	}
}

func TestCodeString(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.Changed: "2.04", codes.Created: "2.01", codes.TooManyRequests: "4.29", codes.ServiceUnavailable: "5.03"} {
		if got := CodeString(c); got != want {
			t.Errorf("%v: %q, want %q", c, got, want)
		}
	}
	if got := SortedCodes(map[string]int64{"4.29": 2, "2.04": 7}); got != "2.04 7, 4.29 2" {
		t.Errorf("SortedCodes: %q", got)
	}
}

func TestCoAPOptionsInvalid(t *testing.T) {
	for name, o := range map[string]CoAPOptions{
		"too many requests": {RequestsPerClient: MaxCoAPRequestsPerClient + 1},
		"inflight":          {Inflight: -1},
		"target":            {Target: "nohostport"},
		"method":            {Method: codes.GET},
		"dtls without psk":  {DTLS: true},
		"long query":        {Query: func(int) []string { return []string{strings.Repeat("q", 256)} }},
	} {
		if _, err := o.withDefaults(); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// fakeServer is an in-test CoAP server on a UDP socket: it answers every
// request with 2.04 (piggybacked ACK for CON, NON for NON), except that
// it ignores the first transmission of every dropEvery-th CON (to exercise
// retransmission) and answers every answerSeparately-th CON with an empty
// ACK followed by a separate CON response.
type fakeServer struct {
	pc                          net.PacketConn
	dropEvery, answerSeparately int
	requests, queries           atomic.Int64
}

func startFake(t *testing.T, dropEvery, separately int) *fakeServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{pc: pc, dropEvery: dropEvery, answerSeparately: separately}
	t.Cleanup(func() { _ = pc.Close() })
	go f.serve()
	return f
}

func (f *fakeServer) serve() {
	buf := make([]byte, 4096)
	seen := map[string]bool{} // endpoint/mid already dropped once
	for {
		n, addr, err := f.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		m := message.Message{Options: make(message.Options, 0, 16)}
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil || m.Code != codes.POST {
			continue
		}
		if v, err := m.Options.Queries(); err == nil && len(v) > 0 {
			f.queries.Add(1)
		}
		k := f.requests.Add(1)
		key := fmt.Sprint(addr, "/", m.MessageID)
		if m.Type == message.Confirmable && f.dropEvery > 0 && k%int64(f.dropEvery) == 0 && !seen[key] {
			seen[key] = true
			continue
		}
		resp := message.Message{Token: m.Token, Code: codes.Changed, MessageID: m.MessageID, Type: message.Acknowledgement}
		if m.Type == message.NonConfirmable {
			resp.Type = message.NonConfirmable
		}
		if m.Type == message.Confirmable && f.answerSeparately > 0 && k%int64(f.answerSeparately) == 0 {
			empty := message.Message{Code: codes.Empty, MessageID: m.MessageID, Type: message.Acknowledgement}
			f.write(empty, addr)
			resp.Type = message.Confirmable
			resp.MessageID = int32(uint16(k))
		}
		f.write(resp, addr)
	}
}

func (f *fakeServer) write(m message.Message, addr net.Addr) {
	out := make([]byte, 256)
	if n, err := coder.DefaultCoder.Encode(m, out); err == nil {
		_, _ = f.pc.WriteTo(out[:n], addr)
	}
}

func TestRunCoAPAgainstFakeServer(t *testing.T) {
	for _, con := range []bool{true, false} {
		f := startFake(t, 0, 7)
		res, err := RunCoAP(context.Background(), CoAPOptions{
			Target: f.pc.LocalAddr().String(), Clients: 8, RequestsPerClient: 50, Inflight: 4, Confirmable: con,
			Query: func(i int) []string { return SplitQuery("t", "token") }, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 400 || res.OK != 400 || res.Answered != 400 || res.Unanswered != 0 || res.Codes["2.04"] != 400 {
			t.Errorf("con=%v: %+v", con, res)
		}
		if res.Latency.N != 400 || res.Throughput <= 0 || res.DatagramBytes == 0 || res.PayloadBytes < 100 {
			t.Errorf("con=%v: latency %+v throughput %v datagram %d payload %d", con, res.Latency, res.Throughput, res.DatagramBytes, res.PayloadBytes)
		}
		if f.queries.Load() != f.requests.Load() {
			t.Errorf("con=%v: %d of %d requests carried the query", con, f.queries.Load(), f.requests.Load())
		}
	}
}

// TestRunCoAPRetransmits: a CON request whose first transmission is lost
// is retransmitted after AckTimeout and answered.
func TestRunCoAPRetransmits(t *testing.T) {
	f := startFake(t, 5, 0)
	res, err := RunCoAP(context.Background(), CoAPOptions{
		Target: f.pc.LocalAddr().String(), Clients: 2, RequestsPerClient: 10, Confirmable: true,
		AckTimeout: 10 * time.Millisecond, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 20 || res.Retransmissions == 0 || res.Unanswered != 0 {
		t.Errorf("%+v", res)
	}
}

// TestRunCoAPUnanswered: NON requests to a port where nobody answers count
// as unanswered after Timeout, and the run ends.
func TestRunCoAPUnanswered(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	res, err := RunCoAP(context.Background(), CoAPOptions{
		Target: pc.LocalAddr().String(), Clients: 2, RequestsPerClient: 3, Inflight: 3, Timeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 6 || res.OK != 0 || res.Unanswered != 6 {
		t.Errorf("%+v", res)
	}
}

// TestRunCoAPAgainstGoCoAP runs the generator against go-coap's own server
// (the library wanwu's endpoint is built on): CON and NON requests both get
// 2.04, NON answers come as NON.
func TestRunCoAPAgainstGoCoAP(t *testing.T) {
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var posts atomic.Int64
	r := mux.NewRouter()
	if err := r.Handle("/t", mux.HandlerFunc(func(w mux.ResponseWriter, m *mux.Message) {
		if cf, err := m.ContentFormat(); err != nil || cf != ContentFormatSenMLCBOR {
			_ = w.SetResponse(codes.UnsupportedMediaType, message.TextPlain, nil)
			return
		}
		posts.Add(1)
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	})); err != nil {
		t.Fatal(err)
	}
	s := coapudp.NewServer(options.WithMux(r))
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); _ = l.Close() })
	for _, con := range []bool{true, false} {
		posts.Store(0)
		res, err := RunCoAP(context.Background(), CoAPOptions{
			Target: l.LocalAddr().String(), Clients: 10, RequestsPerClient: 100, Inflight: 2, Confirmable: con, Timeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != 1000 || res.Codes["2.04"] != 1000 || res.Unanswered != 0 || posts.Load() != 1000 || len(res.Errors) != 0 {
			t.Errorf("con=%v: ok %d codes %v unanswered %d handled %d errors %v", con, res.OK, res.Codes, res.Unanswered, posts.Load(), res.Errors)
		}
	}
}
