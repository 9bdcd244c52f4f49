package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// CoAP load: N simulated devices, each with its own UDP socket (its own
// source endpoint: a server deduplicates by (endpoint, message id), so one
// endpoint can carry at most 65,536 requests per EXCHANGE_LIFETIME), POST
// SenML CBOR to a path, confirmable or not, with at most Inflight requests
// outstanding per device. Datagrams are built and parsed with go-coap's
// message codec on plain sockets (or pion DTLS connections): the generator
// does the least work a correct client can, so that it is not what limits
// the rate on machines where it shares the cores with the server.

// Defaults of CoAPOptions.
const (
	DefaultCoAPTarget        = "127.0.0.1:5683"
	DefaultCoAPPath          = "t"
	DefaultCoAPClients       = 100
	DefaultCoAPRequests      = 1000
	DefaultCoAPInflight      = 1
	DefaultCoAPTimeout       = 10 * time.Second
	DefaultCoAPAckTimeout    = 2 * time.Second // RFC 7252 §4.8 ACK_TIMEOUT
	DefaultCoAPMaxRetransmit = 4               // RFC 7252 §4.8 MAX_RETRANSMIT
	// MaxCoAPRequestsPerClient keeps every request of one endpoint in a run
	// under its own message id.
	MaxCoAPRequestsPerClient = 1 << 16
	// ContentFormatSenMLCBOR is application/senml+cbor (RFC 8428).
	ContentFormatSenMLCBOR = 112
)

// CoAPOptions describes one CoAP load.
type CoAPOptions struct {
	// Target is the server's host:port.
	Target string
	// DTLS, when set, runs every device over DTLS with PSK(i).
	DTLS bool
	PSK  func(i int) (identity string, key []byte)

	// Clients is the number of devices, one socket each.
	Clients int
	// RequestsPerClient is how many requests each device sends; ignored
	// when Duration is set.
	RequestsPerClient int
	Duration          time.Duration
	// Rate is the total request rate over all devices (requests per
	// second); 0 sends as fast as the in-flight windows allow.
	Rate float64
	// Inflight is the most outstanding requests per device (default 1, as
	// RFC 7252 §4.7 NSTART asks of a device).
	Inflight int
	// Confirmable sends CON requests (retransmitted per RFC 7252 §4.2
	// until answered); otherwise NON, each counted answered or not.
	Confirmable bool
	// Method is POST (default) or PUT.
	Method codes.Code
	// Path is the Uri-Path, segments separated by '/' (default "t").
	Path string
	// PayloadSize is the SenML CBOR payload length (default 100).
	PayloadSize int
	// Tenant and CodeFor name the devices as for MQTT (the SenML base name).
	Tenant  string
	CodeFor func(i int) string
	// Query returns device i's Uri-Query options (each at most 255 bytes),
	// e.g. "t=<device token>".
	Query func(i int) []string

	// SourceAddrs are local IP addresses to bind sockets to, round-robin.
	SourceAddrs []string
	// TargetPID, when non-zero, is the server process to sample in /proc.
	TargetPID int
	// Timeout is how long a request waits for its answer (NON) or for the
	// end of its retransmissions (CON) before it counts as unanswered.
	Timeout time.Duration
	// AckTimeout and MaxRetransmit: RFC 7252 §4.8 (CON only).
	AckTimeout    time.Duration
	MaxRetransmit int
	// ConnectWorkers bounds concurrent DTLS handshakes (default 64).
	ConnectWorkers int

	Progress func(string)
}

func (o CoAPOptions) withDefaults() (CoAPOptions, error) {
	if o.Target == "" {
		o.Target = DefaultCoAPTarget
	}
	if o.Clients == 0 {
		o.Clients = DefaultCoAPClients
	}
	if o.RequestsPerClient == 0 && o.Duration == 0 {
		o.RequestsPerClient = DefaultCoAPRequests
	}
	if o.Inflight == 0 {
		o.Inflight = DefaultCoAPInflight
	}
	if o.Method == 0 {
		o.Method = codes.POST
	}
	if o.Path == "" {
		o.Path = DefaultCoAPPath
	}
	if o.PayloadSize == 0 {
		o.PayloadSize = DefaultPayloadSize
	}
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	if o.CodeFor == nil {
		tenant := o.Tenant
		o.CodeFor = func(i int) string { return DeviceCode(tenant, i) }
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultCoAPTimeout
	}
	if o.AckTimeout == 0 {
		o.AckTimeout = DefaultCoAPAckTimeout
	}
	if o.MaxRetransmit == 0 {
		o.MaxRetransmit = DefaultCoAPMaxRetransmit
	}
	if o.ConnectWorkers == 0 {
		o.ConnectWorkers = DefaultConnectWorkers
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	switch {
	case o.Clients < 0:
		return o, fmt.Errorf("%w: clients %d", ErrOptions, o.Clients)
	case o.RequestsPerClient < 0 || o.Duration < 0:
		return o, fmt.Errorf("%w: requests and duration must not be negative", ErrOptions)
	case o.RequestsPerClient > MaxCoAPRequestsPerClient:
		return o, fmt.Errorf("%w: %d requests per client: one endpoint has %d message ids; use more clients", ErrOptions, o.RequestsPerClient, MaxCoAPRequestsPerClient)
	case o.Inflight < 1 || o.Inflight > 4096:
		return o, fmt.Errorf("%w: inflight %d (want 1..4096)", ErrOptions, o.Inflight)
	case o.Rate < 0:
		return o, fmt.Errorf("%w: rate %v", ErrOptions, o.Rate)
	case o.PayloadSize < 0:
		return o, fmt.Errorf("%w: payload size %d", ErrOptions, o.PayloadSize)
	case o.Method != codes.POST && o.Method != codes.PUT:
		return o, fmt.Errorf("%w: method %v (want POST or PUT)", ErrOptions, o.Method)
	case o.DTLS && o.PSK == nil:
		return o, fmt.Errorf("%w: DTLS needs a PSK per device", ErrOptions)
	case o.MaxRetransmit < 0 || o.Timeout < 0 || o.AckTimeout < 0:
		return o, fmt.Errorf("%w: negative timeout or retransmissions", ErrOptions)
	}
	if _, _, err := net.SplitHostPort(o.Target); err != nil {
		return o, fmt.Errorf("%w: target %q: want host:port", ErrOptions, o.Target)
	}
	if o.Query != nil {
		for _, q := range o.Query(0) {
			if len(q) > 255 {
				return o, fmt.Errorf("%w: a Uri-Query option of %d bytes (at most 255)", ErrOptions, len(q))
			}
		}
	}
	return o, nil
}

// SplitQuery returns key=value as Uri-Query options of at most 255 bytes:
// one option when it fits, else several, each repeating "key=" (the wanwu
// hub joins the values of repeated "t=" options in order).
func SplitQuery(key, value string) []string {
	prefix := key + "="
	room := 255 - len(prefix)
	if room < 1 {
		return nil
	}
	var out []string
	for len(value) > room {
		out = append(out, prefix+value[:room])
		value = value[room:]
	}
	return append(out, prefix+value)
}

// CoAPResult is what one CoAP run measured. Durations marshal as nanoseconds.
type CoAPResult struct {
	Mode      string `json:"mode"` // "coap"
	Target    string `json:"target"`
	Transport string `json:"transport"` // "udp" or "dtls"
	Type      string `json:"type"`      // "CON" or "NON"
	Method    string `json:"method"`
	Path      string `json:"path"`
	Clients   int    `json:"clients"`
	// Connected is how many devices had a socket (DTLS: a handshake).
	Connected         int     `json:"connected"`
	RequestsPerClient int     `json:"requests_per_client,omitempty"`
	Inflight          int     `json:"inflight"`
	Rate              float64 `json:"rate_total,omitempty"`
	PayloadBytes      int     `json:"payload_bytes"`
	DatagramBytes     int     `json:"datagram_bytes"` // CoAP message size of the first request

	Sent            int64 `json:"sent"`            // distinct requests
	Retransmissions int64 `json:"retransmissions"` // CON retransmissions
	Answered        int64 `json:"answered"`        // requests with a response of any code
	OK              int64 `json:"ok"`              // 2.xx responses
	Unanswered      int64 `json:"unanswered"`      // no response within Timeout
	// Codes counts responses by code ("2.04", "4.29", "RST", ...).
	Codes map[string]int64 `json:"codes,omitempty"`
	// Errors counts failures other than responses (socket, handshake, late).
	Errors map[string]int64 `json:"errors,omitempty"`

	ConnectTime time.Duration `json:"connect_ns"`
	Window      time.Duration `json:"window_ns"` // first request to the last answer
	// Throughput is 2.xx responses per second over Window.
	Throughput float64     `json:"throughput_per_s"`
	Latency    Percentiles `json:"latency"` // first transmission → 2.xx response

	TargetPID            int     `json:"target_pid,omitempty"`
	TargetCPUSeconds     float64 `json:"target_cpu_s,omitempty"`
	CPUSecondsPerMillion float64 `json:"target_cpu_s_per_million,omitempty"` // per million 2.xx
	TargetRSSBefore      int64   `json:"target_rss_before_bytes,omitempty"`
	TargetRSSAfter       int64   `json:"target_rss_after_bytes,omitempty"`
	TargetRSSPeak        int64   `json:"target_rss_peak_bytes,omitempty"`
	GeneratorCPUSeconds  float64 `json:"generator_cpu_s"`
	// GeneratorCPUPerMillion is the generator's CPU-seconds per million 2.xx.
	GeneratorCPUPerMillion float64 `json:"generator_cpu_s_per_million,omitempty"`

	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// CodeString is a response code as RFC 7252 writes it: "2.04".
func CodeString(c codes.Code) string {
	return fmt.Sprintf("%d.%02d", byte(c)>>5, byte(c)&0x1f)
}

// coapPending is one outstanding request.
type coapPending struct {
	mid    uint16
	first  time.Time
	lastTx time.Time
	tx     int    // transmissions so far
	acked  bool   // an empty ACK came: the response follows separately
	raw    []byte // the datagram, for retransmission (CON)
}

// coapClient is one simulated device.
type coapClient struct {
	i      int
	conn   net.Conn
	closed atomic.Bool // set before conn is closed at the end
	code   string
	slots  chan struct{} // in-flight window: a send puts, an answer takes

	mu      sync.Mutex
	pending map[uint32]*coapPending // by token
	byMID   map[uint16]uint32
	lat     []time.Duration
	codes   map[string]int64
	errs    map[string]int64
	sent    int64
	retx    int64
	answer  int64
	ok      int64
	unans   int64
	lastAns time.Time
}

func (c *coapClient) addErr(kind string) {
	if c.errs == nil {
		c.errs = map[string]int64{}
	}
	c.errs[kind]++
}

// finish ends a pending request (c.mu held).
func (c *coapClient) finishLocked(tok uint32, p *coapPending) {
	delete(c.pending, tok)
	delete(c.byMID, p.mid)
	<-c.slots
}

// RunCoAP runs one CoAP load and returns what it measured.
func RunCoAP(ctx context.Context, o CoAPOptions) (*CoAPResult, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", o.Target)
	if err != nil {
		return nil, fmt.Errorf("loadgen: target %s: %w", o.Target, err)
	}
	var src []net.IP
	for _, s := range o.SourceAddrs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%w: source address %q", ErrOptions, s)
		}
		src = append(src, ip)
	}
	typ := "NON"
	if o.Confirmable {
		typ = "CON"
	}
	transport := "udp"
	if o.DTLS {
		transport = "dtls"
	}
	res := &CoAPResult{
		Mode: "coap", Target: o.Target, Transport: transport, Type: typ, Method: o.Method.String(), Path: o.Path,
		Clients: o.Clients, RequestsPerClient: o.RequestsPerClient, Inflight: o.Inflight, Rate: o.Rate,
		PayloadBytes: len(appendSenMLCBOR(nil, o.CodeFor(0), 0, 1_760_000_000_000, o.PayloadSize)),
		TargetPID:    o.TargetPID, Started: time.Now(),
	}
	if o.TargetPID != 0 {
		s, err := SampleProc(o.TargetPID)
		if err != nil {
			return nil, err
		}
		res.TargetRSSBefore = s.RSS
	}

	// Sockets (and DTLS handshakes) first, outside the measured window.
	t0 := time.Now()
	clients := make([]*coapClient, o.Clients)
	var connErr sync.Map
	var nerr atomic.Int64
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(o.ConnectWorkers, max(o.Clients, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var laddr *net.UDPAddr
				if len(src) > 0 {
					laddr = &net.UDPAddr{IP: src[i%len(src)]}
				}
				conn, err := dialCoAP(ctx, o, i, laddr, raddr)
				if err != nil {
					nerr.Add(1)
					connErr.Store(i, err)
					continue
				}
				clients[i] = &coapClient{
					i: i, conn: conn, code: o.CodeFor(i), slots: make(chan struct{}, o.Inflight),
					pending: map[uint32]*coapPending{}, byMID: map[uint16]uint32{},
				}
			}
		}()
	}
	for i := range o.Clients {
		work <- i
	}
	close(work)
	wg.Wait()
	res.ConnectTime = time.Since(t0)
	var live []*coapClient
	for _, c := range clients {
		if c != nil {
			live = append(live, c)
		}
	}
	res.Connected = len(live)
	if n := nerr.Load(); n > 0 {
		var first error
		connErr.Range(func(_, v any) bool { first = v.(error); return false })
		res.Errors = map[string]int64{"connect": n}
		o.Progress(fmt.Sprintf("%d of %d devices could not connect; first error: %v", n, o.Clients, first))
	}
	defer func() {
		for _, c := range live {
			_ = c.conn.Close()
		}
	}()
	if len(live) == 0 {
		return res, fmt.Errorf("loadgen: no device could connect to %s", o.Target)
	}
	o.Progress(fmt.Sprintf("%d devices ready (%s); sending %s %s /%s", len(live), res.ConnectTime.Round(time.Millisecond), typ, o.Method, o.Path))

	watch := watchProc(o.TargetPID)
	var before ProcSample
	if o.TargetPID != 0 {
		before, _ = SampleProc(o.TargetPID)
	}
	selfBefore := selfCPU()
	start := time.Now()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var readers sync.WaitGroup
	for _, c := range live {
		readers.Add(1)
		go func() { defer readers.Done(); c.read(o) }()
	}
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); sweep(runCtx, o, live) }()

	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	var senders sync.WaitGroup
	for k, c := range live {
		senders.Add(1)
		go func() {
			defer senders.Done()
			c.send(runCtx, o, start, deadline, k, len(live), &res.DatagramBytes)
		}()
	}
	senders.Wait()
	end := time.Now()
	cancel()
	<-sweepDone
	selfAfter := selfCPU()
	var after ProcSample
	if o.TargetPID != 0 {
		after, _ = SampleProc(o.TargetPID)
	}
	peak := watch.close()
	for _, c := range live {
		c.closed.Store(true)
		_ = c.conn.Close()
	}
	readers.Wait()

	var lat []time.Duration
	var lastAns time.Time
	for _, c := range live {
		res.Sent += c.sent
		res.Retransmissions += c.retx
		res.Answered += c.answer
		res.OK += c.ok
		res.Unanswered += c.unans + int64(len(c.pending))
		lat = append(lat, c.lat...)
		for k, v := range c.codes {
			if res.Codes == nil {
				res.Codes = map[string]int64{}
			}
			res.Codes[k] += v
		}
		for k, v := range c.errs {
			if res.Errors == nil {
				res.Errors = map[string]int64{}
			}
			res.Errors[k] += v
		}
		if c.lastAns.After(lastAns) {
			lastAns = c.lastAns
		}
	}
	res.Latency = Summarize(lat)
	// The window ends with the last answer: requests given up on do not
	// stretch it by their timeout.
	res.Window = end.Sub(start)
	if !lastAns.IsZero() {
		res.Window = lastAns.Sub(start)
	}
	if res.Window > 0 {
		res.Throughput = float64(res.OK) / res.Window.Seconds()
	}
	res.GeneratorCPUSeconds = (selfAfter - selfBefore).Seconds()
	if res.OK > 0 {
		res.GeneratorCPUPerMillion = res.GeneratorCPUSeconds / float64(res.OK) * 1e6
	}
	if o.TargetPID != 0 {
		res.TargetCPUSeconds = (after.CPU - before.CPU).Seconds()
		res.TargetRSSAfter = after.RSS
		res.TargetRSSPeak = max(peak, after.RSS)
		if res.OK > 0 {
			res.CPUSecondsPerMillion = res.TargetCPUSeconds / float64(res.OK) * 1e6
		}
	}
	res.Elapsed = time.Since(res.Started)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func dialCoAP(ctx context.Context, o CoAPOptions, i int, laddr, raddr *net.UDPAddr) (net.Conn, error) {
	if !o.DTLS {
		c, err := net.DialUDP("udp", laddr, raddr)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	pc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}
	identity, key := o.PSK(i)
	dc, err := piondtls.Client(pc, raddr, &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := dc.HandshakeContext(hctx); err != nil {
		_ = dc.Close()
		return nil, fmt.Errorf("DTLS handshake as %s: %w", identity, err)
	}
	return dc, nil
}

// send issues the device's requests: paced to its share of Rate, or as
// fast as its window allows; then waits for the window to empty.
func (c *coapClient) send(ctx context.Context, o CoAPOptions, start, deadline time.Time, k, n int, dgram *int) {
	var opts message.Options
	for _, seg := range strings.Split(strings.Trim(o.Path, "/"), "/") {
		opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(seg)})
	}
	opts = append(opts, message.Option{ID: message.ContentFormat, Value: []byte{ContentFormatSenMLCBOR}})
	if o.Query != nil {
		for _, q := range o.Query(c.i) {
			opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
		}
	}
	typ := message.NonConfirmable
	if o.Confirmable {
		typ = message.Confirmable
	}
	var interval time.Duration
	next := start
	if o.Rate > 0 {
		interval = time.Duration(float64(n) / o.Rate * float64(time.Second))
		next = start.Add(interval * time.Duration(k) / time.Duration(n)) // spread the devices' phases
	}
	mid := uint16(rand.Uint32())
	var payload, buf []byte
	var lastMs int64
	var tok [4]byte
	for seq := 0; o.Duration > 0 || seq < o.RequestsPerClient; seq++ {
		if seq >= MaxCoAPRequestsPerClient {
			break // every message id of this endpoint is used
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			next = next.Add(interval)
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		now := time.Now()
		if !deadline.IsZero() && now.After(deadline) {
			<-c.slots
			break
		}
		tsMs := now.UnixMilli()
		if tsMs <= lastMs {
			tsMs = lastMs + 1
		}
		lastMs = tsMs
		payload = appendSenMLCBOR(payload[:0], c.code, seq, tsMs, o.PayloadSize)
		binary.BigEndian.PutUint32(tok[:], uint32(seq)+1)
		m := message.Message{Token: tok[:], Options: opts, Code: o.Method, Payload: payload, MessageID: int32(mid), Type: typ}
		size, err := coder.DefaultCoder.Size(m)
		if err != nil {
			panic("loadgen: CoAP message: " + err.Error()) // fixed layout: a programming error
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := coder.DefaultCoder.Encode(m, buf); err != nil {
			panic("loadgen: CoAP message: " + err.Error())
		}
		if seq == 0 && c.i == 0 {
			*dgram = size
		}
		p := &coapPending{mid: mid, first: now, lastTx: now, tx: 1}
		if o.Confirmable {
			p.raw = append([]byte(nil), buf...)
		}
		t := binary.BigEndian.Uint32(tok[:])
		c.mu.Lock()
		c.pending[t] = p
		c.byMID[mid] = t
		c.sent++
		c.mu.Unlock()
		if _, err := c.conn.Write(buf); err != nil {
			c.mu.Lock()
			c.addErr("write")
			if _, ok := c.pending[t]; ok {
				c.finishLocked(t, p)
			}
			c.mu.Unlock()
		}
		mid++
	}
	// Wait for the window to empty: take every slot.
	for range cap(c.slots) {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
	}
}

// read takes the device's responses until its socket is closed.
func (c *coapClient) read(o CoAPOptions) {
	buf := make([]byte, 64<<10)
	var m message.Message
	m.Options = make(message.Options, 0, 16)
	var ack []byte
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if c.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			c.mu.Lock()
			c.addErr("read")
			c.mu.Unlock()
			if o.DTLS {
				// pion ends a connection on fatal errors: nothing more comes.
				var fe *piondtls.FatalError
				if errors.As(err, &fe) {
					return
				}
			}
			time.Sleep(time.Millisecond) // e.g. ICMP port unreachable on a connected socket
			continue
		}
		now := time.Now()
		m.Options = m.Options[:0]
		m.Token = nil
		m.Payload = nil
		_, err = coder.DefaultCoder.Decode(buf[:n], &m)
		if errors.Is(err, message.ErrOptionsTooSmall) {
			m.Options = make(message.Options, 0, 256)
			_, err = coder.DefaultCoder.Decode(buf[:n], &m)
		}
		if err != nil {
			c.mu.Lock()
			c.addErr("malformed_response")
			c.mu.Unlock()
			continue
		}
		mid := uint16(m.MessageID)
		c.mu.Lock()
		switch {
		case m.Type == message.Acknowledgement && m.Code == codes.Empty:
			// Separate response follows (RFC 7252 §5.2.2): stop retransmitting.
			if t, ok := c.byMID[mid]; ok {
				c.pending[t].acked = true
			}
			c.mu.Unlock()
			continue
		case m.Type == message.Reset:
			if t, ok := c.byMID[mid]; ok {
				p := c.pending[t]
				c.answer++
				c.count("RST")
				c.lastAns = now
				c.finishLocked(t, p)
			}
			c.mu.Unlock()
			continue
		}
		if m.Type == message.Confirmable {
			// A separate CON response: acknowledge it (empty ACK, same id).
			ack = append(ack[:0], 1<<6|byte(message.Acknowledgement)<<4, 0, byte(mid>>8), byte(mid))
			_, _ = c.conn.Write(ack)
		}
		var t uint32
		if len(m.Token) == 4 {
			t = binary.BigEndian.Uint32(m.Token)
		}
		p, ok := c.pending[t]
		if !ok {
			// A late answer to a request already given up, or a duplicate.
			c.addErr("late_or_duplicate_response")
			c.mu.Unlock()
			continue
		}
		c.answer++
		code := CodeString(m.Code)
		c.count(code)
		if m.Code>>5 == 2 {
			c.ok++
			c.lat = append(c.lat, now.Sub(p.first))
		}
		c.lastAns = now
		c.finishLocked(t, p)
		c.mu.Unlock()
	}
}

func (c *coapClient) count(code string) {
	if c.codes == nil {
		c.codes = map[string]int64{}
	}
	c.codes[code]++
}

// sweep retransmits CON requests whose ACK is overdue (RFC 7252 §4.2: the
// timeout doubles each time) and gives up on requests older than Timeout.
func sweep(ctx context.Context, o CoAPOptions, cs []*coapClient) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var resend [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, c := range cs {
			resend = resend[:0]
			c.mu.Lock()
			for t, p := range c.pending {
				if now.Sub(p.first) > o.Timeout {
					c.unans++
					c.finishLocked(t, p)
					continue
				}
				if o.Confirmable && !p.acked && p.tx <= o.MaxRetransmit && now.Sub(p.lastTx) >= o.AckTimeout<<(p.tx-1) {
					p.tx++
					p.lastTx = now
					c.retx++
					resend = append(resend, p.raw)
				}
			}
			c.mu.Unlock()
			for _, b := range resend {
				_, _ = c.conn.Write(b)
			}
		}
	}
}

// SortedCodes lists a result's response codes in order, "2.04 n, 4.29 m".
func SortedCodes(m map[string]int64) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
