package coap

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/client"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// post sends a POST with the given type (CON or NON) and returns the response.
func post(t testing.TB, cc *client.Conn, typ message.Type, path, token string, cf message.MediaType, body []byte) *pool.Message {
	t.Helper()
	ctx := ctxT(t)
	req, err := cc.NewPostRequest(ctx, path, cf, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.AddQuery("t=" + token)
	}
	req.SetType(typ)
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

func body(t testing.TB, m *pool.Message) string {
	b, err := m.ReadBody()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func telemetryJSON(temp float64, at time.Time) []byte {
	return fmt.Appendf(nil, `{"temperature":%g,"ts":%d}`, temp, at.Unix())
}

// TestTelemetryUDP: RFC 7252 §5.8.2 POST answered 2.04 Changed once durable,
// over CON (§4.2, piggybacked ACK) and NON (§4.3) requests.
func TestTelemetryUDP(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-1", true)
	cc := e.udpClient("")
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i, typ := range []message.Type{message.Confirmable, message.NonConfirmable} {
		resp := post(t, cc, typ, "/t", d.token(t), message.AppJSON, telemetryJSON(20+float64(i), base.Add(time.Duration(i)*time.Second)))
		if resp.Code() != codes.Changed {
			t.Fatalf("%v: %v %q", typ, resp.Code(), body(t, resp))
		}
	}
	if n := e.waitSamples(d.code, "temperature", base.Add(-time.Second), base.Add(time.Minute), 2); n != 2 {
		t.Fatalf("stored %d samples, want 2", n)
	}
}

// TestRejections: the reasons of PROTOCOL.md §2 map to CoAP codes with a
// diagnostic payload (RFC 7252 §5.5.2), and each rejection is a dead letter.
func TestRejections(t *testing.T) {
	e := newEnv(t, nil)
	d := e.device("acme:pump-2", true)
	cc := e.udpClient("")
	tok := d.token(t)
	cases := []struct {
		name string
		cf   message.MediaType
		body string
		want codes.Code
		diag string
	}{
		{"malformed", message.AppJSON, `{"temperature":`, codes.BadRequest, "malformed"},
		{"unsupported format", message.AppXML, `<x/>`, codes.UnsupportedMediaType, "unsupported_format"},
		{"out of range", message.AppJSON, `{"temperature":300}`, codes.Code(0x96), "out_of_range"},
		{"unknown property", message.AppJSON, `{"pressure":1}`, codes.Code(0x96), "unknown_property"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, cc, message.Confirmable, "/t", tok, c.cf, []byte(c.body))
			if resp.Code() != c.want || !strings.HasPrefix(body(t, resp), c.diag) {
				t.Fatalf("got %v %q, want %v %q…", resp.Code(), body(t, resp), c.want, c.diag)
			}
		})
	}
	// Without a token: 4.01 and no diagnostic (amplification, §11.3).
	resp := post(t, cc, message.Confirmable, "/t", "", message.AppJSON, []byte(`{"temperature":1}`))
	if resp.Code() != codes.Unauthorized || body(t, resp) != "" {
		t.Fatalf("no token: %v %q", resp.Code(), body(t, resp))
	}
	// Wrong paths and methods: RFC 7252 §5.9.2.
	req, _ := cc.NewGetRequest(ctxT(t), "/t")
	req.AddQuery("t=" + tok)
	if r, err := cc.Do(req); err != nil || r.Code() != codes.MethodNotAllowed {
		t.Fatalf("GET /t: %v %v", r, err)
	}
	if r := post(t, cc, message.Confirmable, "/x", tok, message.AppJSON, nil); r.Code() != codes.NotFound {
		t.Fatalf("POST /x: %v", r.Code())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		dls, err := e.pipe.DeadLetters(e.ctx, "", d.code, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) >= len(cases) {
			for _, dl := range dls {
				if dl.Source != "coap" || dl.Topic != "/t" {
					t.Errorf("dead letter %+v", dl)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters, want %d", len(dls), len(cases))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
