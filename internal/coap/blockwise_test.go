package coap

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// senmlBody is a SenML JSON body of n temperature records of device code,
// one a second from at: about 75 bytes a record.
func senmlBody(code string, at time.Time, n int) []byte {
	recs := make([]string, n)
	for i := range recs {
		recs[i] = fmt.Sprintf(`{"n":"temperature","u":"Cel","v":21.5,"t":%d,"bn":"%s/"}`, at.Unix()+int64(i), code)
	}
	return []byte("[" + strings.Join(recs, ",") + "]")
}

// block is one request of a block-wise transfer the test sends by hand.
type block struct {
	num  int64
	more bool
	data []byte
}

// split cuts body into blocks of szx.
func split(body []byte, szx blockwise.SZX) []block {
	size := int(szx.Size())
	var bs []block
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		bs = append(bs, block{num: int64(off / size), more: end < len(body), data: body[off:end]})
	}
	return bs
}

// sendBlock sends one Block1 request over a go-coap connection with a token
// of its own (RFC 7959 §2.3 lets a client pick a new token for every block,
// as libcoap 4.3 does) and returns the answer's code and Block1 option.
func sendBlock(t *testing.T, cc *client.Conn, path, devToken string, cf message.MediaType, szx blockwise.SZX, b block, size1 int) (codes.Code, uint32) {
	t.Helper()
	req, err := cc.NewPostRequest(ctxT(t), path, cf, bytes.NewReader(b.data))
	if err != nil {
		t.Fatal(err)
	}
	if devToken != "" {
		req.AddQuery("t=" + devToken)
	}
	v, err := blockwise.EncodeBlockOption(szx, b.num, b.more)
	if err != nil {
		t.Fatal(err)
	}
	req.SetOptionUint32(message.Block1, v)
	if size1 > 0 {
		req.SetOptionUint32(message.Size1, uint32(size1))
	}
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatalf("block %d: %v", b.num, err)
	}
	got, _ := resp.GetOptionUint32(message.Block1)
	return resp.Code(), got
}

// TestBlockwiseRequestIdentity: RFC 7959 §2.3–§2.5: the blocks of a request
// body belong together by endpoint and request (method, Uri-Path, Uri-Query
// and the other options but Block1/Size1), whatever their tokens; §2.9.2: a
// transfer that does not start at block 0, or misses a block, is answered
// 4.08 Request Entity Incomplete and nothing is stored. (go-coap v3.5.5
// keyed the body on the token: with a new token per block the hub took the
// last block for the whole body, refused valid bodies with 4.00, and stored a
// body that the device never sent when its last block alone was valid.)
func TestBlockwiseRequestIdentity(t *testing.T) {
	e := newEnv(t, nil)
	for _, listener := range []string{ListenerUDP, ListenerDTLS} {
		t.Run(listener, func(t *testing.T) {
			d := e.device("acme:pump-bw-"+listener, true)
			// go-coap's own block-wise client would take over at the first
			// 2.31: the test sends every block itself.
			noBlockwise := options.WithBlockwise(false, blockwise.SZX1024, time.Second)
			var cc *client.Conn
			var tok string
			if listener == ListenerUDP {
				cc, tok = e.udpClient("", noBlockwise), d.token(t)
			} else {
				var err error
				if cc, err = e.pskClient(d, noBlockwise); err != nil {
					t.Fatal(err)
				}
			}
			// send sends blocks and returns the code of every answer.
			send := func(path string, cf message.MediaType, szx blockwise.SZX, bs []block, size1 int) []codes.Code {
				t.Helper()
				var got []codes.Code
				for i, b := range bs {
					s1 := 0
					if i == 0 {
						s1 = size1
					}
					c, opt := sendBlock(t, cc, path, tok, cf, szx, b, s1)
					got = append(got, c)
					if c == codes.Continue || c == codes.Changed {
						_, num, more, _ := blockwise.DecodeBlockOption(opt)
						if num != b.num || more != b.more {
							t.Errorf("block %d answered %v with Block1 %d/%v, want it echoed (§2.3)", b.num, c, num, more)
						}
					}
				}
				return got
			}
			want := func(got []codes.Code, last codes.Code) {
				t.Helper()
				for i, c := range got[:len(got)-1] {
					if c != codes.Continue {
						t.Fatalf("block %d of %d answered %v, want 2.31 Continue", i, len(got), c)
					}
				}
				if c := got[len(got)-1]; c != last {
					t.Fatalf("last block answered %v, want %v", c, last)
				}
			}

			for _, szx := range []blockwise.SZX{blockwise.SZX64, blockwise.SZX1024} {
				at := time.Now().Add(-time.Hour).Add(time.Duration(szx) * 5 * time.Minute).Truncate(time.Second)
				payload := senmlBody(d.code, at, 45) // over 3,000 bytes
				if len(payload) < 3000 {
					t.Fatalf("payload %d bytes", len(payload))
				}
				want(send("/t", message.AppSenmlJSON, szx, split(payload, szx), len(payload)), codes.Changed)
				if n := e.waitSamples(d.code, "temperature", at.Add(-time.Second), at.Add(time.Minute), 45); n != 45 {
					t.Fatalf("%d-byte blocks: stored %d samples, want 45", szx.Size(), n)
				}
			}

			// A body whose last block alone is valid JSON is refused as the
			// whole it is, and nothing of it is stored.
			base := time.Now().Add(-time.Minute).Truncate(time.Second)
			last := []byte(`{"setpoint":55}`)
			junk := append(bytes.Repeat([]byte(" "), 1023), '[')
			want(send("/t", message.AppJSON, blockwise.SZX1024, []block{{0, true, junk}, {1, false, last}}, 0), codes.BadRequest)

			// 4.08: a transfer that starts past block 0, one that misses a
			// block, and one whose identity changes midway (another path).
			incomplete := e.srv.m.rejected.WithLabelValues("request_entity_incomplete")
			before := testutil.ToFloat64(incomplete)
			filler := bytes.Repeat([]byte(" "), 64)
			for _, c := range []struct {
				name  string
				paths []string
				bs    []block
			}{
				{"starts at block 1", []string{"/t", "/t"}, []block{{1, true, filler}, {2, false, last}}},
				{"misses block 1", []string{"/t", "/t"}, []block{{0, true, filler}, {2, false, last}}},
				{"changes path", []string{"/e/overheat", "/t"}, []block{{0, true, filler}, {1, false, last}}},
			} {
				var got codes.Code
				for i, b := range c.bs {
					got, _ = sendBlock(t, cc, c.paths[i], tok, message.AppJSON, blockwise.SZX64, b, 0)
				}
				if got != codes.RequestEntityIncomplete {
					t.Errorf("%s: last block answered %v, want 4.08 (§2.9.2)", c.name, got)
				}
			}
			// Both blocks of the first, the last block of the others.
			if n := testutil.ToFloat64(incomplete) - before; n != 4 {
				t.Errorf("wanwu_coap_rejected_total{reason=request_entity_incomplete} grew by %v, want 4", n)
			}
			e.expectSamples(d.code, "setpoint", base, 0)
		})
	}
}

// TestBlockwiseLibcoap: the transfers of TestBlockwiseRequestIdentity with
// libcoap's coap-client (Debian libcoap3-bin), which sends every block with
// a new token: 64- and 1024-byte blocks, over plain UDP and DTLS-PSK. It is
// skipped where coap-client is not installed.
func TestBlockwiseLibcoap(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		bin  string
		dtls bool
		size int
	}{
		{"coap-client-notls", false, 64},
		{"coap-client-notls", false, 1024},
		{"coap-client-openssl", true, 64},
		{"coap-client-openssl", true, 1024},
		{"coap-client-gnutls", true, 1024},
	} {
		name := fmt.Sprintf("%s/b%d", c.bin, c.size)
		t.Run(name, func(t *testing.T) {
			bin, err := exec.LookPath(c.bin)
			if err != nil {
				t.Skipf("%s not installed (Debian: libcoap3-bin)", c.bin)
			}
			d := e.device(fmt.Sprintf("acme:pump-lc-%d-%d", len(name), c.size+len(c.bin)), true)
			run := func(path string, cf int, body []byte) string {
				t.Helper()
				file := filepath.Join(t.TempDir(), "body")
				if err := os.WriteFile(file, body, 0o600); err != nil {
					t.Fatal(err)
				}
				args := []string{"-m", "post", "-b", strconv.Itoa(c.size), "-t", strconv.Itoa(cf), "-f", file, "-B", "20"}
				var uri string
				if c.dtls {
					key, err := e.pskOf(e.ctx, d.code)
					if err != nil {
						t.Fatal(err)
					}
					args = append(args, "-u", d.code, "-k", string(key))
					uri = "coaps://" + e.srv.Addr(ListenerDTLS) + path
				} else {
					// coap-client truncates a long query in the URI: the
					// device token goes in Uri-Query options (15) of its
					// own, split below an option's 255 bytes (doc.go).
					tok := d.token(t)
					for len(tok) > 0 {
						n := min(200, len(tok))
						args, tok = append(args, "-O", "15,t="+tok[:n]), tok[n:]
					}
					uri = "coap://" + e.srv.Addr(ListenerUDP) + path
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, bin, append(args, uri)...).CombinedOutput()
				if err != nil && ctx.Err() != nil {
					t.Fatalf("%s: %v\n%s", c.bin, err, out)
				}
				return string(out)
			}
			at := time.Now().Add(-time.Hour).Add(time.Duration(c.size) * time.Second).Truncate(time.Second)
			payload := senmlBody(d.code, at, 45)
			if out := run("/t", int(message.AppSenmlJSON), payload); strings.Contains(out, "4.") || strings.Contains(out, "5.") {
				t.Fatalf("%d-byte body: %s", len(payload), out)
			}
			if n := e.waitSamples(d.code, "temperature", at.Add(-time.Second), at.Add(time.Minute), 45); n != 45 {
				t.Fatalf("stored %d samples, want 45", n)
			}
			// The last block alone is valid JSON; the body is not.
			base := time.Now().Add(-time.Minute).Truncate(time.Second)
			junk := append(bytes.Repeat([]byte(" "), 2*c.size-1), '[')
			if out := run("/t", int(message.AppJSON), append(junk, `{"setpoint":55}`...)); !strings.Contains(out, "4.00") {
				t.Errorf("a body whose last block alone is valid: coap-client printed %q, want 4.00", out)
			}
			e.expectSamples(d.code, "setpoint", base, 0)
		})
	}
}

// TestBlockwiseBlocksAdmitted: docs/PROTOCOL.md §5: every block counts
// against its device, and a block is buffered only for a device that
// authenticated. go-coap answers the blocks before the last (2.31) without
// calling the handler: they were neither authenticated nor counted, so a
// source without credentials had the hub buffer bodies, and a device
// could send blocks past its rate.
func TestBlockwiseBlocksAdmitted(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Limits = Limits{RequestsPerDevice: 0.01, RequestsPerDeviceBurst: 3, RequestsPerAddr: 1000, RequestsPerAddrBurst: 2000}
	})
	d := e.device("acme:pump-bw-limits", true)
	cc := e.udpClient("", options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	filler := bytes.Repeat([]byte(" "), 64)
	if c, _ := sendBlock(t, cc, "/t", "x.y.z", message.AppJSON, blockwise.SZX64, block{0, true, filler}, 0); c != codes.Unauthorized {
		t.Errorf("first block with a bad token answered %v, want 4.01", c)
	}
	if c, _ := sendBlock(t, cc, "/t", "", message.AppJSON, blockwise.SZX64, block{0, true, filler}, 0); c != codes.Unauthorized {
		t.Errorf("first block without a token answered %v, want 4.01", c)
	}
	tok := d.token(t)
	var got []codes.Code
	for num := range int64(5) {
		c, _ := sendBlock(t, cc, "/t", tok, message.AppJSON, blockwise.SZX64, block{num, true, filler}, 0)
		got = append(got, c)
	}
	want := []codes.Code{codes.Continue, codes.Continue, codes.Continue, codes.TooManyRequests, codes.TooManyRequests}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("blocks over a burst of 3 answered %v, want %v", got, want)
	}
}
