package hubtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/wanwu-iot/wanwu/internal/coap"
	"github.com/wanwu-iot/wanwu/internal/config"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// attackerAddr is the source address of the malformed traffic, so that it
// spends its own per-address budgets, not the control device's.
var attackerAddr = net.IPv4(127, 0, 0, 2)

// TestMalformedTrafficDoesNotDisturbOthers replays a corpus of malformed
// input, and seeded mutations of valid packets, against every listener
// (MQTT plain, TLS and development; CoAP over UDP and DTLS; HTTP) while a
// control device streams QoS 1 telemetry: the control device sees no error
// and every message it had acknowledged is stored, and the hub stays up.
func TestMalformedTrafficDoesNotDisturbOthers(t *testing.T) {
	h := Start(t, func(c *config.Hub) {
		c.MQTT.DevListen = "127.0.0.1:0"
		c.MQTT.Limits.PublishPerDevice, c.MQTT.Limits.PublishPerDeviceBurst = 1e6, 1e6
		// Every probe reaches the parsers rather than the connect limit.
		c.MQTT.Limits.ConnectPerAddr, c.MQTT.Limits.ConnectPerAddrBurst = 1e6, 1e6
	})
	h.MustAdmin(201, "POST", "/api/v1/tenants", map[string]any{"name": "acme"})
	control := newTokenDevice(t, h, "acme:control-1")
	attacker := newTokenDevice(t, h, "acme:attacker-1")

	stop := make(chan struct{})
	c, err := dialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), control.code, control.token, func(err error) {
		select {
		case <-stop:
		default:
			t.Errorf("control device: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})

	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	acked := map[int]bool{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the control device: one message every 2 ms
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ts := float64(base.UnixMilli()+int64(seq)) / 1000
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := c.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/control-1/telemetry", QoS: 1,
				Payload: fmt.Appendf(nil, `[{"n":"seq","v":%d,"t":%.3f}]`, seq, ts)})
			cancel()
			if err != nil {
				t.Errorf("control device, message %d: %v", seq, err)
				return
			}
			acked[seq] = true
		}
	}()

	// An authenticated device that will send malformed payloads on its own
	// topics, connected before the flood.
	a := mustDialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), attacker.code, attacker.token)
	// The probes run on a few connections at once, from one address.
	var probes atomic.Int64
	jobs := make(chan func(), 64)
	var workers sync.WaitGroup
	for range 16 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for job := range jobs {
				job()
				probes.Add(1)
			}
		}()
	}
	send := func(fn func(*testing.T, string, []byte), addr string, b []byte) {
		jobs <- func() { fn(t, addr, b) }
	}
	rng := rand.New(rand.NewPCG(7, 11))
	// MQTT: each stream on its own connection.
	// They name the control device, which must neither be taken over nor
	// disturbed by CONNECTs that fail authentication.
	mqttSeeds := mqttMalformedSeeds(control)
	for _, listener := range []string{mqtt.ListenerTCP, mqtt.ListenerDev} {
		addr := h.MQTT().Addr(listener)
		for _, s := range mqttSeeds {
			send(sendStream, addr, s)
		}
		for range 400 {
			send(sendStream, addr, mutate(rng, mqttSeeds[rng.IntN(len(mqttSeeds))]))
		}
	}
	// The TLS listener: garbage instead of a handshake, and MQTT garbage
	// inside a TLS session without a client certificate.
	tlsAddr := h.MQTT().Addr(mqtt.ListenerTLS)
	for _, s := range mqttSeeds[:8] {
		send(sendStream, tlsAddr, s)
		send(sendTLSStream, tlsAddr, s)
	}
	// CoAP: datagrams from one socket, and DTLS garbage.
	coapSeeds := coapMalformedSeeds(t, attacker)
	for _, listener := range []string{coap.ListenerUDP, coap.ListenerDTLS} {
		addr := h.CoAP().Addr(listener)
		for _, s := range coapSeeds {
			send(sendDatagram, addr, s)
		}
		for range 600 {
			send(sendDatagram, addr, mutate(rng, coapSeeds[rng.IntN(len(coapSeeds))]))
		}
	}
	// HTTP: broken requests on the wire, and bad bodies and tokens on the
	// ingest route.
	httpAddr := strings.TrimPrefix(h.URL, "http://")
	for _, s := range httpMalformedSeeds(attacker) {
		send(sendStream, httpAddr, s)
	}
	close(jobs)
	workers.Wait()
	for i, body := range payloadSeeds() {
		tok := attacker.token
		if i%3 == 1 {
			tok = control.token // another device's token for the attacker's code
		}
		req, _ := http.NewRequest("POST", h.URL+"/api/v1/ingest/"+attacker.code+"/telemetry", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		probes.Add(1)
	}
	// An authenticated device sending malformed payloads on its own topics.
	for i, body := range payloadSeeds() {
		topic := []string{"telemetry", "event/alarm", "twin/reported", "commands/x/result"}[i%4]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = a.Publish(ctx, &paho.Publish{Topic: "wanwu/v1/acme/attacker-1/" + topic, QoS: 1, Payload: body})
		cancel()
		probes.Add(1)
	}
	_ = a.Disconnect(&paho.Disconnect{})

	close(stop)
	wg.Wait()
	if r := h.Do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Fatalf("/healthz after the corpus: %d", r.Status)
	}
	// The control device, whose code the failed CONNECTs named, connects
	// again at once (issue 14: no pre-authentication lockout).
	_ = c.Disconnect(&paho.Disconnect{})
	if c2, err := dialToken5(t, h.MQTT().Addr(mqtt.ListenerTCP), control.code, control.token, nil); err != nil {
		t.Errorf("the control device could not connect again after the flood: %v", err)
	} else {
		_ = c2.Disconnect(&paho.Disconnect{})
	}
	t.Logf("%d malformed probes; the control device had %d messages acknowledged", probes.Load(), len(acked))
	if len(acked) < 10 {
		t.Fatalf("the control device got only %d messages through", len(acked))
	}
	countStored(t, h, control.code, base, acked)
}

type tokenDevice struct{ code, token string }

// dialToken5 connects device code with its token over MQTT 5 at addr;
// onErr hears the client's errors (nil: ignored). The connection closes
// when the test ends.
func dialToken5(t *testing.T, addr, code, token string, onErr func(error)) (*paho.Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if onErr == nil {
		onErr = func(error) {}
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: onErr, OnServerDisconnect: func(*paho.Disconnect) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: code, KeepAlive: 30, CleanStart: true,
		Username: code, UsernameFlag: true, Password: []byte(token), PasswordFlag: true})
	return c, err
}

// mustDialToken5 is dialToken5 that fails the test on an error.
func mustDialToken5(t *testing.T, addr, code, token string) *paho.Client {
	t.Helper()
	c, err := dialToken5(t, addr, code, token, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", code, err)
	}
	return c
}

// newTokenDevice registers a device with a hub-made key and signs it a token.
func newTokenDevice(t *testing.T, h *Hub, code string) tokenDevice {
	t.Helper()
	return newTokenObject(t, h, map[string]any{"code": code})
}

// dialAttacker dials from attackerAddr.
func dialAttacker(network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	switch network {
	case "tcp":
		d.LocalAddr = &net.TCPAddr{IP: attackerAddr}
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: attackerAddr}
	}
	return d.Dial(network, addr)
}

// sendStream writes b on a new connection and reads whatever comes back
// until the hub closes it or a short while passes.
func sendStream(t *testing.T, addr string, b []byte) {
	t.Helper()
	c, err := dialAttacker("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(b)
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func sendTLSStream(t *testing.T, addr string, b []byte) {
	t.Helper()
	raw, err := dialAttacker("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := c.Handshake(); err != nil {
		return // refused without a client certificate: fine too
	}
	_, _ = c.Write(b)
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func sendDatagram(t *testing.T, addr string, b []byte) {
	t.Helper()
	c, err := dialAttacker("udp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_, _ = c.Write(b)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
	buf := make([]byte, 2048)
	_, _ = c.Read(buf)
}

// mutate returns a copy of b with a few random edits: flipped bytes, a
// truncation, an inserted run, or a repeated slice.
func mutate(rng *rand.Rand, b []byte) []byte {
	out := bytes.Clone(b)
	for range 1 + rng.IntN(4) {
		if len(out) == 0 {
			out = append(out, byte(rng.Uint32()))
			continue
		}
		i := rng.IntN(len(out))
		switch rng.IntN(4) {
		case 0:
			out[i] ^= byte(1 << rng.IntN(8))
		case 1:
			out = out[:i]
		case 2:
			ins := make([]byte, 1+rng.IntN(8))
			for k := range ins {
				ins[k] = byte(rng.Uint32())
			}
			out = append(out[:i], append(ins, out[i:]...)...)
		case 3:
			j := i + rng.IntN(len(out)-i)
			out = append(out, out[i:j]...)
		}
	}
	return out
}

// mqttString is an MQTT UTF-8 string: a two-byte length and the bytes.
func mqttString(s string) []byte {
	return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...)
}

// mqttPacket frames a packet: fixed header byte, remaining length, body.
func mqttPacket(header byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := []byte{header}
	n := len(b)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, b...)
}

func mqttMalformedSeeds(dev tokenDevice) [][]byte {
	connect5 := mqttPacket(0x10, mqttString("MQTT"), []byte{5, 0xc2, 0, 30, 0}, mqttString(dev.code), mqttString(dev.code), mqttString("not-a-token"))
	connect4 := mqttPacket(0x10, mqttString("MQTT"), []byte{4, 0x02, 0, 30}, mqttString("anon-1"))
	publish1 := mqttPacket(0x32, mqttString("wanwu/v1/dev/x/telemetry"), []byte{0, 1}, []byte(`[{"n":"t","v":1}]`))
	publish5 := mqttPacket(0x32, mqttString("wanwu/v1/dev/x/telemetry"), []byte{0, 1, 0}, []byte(`[{"n":"t","v":1}]`))
	subscribe := mqttPacket(0x82, []byte{0, 2}, mqttString("wanwu/#"), []byte{1})
	return [][]byte{
		connect5, connect4,
		append(bytes.Clone(connect4), publish1...),
		append(append(bytes.Clone(connect4), publish1...), subscribe...),
		append(mqttPacket(0x10, mqttString("MQTT"), []byte{5, 0x02, 0, 30, 0}, mqttString("anon-5")), publish5...),
		{},
		{0x10},
		{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}, // remaining length over four bytes
		{0x10, 0xff, 0xff, 0xff, 0x7f},       // 256 MiB announced, nothing sent
		mqttPacket(0x10, mqttString("MQIsdp"), []byte{3, 0x02, 0, 30}, mqttString("old")),
		mqttPacket(0x10, mqttString("MQTT"), []byte{6, 0x02, 0, 30}, mqttString("v6")),  // unknown version
		mqttPacket(0x10, mqttString("MQTT"), []byte{4, 0x03, 0, 30}, mqttString("rsv")), // reserved flag set
		mqttPacket(0x11, mqttString("MQTT"), []byte{4, 0x02, 0, 30}, mqttString("flags")),
		publish1, // PUBLISH before CONNECT
		append(bytes.Clone(connect4), connect4...),   // CONNECT twice
		append(bytes.Clone(connect4), 0xc0, 0x01, 0), // PINGREQ with a payload
		append(bytes.Clone(connect4), mqttPacket(0x82, []byte{0, 3}, mqttString("a/#/b"), []byte{3})...),
		append(bytes.Clone(connect4), mqttPacket(0x36, mqttString("x"), []byte{0, 1})...), // QoS 3
		append(bytes.Clone(connect4), mqttPacket(0x30, mqttString("a/+/b"), []byte("x"))...),
		append(bytes.Clone(connect4), mqttPacket(0x30, []byte{0, 3, 0xff, 0xfe, 0xfd}, []byte("x"))...), // not UTF-8
		append(bytes.Clone(connect4), mqttPacket(0x30, mqttString("$SYS/x"), []byte("x"))...),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00}, // a TLS record on the plain port
		bytes.Repeat([]byte{0xe0, 0x00}, 100),
	}
}

func coapMalformedSeeds(t *testing.T, dev tokenDevice) [][]byte {
	t.Helper()
	seeds := [][]byte{
		{}, {0x40}, {0x40, 0x02}, {0x40, 0x02, 0x00, 0x01},
		{0x50, 0x02, 0x00, 0x01},                         // NON
		{0x7f, 0x02, 0x00, 0x01},                         // reserved token length
		{0x40, 0x02, 0x00, 0x01, 0xff},                   // payload marker, no payload
		{0x40, 0x02, 0x00, 0x01, 0xb1, 't', 0xf0},        // option delta 15
		{0x40, 0x01, 0x00, 0x02, 0xbd, 0xff, 't'},        // option length over the datagram
		{0x60, 0x45, 0x00, 0x03},                         // an ACK carrying a response
		{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, // a DTLS record header
	}
	// A valid POST /t with the device's token, to mutate.
	q := "t=" + dev.token
	var post []byte
	post = append(post, 0x42, 0x02, 0x12, 0x34, 0xaa, 0xbb, 0xb1, 't')
	for len(q) > 0 {
		n := min(len(q), 255)
		post = append(post, 0x40|0x0d, byte(n-13))
		post = append(post, q[:n]...)
		q = q[n:]
		// Uri-Query again: delta 0 after the first
		if len(q) > 0 {
			post = append(post, 0x0d, byte(min(len(q), 255)-13))
			post = append(post, q[:min(len(q), 255)]...)
			q = q[min(len(q), 255):]
		}
	}
	post = append(post, 0xff)
	post = append(post, `[{"n":"t","v":1}]`...)
	seeds = append(seeds, post)
	// go-coap's fuzz corpus.
	files, _ := filepath.Glob(filepath.Join("..", "coap", "testdata", "fuzz", "FuzzCoAPMessage", "*"))
	for _, f := range files {
		if b, ok := readFuzzBytes(t, f); ok {
			seeds = append(seeds, b)
		}
	}
	return seeds
}

func httpMalformedSeeds(dev tokenDevice) [][]byte {
	return [][]byte{
		[]byte("\x00\x01\x02garbage\r\n\r\n"),
		[]byte("POST /api/v1/ingest/" + dev.code + "/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{"),
		[]byte("POST /api/v1/ingest/" + dev.code + "/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
		[]byte("GET /api/v1/objects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("A", 70<<10) + "\r\n\r\n"),
		[]byte("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("BREW /api/v1/info HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("GET /api/v1/info HTTP/9.9\r\n\r\n"),
	}
}

// payloadSeeds are device payloads: the SenML fuzz corpora and broken JSON.
func payloadSeeds() [][]byte {
	seeds := [][]byte{
		[]byte(`[{"n":"t","v":}]`), []byte(`{"t":`), []byte(`[]`), []byte(`{}`), []byte(`null`),
		[]byte(`[{"bn":"other:device/","n":"t","v":1}]`), []byte(`[{"n":"t","v":1e999}]`),
		bytes.Repeat([]byte("["), 10000), {0x9f, 0xff}, {0xbf},
		[]byte(`[{"n":"t","v":1,"t":1e300}]`), []byte(`{"t":"` + strings.Repeat("x", 70<<10) + `"}`),
	}
	for _, dir := range []string{"FuzzDecodeJSON", "FuzzDecodeCBOR"} {
		files, _ := filepath.Glob(filepath.Join("..", "senml", "testdata", "fuzz", dir, "*"))
		for _, f := range files {
			if b, ok := readFuzzBytes(nil, f); ok {
				seeds = append(seeds, b)
			}
		}
	}
	return seeds
}

// readFuzzBytes reads the first []byte argument of a Go fuzz corpus file.
func readFuzzBytes(t *testing.T, path string) ([]byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(line, "[]byte("); ok {
			v, err := strconv.Unquote(strings.TrimSuffix(s, ")"))
			if err == nil {
				return []byte(v), true
			}
		}
	}
	return nil, false
}
