package coap

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

// TestFailedPSKAuthIsUniform: docs/PROTOCOL.md §7.1: a DTLS-PSK handshake
// that names an unknown identity, a revoked device (with the key it had), or
// a known device with a wrong key fails the same way: the hub's Finished
// never comes (the Finished check fails), no alert tells the cases apart,
// and none ends sooner than the others. The reason is counted and logged,
// not told. (The hub answered an unknown identity at once with a fatal
// alert, and a revoked device with internal_error, while a wrong key got
// silence.)
func TestFailedPSKAuthIsUniform(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HandshakeTimeout = 3 * time.Second })
	good := e.device("acme:pump-auth-1", true)
	revoked := e.device("acme:pump-auth-2", true)
	revokedKey, err := e.pskOf(e.ctx, revoked.code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Revoke(e.ctx, "admin", revoked.code, "test"); err != nil {
		t.Fatal(err)
	}
	e.srv.DisconnectDevice(revoked.code)
	wrong := []byte(e.psk.Derive(good.code, "not-the-key"))
	cases := []struct {
		name, identity string
		key            []byte
		reason         string
	}{
		{"unknown identity", "acme:pump-nobody", wrong, "psk_unknown_identity"},
		{"revoked device", revoked.code, revokedKey, "psk_not_admitted"},
		{"wrong key", good.code, wrong, ""},
	}
	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make([]result, len(cases))
	before := make([]float64, len(cases))
	for i, c := range cases {
		if c.reason != "" {
			before[i] = testutil.ToFloat64(e.srv.m.rejected.WithLabelValues(c.reason))
		}
	}
	const clientTimeout = 2 * time.Second
	var wg sync.WaitGroup
	for i, c := range cases {
		conn := dialPSK(t, e.srv.Addr(ListenerDTLS), c.identity, c.key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			start := time.Now()
			err := conn.HandshakeContext(ctx)
			results[i] = result{err, time.Since(start)}
		}()
	}
	wg.Wait()
	for i, c := range cases {
		r := results[i]
		var alert interface{ IsFatalOrCloseNotify() bool }
		switch {
		case r.err == nil:
			t.Errorf("%s: the handshake succeeded", c.name)
		case errors.As(r.err, &alert):
			t.Errorf("%s: the hub sent an alert (%v) after %v; a wrong key gets none", c.name, r.err, r.elapsed.Round(time.Millisecond))
		case r.elapsed < clientTimeout-100*time.Millisecond:
			t.Errorf("%s: failed after %v (%v), before the client gave up", c.name, r.elapsed.Round(time.Millisecond), r.err)
		}
		if c.reason != "" {
			if got := testutil.ToFloat64(e.srv.m.rejected.WithLabelValues(c.reason)) - before[i]; got < 1 {
				t.Errorf("%s: wanwu_coap_rejected_total{reason=%q} did not grow", c.name, c.reason)
			}
		}
	}
	// The device with the right key still gets in.
	pc, err := e.pskClient(good)
	if err != nil {
		t.Fatal(err)
	}
	if r := post(t, pc, message.Confirmable, "/t", "", message.AppJSON, []byte(`{"setpoint":57}`)); r.Code() != codes.Changed {
		t.Fatalf("the right key: %v", r.Code())
	}
}

// TestFailedTokenAuthIsUniform: on the plain UDP listener a token of an
// unknown device, of a revoked device, with a bad signature, expired, or no
// token at all are answered alike: 4.01 without a diagnostic, the same
// bytes but for the message id and token.
func TestFailedTokenAuthIsUniform(t *testing.T) {
	e := newEnv(t, nil)
	good := e.device("acme:pump-auth-3", true)
	revoked := e.device("acme:pump-auth-4", true)
	revokedTok := revoked.token(t)
	if _, err := e.reg.Revoke(e.ctx, "admin", revoked.code, "test"); err != nil {
		t.Fatal(err)
	}
	e.srv.DisconnectDevice(revoked.code)
	stranger, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	unknownTok, err := devtoken.Sign(stranger, "acme:pump-nobody", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignTok, err := devtoken.Sign(stranger, good.code, time.Now(), time.Hour) // good's code, another key
	if err != nil {
		t.Fatal(err)
	}
	expiredTok, err := devtoken.Sign(good.key, good.code, time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	goodTok := good.token(t)
	badSig := []byte(goodTok)
	badSig[len(badSig)-5] ^= 1
	r := dialRaw(t, e.srv.Addr(ListenerUDP))
	var first []byte
	for i, c := range []struct{ name, token string }{
		{"unknown device", unknownTok},
		{"revoked device", revokedTok},
		{"another key", foreignTok},
		{"bad signature", string(badSig)},
		{"expired", expiredTok},
		{"garbage", "x.y.z"},
		{"none", ""},
	} {
		for _, path := range []string{"/t", "/tw/r"} { // the fast path and go-coap's
			o := opts(path)
			if c.token != "" {
				o = opts(path, "t="+c.token)
			}
			o = withOpt(o, message.ContentFormat, uint32(message.AppJSON))
			b := r.roundTrip(encode(t, message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(0x7000 + i), Token: []byte{0x70, byte(i)}, Options: o, Payload: []byte(`{"setpoint":58}`)}), 5*time.Second)
			if b == nil {
				t.Fatalf("%s %s: no answer", c.name, path)
			}
			m := decode(t, b)
			if m.Code != codes.Unauthorized || len(m.Payload) != 0 {
				t.Errorf("%s %s: answered %v %q, want 4.01 without a diagnostic", c.name, path, m.Code, m.Payload)
			}
			// Same bytes but the message id (bytes 2-3) and token.
			norm := append(append([]byte{b[0], b[1]}, b[4+len(m.Token):]...), byte(len(m.Token)))
			if first == nil {
				first = norm
			} else if !bytes.Equal(norm, first) {
				t.Errorf("%s %s: answer %x differs from the first refusal's", c.name, path, b)
			}
		}
	}
}
