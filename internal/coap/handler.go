package coap

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/adapter"
	"github.com/wanwu-iot/wanwu/internal/code"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/netuse"
	"github.com/wanwu-iot/wanwu/internal/psk"
	"github.com/wanwu-iot/wanwu/internal/registry"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// connState is what the server knows about one connection: a remote
// endpoint of the plain UDP listener, or a DTLS session.
type connState struct {
	udp *udpSession // nil for DTLS

	mu  sync.Mutex
	dev *device // DTLS: the session's device, once admitted; UDP: the last authenticated

	nonMu   sync.Mutex
	nonSeen map[int32]time.Time // message ids of recent NON requests
}

// meter is what counts the bytes of the connection: the plain-UDP
// endpoint's, or the DTLS session's.
func (c *connState) meter(cc *client.Conn) *netuse.Meter {
	if c.udp != nil {
		return &c.udp.meter
	}
	if sc, ok := cc.NetConn().(*screenedConn); ok {
		return &sc.meter
	}
	return nil
}

// nonLifetime is NON_LIFETIME (RFC 7252 §4.8.2).
const nonLifetime = 145 * time.Second

// maxNONSeen bounds the remembered NON message ids of one endpoint.
const maxNONSeen = 1024

// seenNON records a NON request's message id and reports whether it was
// seen within NON_LIFETIME.
func (c *connState) seenNON(mid int32, now time.Time) bool {
	c.nonMu.Lock()
	defer c.nonMu.Unlock()
	if c.nonSeen == nil {
		c.nonSeen = map[int32]time.Time{}
	}
	if t, ok := c.nonSeen[mid]; ok && now.Sub(t) < nonLifetime {
		return true
	}
	if len(c.nonSeen) >= maxNONSeen {
		for k, t := range c.nonSeen {
			if now.Sub(t) >= nonLifetime {
				delete(c.nonSeen, k)
			}
		}
		if len(c.nonSeen) >= maxNONSeen {
			// Message ids are a 16-bit sequence: forget the farthest back.
			for k := range c.nonSeen {
				if uint16(mid-k) > 0x8000 || uint16(mid-k) > maxNONSeen {
					delete(c.nonSeen, k)
				}
			}
		}
	}
	c.nonSeen[mid] = now
	return false
}

func (c *connState) code() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dev == nil {
		return ""
	}
	return c.dev.code
}

// device is an authenticated, admitted device.
type device struct {
	code, tenant string
	quarantined  bool
	model        *thingmodel.Model
}

// Content formats (RFC 7252 §12.3).
var (
	cfText = message.TextPlain
	cfJSON = message.AppJSON
)

// requestTimeout bounds a request's registry, twin and command calls.
const requestTimeout = 10 * time.Second

// maxDiagnostic bounds a diagnostic payload (RFC 7252 §5.5.2): enough for
// the reason and the property, short enough for an NB-IoT downlink.
const maxDiagnostic = 160

// reply answers a request: code, and for authenticated requests a
// diagnostic payload.
func reply(w *responsewriter.ResponseWriter[*client.Conn], c codes.Code, diag string, opts ...message.Option) {
	if diag == "" {
		_ = w.SetResponse(c, cfText, nil, opts...)
		return
	}
	if len(diag) > maxDiagnostic {
		diag = diag[:maxDiagnostic]
	}
	_ = w.SetResponse(c, cfText, strings.NewReader(diag), opts...)
}

func replyJSON(w *responsewriter.ResponseWriter[*client.Conn], c codes.Code, body []byte, opts ...message.Option) {
	_ = w.SetResponse(c, cfJSON, bytes.NewReader(body), opts...)
}

// rejectReply answers with a reason of PROTOCOL.md §2.
func (s *Server) rejectReply(w *responsewriter.ResponseWriter[*client.Conn], rej *ingest.Rejection) {
	s.m.rejected.WithLabelValues(string(rej.Reason)).Inc()
	if sec := rej.Reason.RetryAfter(); sec > 0 {
		reply(w, codes.Code(rej.Reason.CoAPCode()), rej.Error(), maxAge(sec))
		return
	}
	reply(w, codes.Code(rej.Reason.CoAPCode()), rej.Error())
}

// maxAge is the Max-Age option of a 5.03 answer: when to retry (RFC 7252
// §5.9.3.4).
func maxAge(sec int) message.Option {
	var buf [4]byte
	n, _ := message.EncodeUint32(buf[:], uint32(sec))
	return message.Option{ID: message.MaxAge, Value: buf[:n]}
}

func listenerName(st *connState) string {
	if st.udp != nil {
		return ListenerUDP
	}
	return ListenerDTLS
}

// pathSegments returns the Uri-Path options.
func pathSegments(r *pool.Message) []string {
	var segs []string
	for _, o := range r.Options() {
		if o.ID == message.URIPath {
			segs = append(segs, string(o.Value))
		}
	}
	return segs
}

// queryToken joins the values of the "t=" Uri-Query options: a device token
// longer than one option's 255 bytes may be split over several.
// The result may share the request's memory: copy it to keep it.
func queryToken(r *pool.Message) []byte { return tokenOf(r.Options()) }

// tokenOf is queryToken over decoded options.
func tokenOf(opts message.Options) []byte {
	var tok []byte
	parts := 0
	for _, o := range opts {
		if o.ID == message.URIQuery && bytes.HasPrefix(o.Value, []byte("t=")) {
			switch parts++; parts {
			case 1:
				tok = o.Value[2:]
			case 2:
				tok = append(append([]byte(nil), tok...), o.Value[2:]...)
			default:
				tok = append(tok, o.Value[2:]...)
			}
		}
	}
	return tok
}

// handle is the request handler of every connection, called by go-coap
// after deduplication (RFC 7252 §4.5) and block-wise reassembly (RFC 7959).
func (s *Server) handle(w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message) {
	if r.Code() == codes.Empty || r.Code()>>5 != 0 {
		return // not a request (a CON gets its empty ACK from go-coap)
	}
	cc := w.Conn()
	st := s.state(cc)
	if st == nil {
		return
	}
	switch opts := r.Options(); {
	case opts.HasOption(message.ProxyURI) || opts.HasOption(message.ProxyScheme):
		// The hub is no proxy (RFC 7252 §5.7.2).
		s.m.rejected.WithLabelValues("proxying_not_supported").Inc()
		reply(w, codes.ProxyingNotSupported, "")
	case unsupportedCritical(opts):
		s.m.dropped.WithLabelValues("bad_option").Inc()
		if r.Type() != message.Confirmable {
			return // a NON request is rejected: silently ignored (§5.4.1, §4.3)
		}
		reply(w, codes.BadOption, "")
	default:
		s.serve(w, r, cc, st)
	}
	s.m.requests.WithLabelValues(listenerName(st), w.Message().Code().String()).Inc()
}

// unsupportedCritical reports whether a request carries a critical option
// (an odd number, RFC 7252 §5.4.1) that the hub does not act on: one it does
// not know, or a condition (If-Match, If-None-Match, §5.10.8) that it would
// otherwise ignore. Such a CON request is answered 4.02 Bad Option; a NON
// one is not processed.
func unsupportedCritical(opts message.Options) bool {
	for _, o := range opts {
		if o.ID%2 == 0 {
			continue
		}
		if o.ID == message.IfMatch || o.ID == message.IfNoneMatch {
			return true
		}
		if _, known := message.CoapOptionDefs[o.ID]; !known {
			return true
		}
	}
	return false
}

func (s *Server) serve(w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, cc *client.Conn, st *connState) {
	// Telemetry and events use the server's context as it is: the pipeline
	// bounds its own waits, and a timer per datagram is measurable at tens
	// of thousands per second. The rest, and a registry lookup, get one.
	ctx := s.ctx
	if rf, _ := r.Context().Value(refusedKey{}).(*refusal); rf != nil {
		// A block refused before go-coap buffered it (processReceived).
		if rf.rej != nil {
			s.rejectReply(w, rf.rej)
			return
		}
		s.m.rejected.WithLabelValues(rf.reason).Inc()
		reply(w, rf.code, "") // no diagnostic: the source may be spoofed
		return
	}
	dev, c, why := s.authenticate(cc, st, r)
	if dev == nil {
		s.m.rejected.WithLabelValues(why).Inc()
		reply(w, c, "") // no diagnostic: the source may be spoofed (amplification)
		return
	}
	segs := pathSegments(r)
	route := strings.Join(segs, "/")
	remediation := (r.Code() == codes.GET && route == "c") || (r.Code() == codes.POST && len(segs) == 2 && segs[0] == "c")
	if rej := s.gate(dev, remediation, time.Now()); rej != nil {
		s.rejectReply(w, rej)
		return
	}
	if tl, _ := r.Context().Value(tooLargeKey{}).(bool); tl {
		s.m.rejected.WithLabelValues(string(ingest.TooLarge)).Inc()
		// RFC 7959 §2.9.3: 4.13 with Size1 telling the largest body accepted.
		reply(w, codes.RequestEntityTooLarge, "too_large: body over "+itoa(s.maxPayload)+" bytes")
		w.Message().SetOptionUint32(message.Size1, uint32(s.maxPayload))
		return
	}
	switch {
	case len(segs) == 1 && segs[0] == "t":
		if s.method(w, r, codes.POST) {
			s.ingest(ctx, w, r, dev, route, "")
		}
		return
	case len(segs) == 2 && segs[0] == "e":
		if s.method(w, r, codes.POST) {
			s.ingest(ctx, w, r, dev, route, segs[1])
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if s.opts.Presence != nil { // telemetry and events tell it through the intake
		s.opts.Presence.Seen(dev.code, dev.tenant, "coap")
	}
	switch {
	case len(segs) == 2 && segs[0] == "tw" && segs[1] == "r":
		if s.method(w, r, codes.POST) {
			s.twinReport(ctx, w, r, dev)
		}
	case len(segs) == 2 && segs[0] == "tw" && segs[1] == "d":
		if s.method(w, r, codes.GET) && acceptsJSON(w, r) {
			s.twinDesired(ctx, w, r, cc, dev)
		}
	case len(segs) == 1 && segs[0] == "c":
		if s.method(w, r, codes.GET) && acceptsJSON(w, r) {
			s.commandGet(ctx, w, r, cc, dev)
		}
	case len(segs) == 2 && segs[0] == "c":
		if s.method(w, r, codes.POST) {
			s.commandResult(ctx, w, r, dev, segs[1])
		}
	default:
		reply(w, codes.NotFound, "no such path")
	}
}

// gate applies the per-device request rate and, for a quarantined device,
// lets only remediation requests (GET /c, POST /c/<id>) through.
func (s *Server) gate(dev *device, remediation bool, now time.Time) *ingest.Rejection {
	if !s.devLimit.Allow(dev.code, now) {
		return ingest.Reject(ingest.RateLimited, "over the per-device request rate")
	}
	if dev.quarantined && !remediation {
		return ingest.Reject(ingest.NotAuthorized, "device is quarantined: remediation only")
	}
	return nil
}

// method answers 4.05 Method Not Allowed unless r has method m.
func (s *Server) method(w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, m codes.Code) bool {
	if r.Code() == m {
		return true
	}
	reply(w, codes.MethodNotAllowed, "use "+m.String())
	return false
}

// acceptsJSON answers 4.06 Not Acceptable unless the request accepts JSON,
// the one representation of /tw/d and /c (RFC 7252 §5.10.4).
func acceptsJSON(w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message) bool {
	v, err := r.Options().GetUint32(message.Accept)
	if err != nil || v == uint32(message.AppJSON) {
		return true // no Accept option
	}
	reply(w, codes.NotAcceptable, "not_acceptable: the answer is application/json (50)")
	return false
}

// authenticate identifies the device of a request: the DTLS session's PSK
// identity or certificate, or on plain UDP the device token in "t=". It
// returns nil and the response code (4.01, 5.03) when it cannot.
func (s *Server) authenticate(cc *client.Conn, st *connState, r *pool.Message) (*device, codes.Code, string) {
	if st.udp == nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.dev != nil {
			return st.dev, 0, ""
		}
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		defer cancel()
		dev, c, why := s.authenticateDTLS(ctx, cc)
		if dev != nil {
			st.dev = dev
			s.opts.Usage.Attribute(st.meter(cc), dev.code, dev.tenant)
		}
		return dev, c, why
	}
	return s.authenticateToken(st, queryToken(r))
}

// authenticateToken identifies a plain-UDP request by its device token.
func (s *Server) authenticateToken(st *connState, tok []byte) (*device, codes.Code, string) {
	if len(tok) == 0 {
		return nil, codes.Unauthorized, "no_credentials"
	}
	now := time.Now()
	dev := s.tokens.get(tok, now)
	var c codes.Code
	var why string
	if dev == nil {
		token := string(tok)
		gen := s.tokens.generation()
		ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
		adm, err := s.opts.Registry.AuthenticateDevice(ctx, nil, "", token)
		if dev, c, why = s.admit(ctx, adm, err); dev != nil {
			s.tokens.put(token, dev, now, gen)
		}
		cancel()
	}
	if dev != nil {
		st.udp.authed.Store(true)
		st.mu.Lock()
		changed := st.dev == nil || st.dev.code != dev.code
		st.dev = dev
		st.mu.Unlock()
		if changed {
			// The endpoint's datagrams are this device's from now on
			// (and those before, which led up to this request).
			s.opts.Usage.Attribute(&st.udp.meter, dev.code, dev.tenant)
		}
	}
	return dev, c, why
}

func (s *Server) authenticateDTLS(ctx context.Context, cc *client.Conn) (*device, codes.Code, string) {
	dc := dtlsConnOf(cc.NetConn())
	if dc == nil {
		return nil, codes.Unauthorized, "no_credentials"
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return nil, codes.Unauthorized, "no_credentials"
	}
	var adm registry.Admission
	var err error
	switch {
	case len(state.PeerCertificates) > 0:
		cert, perr := x509.ParseCertificate(state.PeerCertificates[0])
		if perr != nil {
			return nil, codes.Unauthorized, "bad_certificate"
		}
		adm, err = s.opts.Registry.AuthenticateDevice(ctx, cert, "", "")
	case len(state.IdentityHint) > 0:
		id, _ := psk.ParseIdentity(string(state.IdentityHint))
		if _, perr := code.Parse(id); perr != nil {
			return nil, codes.Unauthorized, "bad_identity"
		}
		// The PSK proved the identity in the handshake; the object's own
		// state decides the rest.
		adm, err = s.opts.Registry.Admit(ctx, id, registry.Presented{})
	default:
		return nil, codes.Unauthorized, "no_credentials"
	}
	return s.admit(ctx, adm, err)
}

// admit turns an admission answer into a device (active or quarantined).
func (s *Server) admit(ctx context.Context, adm registry.Admission, err error) (*device, codes.Code, string) {
	if err != nil {
		if errors.Is(err, registry.ErrDeviceAuth) {
			return nil, codes.Unauthorized, "bad_credentials"
		}
		s.log.Warn("coap: registry unavailable", "err", err)
		return nil, codes.ServiceUnavailable, "registry_unavailable"
	}
	switch adm.Status {
	case registry.StatusActive, registry.StatusQuarantined:
	default:
		return nil, codes.Unauthorized, "admission_" + adm.Status
	}
	o := adm.Object
	m, err := s.opts.Registry.ModelOf(ctx, o)
	if err != nil {
		s.log.Warn("coap: registry unavailable", "err", err)
		return nil, codes.ServiceUnavailable, "registry_unavailable"
	}
	return &device{code: o.Code, tenant: o.Tenant, quarantined: adm.Status == registry.StatusQuarantined, model: m}, 0, ""
}

// contentType is the request's Content-Format as ingest names it, "" if none.
func contentType(r *pool.Message) string { return contentTypeOf(r.Options()) }

// contentTypeOf is contentType over decoded options.
func contentTypeOf(opts message.Options) string {
	cf, err := opts.ContentFormat()
	if err != nil {
		return ""
	}
	return ingest.CoAPContentType(uint16(cf))
}

// ingest handles POST /t and POST /e/<event> as internal/api/ingest.go does
// for HTTP: decode and validate, dead-letter a rejection, and answer 2.04
// Changed only once the pipeline made the message durable.
func (s *Server) ingest(ctx context.Context, w *responsewriter.ResponseWriter[*client.Conn], r *pool.Message, dev *device, path, event string) {
	payload, err := readBody(r)
	if err != nil {
		s.rejectReply(w, ingest.Reject(ingest.Malformed, "unreadable body"))
		return
	}
	rej, _ := s.opts.Intake.AcceptWait(ctx, &adapter.Upload{
		Device: ingest.Device{Code: dev.code, Tenant: dev.tenant, Model: dev.model},
		Source: "coap", Topic: "/" + path, Event: event, ContentType: contentType(r), Payload: payload,
	})
	if rej != nil {
		s.rejectReply(w, rej)
		return
	}
	kind := ingest.Telemetry
	if event != "" {
		kind = ingest.Event
	}
	s.m.accepted.WithLabelValues(kind.String()).Inc()
	reply(w, codes.Changed, "")
}

// readBody is pool.Message.ReadBody without its 1 KiB minimum buffer: a
// telemetry body is often a tenth of that.
func readBody(r *pool.Message) ([]byte, error) {
	body := r.Body()
	if body == nil {
		return nil, nil
	}
	size, err := r.BodySize()
	if err != nil || size == 0 {
		return nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	return b, nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
