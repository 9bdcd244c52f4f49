package device

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
)

// coapTransport sends telemetry, reported state and command results as
// confirmable CoAP POSTs (docs/PROTOCOL.md §7): over plain UDP with a device
// token in each request's "t=" query, or over DTLS with the identity's
// certificate. Twins and commands are delivered over MQTT only in this
// version of the SDK.
type coapTransport struct {
	c    *Client
	addr string
	dtls *piondtls.Config // nil: plain UDP with tokens

	mu    sync.Mutex
	conn  *udpclient.Conn
	token string
	renew time.Time // sign a new token from then on
}

func newCoAP(c *Client, u *url.URL) (*coapTransport, error) {
	t := &coapTransport{c: c}
	port := "5683"
	switch u.Scheme {
	case "coap":
	case "coaps":
		port = "5684"
		host := c.opts.ServerName
		if host == "" {
			host = u.Hostname()
		}
		tc, err := c.opts.Identity.TLSConfig(host)
		if err != nil {
			return nil, err
		}
		t.dtls = &piondtls.Config{
			Certificates:          tc.Certificates,
			RootCAs:               tc.RootCAs,
			ServerName:            host,
			ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
			ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
		}
	default:
		return nil, fmt.Errorf("device: CoAP endpoint %q: want coap://host:port or coaps://host:port", u)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("device: CoAP endpoint %q: no host", u)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// run closes the connection when the client closes.
func (t *coapTransport) run(ctx context.Context) {
	<-ctx.Done()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn != nil {
		_ = t.conn.Close()
		<-t.conn.Done()
		t.conn = nil
	}
}

// connLocked returns the connection, dialing one if there is none.
func (t *coapTransport) connLocked() (*udpclient.Conn, error) {
	if t.conn != nil {
		return t.conn, nil
	}
	var cc *udpclient.Conn
	var err error
	if t.dtls != nil {
		cc, err = dtls.Dial(t.addr, t.dtls)
	} else {
		cc, err = udp.Dial(t.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", t.addr, err)
	}
	t.conn = cc
	return cc, nil
}

// drop closes a connection that failed, so the next request dials anew.
func (t *coapTransport) drop(cc *udpclient.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == cc {
		_ = cc.Close()
		t.conn = nil
	}
}

// tokenLocked returns a device token, signing a new one when the current
// one nears its expiry (a tenth of its lifetime before, at most a minute).
func (t *coapTransport) tokenLocked() (string, error) {
	now := t.c.opts.Now()
	if t.token != "" && now.Before(t.renew) {
		return t.token, nil
	}
	tok, err := t.c.opts.Identity.Token(now, t.c.opts.TokenTTL)
	if err != nil {
		return "", err
	}
	exp, _ := devtoken.Expiry(tok)
	t.token, t.renew = tok, exp.Add(-min(t.c.opts.TokenTTL/10, time.Minute))
	return tok, nil
}

// send POSTs payload and reads the answer.
func (t *coapTransport) send(ctx context.Context, kind msgKind, payload []byte) error {
	path, cf := "/t", message.AppSenmlJSON
	switch kind.what {
	case "reported":
		path, cf = "/tw/r", message.AppJSON
	case "result":
		path, cf = "/c/"+kind.id, message.AppJSON
	}
	t.mu.Lock()
	cc, err := t.connLocked()
	var tok string
	if err == nil && t.dtls == nil {
		tok, err = t.tokenLocked()
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := cc.NewPostRequest(rctx, path, cf, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("coap: %w", err)
	}
	defer cc.ReleaseMessage(req)
	// An option value holds at most 255 bytes: a longer token goes in
	// several "t=" options, which the hub joins in order.
	for len(tok) > 0 {
		n := min(len(tok), 200)
		req.AddOptionString(message.URIQuery, "t="+tok[:n])
		tok = tok[n:]
	}
	resp, err := cc.Do(req)
	if err != nil {
		t.drop(cc)
		return fmt.Errorf("coap: POST %s: %w", path, err)
	}
	defer cc.ReleaseMessage(resp)
	code := resp.Code()
	if code == codes.Changed || code == codes.Created {
		return nil
	}
	var diag []byte
	if resp.Body() != nil {
		diag, _ = resp.ReadBody()
	}
	switch code {
	case codes.Unauthorized:
		// A token the hub no longer takes (clocks apart, a key rotated):
		// sign a new one for the next try.
		t.mu.Lock()
		t.token = ""
		t.mu.Unlock()
		return fmt.Errorf("coap: POST %s: %v", path, code)
	case codes.TooManyRequests, codes.ServiceUnavailable, codes.InternalServerError, codes.GatewayTimeout:
		return fmt.Errorf("coap: POST %s: %v %s", path, code, diag)
	}
	reason, msg, ok := strings.Cut(string(diag), ": ")
	if !ok {
		reason, msg = code.String(), string(diag)
	}
	return &RefusedError{Reason: reason, Message: msg}
}
