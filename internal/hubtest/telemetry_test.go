package hubtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/mqtt"
)

// device is a registered device with its key material on disk.
type device struct {
	Code, Number string
	Dir          string
	tlsCert      tls.Certificate
	caPool       *x509.CertPool
}

// register registers a device with a hub-generated key through ctl.
func register(t *testing.T, h *Hub, codeStr string, extra ...string) *device {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strings.ReplaceAll(codeStr, ":", "_"))
	args := append([]string{"ctl", "object", "register", codeStr, "--out", dir}, extra...)
	h.MustWanwu(args...)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &device{Code: codeStr, Dir: dir, tlsCert: cert, caPool: pool}
}

func (d *device) token(t *testing.T) string {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(d.Dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devtoken.Sign(k, d.Code, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (d *device) topic(kind string) string {
	tenant, id, _ := strings.Cut(d.Code, ":")
	return "wanwu/v1/" + tenant + "/" + id + "/" + kind
}

// connect5 connects an MQTT 5 client; cert selects mutual TLS, else a device token over plain TCP.
func connect5(t *testing.T, h *Hub, d *device, useTLS bool, onPublish func(paho.PublishReceived)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	var conn net.Conn
	var err error
	cp := &paho.Connect{ClientID: d.Code, KeepAlive: 30, CleanStart: true}
	if useTLS {
		conn, err = tls.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTLS), &tls.Config{
			RootCAs: d.caPool, Certificates: []tls.Certificate{d.tlsCert}, ServerName: "127.0.0.1",
		})
	} else {
		conn, err = net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
		cp.Username, cp.UsernameFlag = d.Code, true
		cp.Password, cp.PasswordFlag = []byte(d.token(t)), true
	}
	if err != nil {
		return nil, nil, err
	}
	if useTLS {
		// paho.golang writes a packet in pieces; a tls.Conn does not keep
		// one goroutine's pieces together (a TCP connection does, in one
		// writev).
		conn = pahopackets.NewThreadSafeConn(conn)
	}
	cfg := paho.ClientConfig{ClientID: d.Code, Conn: conn}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			onPublish(p)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ack, nil
}

func publish5(t *testing.T, c *paho.Client, topic, contentType string, payload []byte) (*paho.PublishResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: payload}
	if contentType != "" {
		p.Properties = &paho.PublishProperties{ContentType: contentType}
	}
	return c.Publish(ctx, p)
}

// eventually retries check until it returns nil or the deadline passes: the
// store consumer writes shortly after the PUBACK.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func latest(t *testing.T, h *Hub, codeStr string) map[string]struct {
	Time  time.Time
	Value any
} {
	t.Helper()
	var out struct {
		Values map[string]struct {
			Time  time.Time
			Value any
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/telemetry/"+codeStr+"/latest", nil).JSON(t, &out)
	return out.Values
}

// TestTelemetryMQTT5TLS: a device with its issued certificate publishes
// SenML over MQTT 5 and TLS; the values come back from the query API and the
// Prometheus-compatible API.
func TestTelemetryMQTT5TLS(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-1", "--model", "acme:pump@1.0.0", "--tag", "zone=north", "--path", "plant-1/line-1")
	c, ack, err := connect5(t, h, d, true, nil)
	if err != nil {
		t.Fatalf("connect: %v (%+v)", err, ack)
	}
	now := float64(time.Now().UnixMilli()) / 1000
	payload := fmt.Sprintf(`[{"bn":"acme:pump-1/","bt":%.3f,"n":"temperature","u":"Cel","v":71.5},{"n":"vibration","u":"m/s2","v":3.25},{"n":"mode","vs":"auto"},{"n":"running","vb":true}]`, now)
	if _, err := publish5(t, c, d.topic("telemetry"), "application/senml+json", []byte(payload)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	eventually(t, "latest values", func() error {
		v := latest(t, h, d.Code)
		if v["temperature"].Value != 71.5 || v["vibration"].Value != 3.25 || v["mode"].Value != "auto" || v["running"].Value != true {
			return fmt.Errorf("latest = %+v", v)
		}
		return nil
	})
	// The Prometheus API, as Grafana asks it (POST form, bearer token).
	form := url.Values{"query": {`temperature{device="acme:pump-1"}`}, "time": {fmt.Sprintf("%.3f", now+1)}}
	req, _ := http.NewRequest("POST", h.URL+"/prometheus/api/v1/query", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+h.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var prom struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  []any
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&prom)
	if prom.Status != "success" || len(prom.Data.Result) != 1 || prom.Data.Result[0].Value[1] != "71.5" {
		t.Errorf("prometheus query: %+v", prom)
	}
	// Range with aggregation across the fleet by tag.
	var fleet struct {
		Series []struct {
			Device string
			Points []struct{ Value float64 }
		}
	}
	h.MustAdmin(200, "GET", fmt.Sprintf("/api/v1/telemetry?property=temperature&tag=zone=north&start=%.3f&end=%.3f&step=1m&agg=max", now-60, now+60), nil).JSON(t, &fleet)
	if len(fleet.Series) != 1 || fleet.Series[0].Device != "acme:pump-1" || fleet.Series[0].Points[0].Value != 71.5 {
		t.Errorf("fleet range: %+v", fleet)
	}
}

// TestTelemetryMQTT311Token: an MQTT 3.1.1 device authenticates with a
// device token and sends plain JSON mapped through its model.
func TestTelemetryMQTT311Token(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:pump-2", "--model", "acme:pump@1.0.0")
	errorsSeen := make(chan string, 4)
	opts := paho3.NewClientOptions().AddBroker("tcp://" + h.MQTT().Addr(mqtt.ListenerTCP)).
		SetClientID(d.Code).SetUsername(d.Code).SetPassword(d.token(t)).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe(d.topic("errors"), 1, func(_ paho3.Client, m paho3.Message) { errorsSeen <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe errors: %v", tok.Error())
	}
	tok := c.Publish(d.topic("telemetry"), 1, false, `{"temperature": 20.5, "speed": 1500, "mode": "manual"}`)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	eventually(t, "latest", func() error {
		v := latest(t, h, d.Code)
		if v["temperature"].Value != 20.5 || v["speed"].Value != 1500.0 || v["mode"].Value != "manual" {
			return fmt.Errorf("latest = %+v", v)
		}
		return nil
	})
	// A bad value: 3.1.1 has no negative PUBACK, so the reason arrives on the errors topic.
	tok = c.Publish(d.topic("telemetry"), 1, false, `{"temperature": 300}`)
	tok.WaitTimeout(10 * time.Second)
	select {
	case msg := <-errorsSeen:
		if !strings.Contains(msg, "out_of_range") || !strings.Contains(msg, "temperature") {
			t.Errorf("errors topic said %s", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the errors topic")
	}
	var dl struct {
		DeadLetters []struct {
			Reason, Message string
			Payload         []byte
		} `json:"dead_letters"`
	}
	h.MustAdmin(200, "GET", "/api/v1/deadletters?device="+d.Code, nil).JSON(t, &dl)
	if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].Reason != "out_of_range" || string(dl.DeadLetters[0].Payload) != `{"temperature": 300}` {
		t.Errorf("dead letters: %+v", dl)
	}
}

// TestTelemetryRejections: bad payloads get reasons (MQTT 5 PUBACK codes),
// go to the dead-letter stream, and never disturb another device.
func TestTelemetryRejections(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:r-1", "--model", "acme:pump@1.0.0")
	other := register(t, h, "acme:r-2", "--model", "acme:pump@1.0.0")
	c, _, err := connect5(t, h, d, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	oc, _, err := connect5(t, h, other, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, topic, ct, payload string
		code                     byte
		reason                   string
	}{
		{"malformed senml", d.topic("telemetry"), "application/senml+json", `[{"n":"temperature","v":}]`, 0x99, "malformed"},
		{"unknown property", d.topic("telemetry"), "application/json", `{"colour": 1}`, 0x99, "unknown_property"},
		{"type mismatch", d.topic("telemetry"), "application/json", `{"temperature": "hot"}`, 0x99, "type_mismatch"},
		{"out of range", d.topic("telemetry"), "application/json", `{"speed": 99999}`, 0x99, "out_of_range"},
		{"bad enum", d.topic("telemetry"), "application/json", `{"mode": "turbo"}`, 0x99, "out_of_range"},
		{"bad unit", d.topic("telemetry"), "application/senml+json", `[{"n":"temperature","u":"V","v":1}]`, 0x99, "unit_mismatch"},
		{"future", d.topic("telemetry"), "application/json", fmt.Sprintf(`{"temperature": 1, "ts": %d}`, time.Now().Add(time.Hour).Unix()), 0x99, "time_in_future"},
		{"too old", d.topic("telemetry"), "application/json", fmt.Sprintf(`{"temperature": 1, "ts": %d}`, time.Now().Add(-48*time.Hour).Unix()), 0x99, "time_too_old"},
		{"oversized", d.topic("telemetry"), "application/json", `{"mode":"` + strings.Repeat("x", 64<<10) + `"}`, 0x97, "too_large"},
		{"another device's topic", other.topic("telemetry"), "application/json", `{"temperature": 1}`, 0x87, ""},
		{"reserved topic", d.topic("ota/firmware"), "application/json", `{}`, 0x87, ""},
		{"hub-to-device topic", d.topic("twin/desired"), "application/json", `{}`, 0x87, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := publish5(t, c, tc.topic, tc.ct, []byte(tc.payload))
			if err == nil || pr == nil {
				t.Fatalf("accepted: %v %+v", err, pr)
			}
			if pr.ReasonCode != tc.code {
				t.Errorf("reason code 0x%x, want 0x%x (%v)", pr.ReasonCode, tc.code, err)
			}
			if tc.reason != "" && (pr.Properties == nil || !strings.HasPrefix(pr.Properties.ReasonString, tc.reason)) {
				t.Errorf("reason string %+v, want prefix %s", pr.Properties, tc.reason)
			}
			// The other device is not disturbed.
			if _, err := publish5(t, oc, other.topic("telemetry"), "application/json", []byte(`{"temperature": 30}`)); err != nil {
				t.Errorf("other device: %v", err)
			}
		})
	}
	var dl struct {
		DeadLetters []struct{ Reason string } `json:"dead_letters"`
	}
	h.MustAdmin(200, "GET", "/api/v1/deadletters?device="+d.Code+"&limit=100", nil).JSON(t, &dl)
	if len(dl.DeadLetters) != 9 {
		t.Errorf("%d dead letters, want 9 (one per rejected payload): %+v", len(dl.DeadLetters), dl)
	}
	metrics := string(h.Do("GET", "/metrics", "", nil).Body)
	for _, want := range []string{`wanwu_mqtt_rejected_total{reason="out_of_range"} 2`, `wanwu_mqtt_rejected_total{reason="not_authorized"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestMQTTAdmission: wrong certificates, unknown and revoked devices, client
// id games, malformed packets and connect floods are refused, and legitimate
// devices keep working.
func TestMQTTAdmission(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	good := register(t, h, "acme:good")
	bad := register(t, h, "acme:bad")

	// A certificate from another CA fails the TLS handshake.
	foreign := Start(t)
	foreign.MustWanwu("ctl", "tenant", "create", "acme")
	stranger := register(t, foreign, "acme:good")
	if _, _, err := connect5(t, h, stranger, true, nil); err == nil {
		t.Error("a certificate from another hub's CA was accepted")
	}
	// A token signed by another key for a real code.
	stranger.Code = good.Code
	if _, ack, err := connect5(t, h, stranger, false, nil); err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Errorf("token from a foreign key: %v %+v", err, ack)
	}
	// Client id must be the code.
	conn, _ := net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
	pc := paho.NewClient(paho.ClientConfig{Conn: conn})
	ack, err := pc.Connect(context.Background(), &paho.Connect{ClientID: "acme:other", Username: good.Code, UsernameFlag: true, Password: []byte(good.token(t)), PasswordFlag: true, KeepAlive: 30})
	if err == nil || ack.ReasonCode != 0x85 {
		t.Errorf("client id not the code: %v %+v", err, ack)
	}
	// Revoked device: refused.
	h.MustWanwu("ctl", "object", "revoke", bad.Code, "--yes")
	if _, ack, err := connect5(t, h, bad, true, nil); err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Errorf("revoked device: %v %+v", err, ack)
	}
	// Malformed bytes close that connection only.
	gc, _, err := connect5(t, h, good, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := net.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTCP))
	raw.Write([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 'g', 'a', 'r', 'b', 'a', 'g', 'e'})
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 16)); err == nil {
		t.Error("a malformed CONNECT was answered instead of closed")
	}
	raw.Close()
	if _, err := publish5(t, gc, good.topic("telemetry"), "application/senml+json", []byte(`[{"n":"temperature","v":1}]`)); err != nil {
		t.Errorf("good device after a malformed neighbour: %v", err)
	}
	// Failed connects naming one code are rate limited (the code's failure
	// budget, PROTOCOL §1.1); another device still connects from the same
	// address, whose own failure budget the flood has not spent.
	flooded := 0
	for i := 0; i < 20; i++ {
		if _, ack, err := connect5(t, h, bad, false, nil); err != nil && ack != nil && ack.ReasonCode == 0x9F {
			flooded++
		}
	}
	if flooded == 0 {
		t.Error("20 rapid connects for one code were never rate limited")
	}
	other := register(t, h, "acme:other")
	if _, _, err := connect5(t, h, other, true, nil); err != nil {
		t.Errorf("legitimate device during a flood: %v", err)
	}
}

// TestRevocationDisconnects: revoking a connected device ends its connection.
func TestRevocationDisconnects(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:v-1")
	var mu sync.Mutex
	disconnected := false
	conn, err := tls.Dial("tcp", h.MQTT().Addr(mqtt.ListenerTLS), &tls.Config{RootCAs: d.caPool, Certificates: []tls.Certificate{d.tlsCert}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: pahopackets.NewThreadSafeConn(conn), OnServerDisconnect: func(*paho.Disconnect) {
		mu.Lock()
		disconnected = true
		mu.Unlock()
	}, OnClientError: func(error) {
		mu.Lock()
		disconnected = true
		mu.Unlock()
	}})
	if _, err := c.Connect(context.Background(), &paho.Connect{ClientID: d.Code, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	h.MustWanwu("ctl", "object", "revoke", d.Code, "--yes")
	eventually(t, "disconnect after revocation", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !disconnected {
			return fmt.Errorf("still connected")
		}
		return nil
	})
}

// TestHTTPIngest: a device posts telemetry with a device token, and over
// HTTPS with its client certificate.
func TestHTTPIngest(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:h-1", "--model", "acme:pump@1.0.0")
	post := func(client *http.Client, base, path, token, ct, body string) (int, string) {
		resp := postIngest(t, client, base+path, token, ct, body)
		return resp.StatusCode, resp.body
	}
	if st, body := post(http.DefaultClient, h.URL, "/api/v1/ingest/acme:h-1/telemetry", d.token(t), "application/json", `{"temperature": 42}`); st != 204 {
		t.Fatalf("token ingest: %d %s", st, body)
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.caPool, Certificates: []tls.Certificate{d.tlsCert}}}}
	if st, body := post(tlsClient, h.HTTPSURL(), "/api/v1/ingest/acme:h-1/telemetry", "", "application/senml+json", `[{"n":"vibration","v":1.5}]`); st != 204 {
		t.Fatalf("mTLS ingest: %d %s", st, body)
	}
	eventually(t, "latest", func() error {
		v := latest(t, h, d.Code)
		if v["temperature"].Value != 42.0 || v["vibration"].Value != 1.5 {
			return fmt.Errorf("latest = %+v", v)
		}
		return nil
	})
	cases := []struct {
		name, path, token, ct, body string
		status                      int
		code                        string
	}{
		{"no credentials", "/api/v1/ingest/acme:h-1/telemetry", "", "application/json", `{"temperature": 1}`, 401, "unauthenticated"},
		{"bad token", "/api/v1/ingest/acme:h-1/telemetry", "x.y.z", "application/json", `{"temperature": 1}`, 401, "unauthenticated"},
		{"out of range", "/api/v1/ingest/acme:h-1/telemetry", d.token(t), "application/json", `{"temperature": 1000}`, 422, "out_of_range"},
		{"unsupported", "/api/v1/ingest/acme:h-1/telemetry", d.token(t), "text/plain", `hello`, 415, "unsupported_format"},
		{"oversized", "/api/v1/ingest/acme:h-1/telemetry", d.token(t), "application/json", `{"mode":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := post(http.DefaultClient, h.URL, tc.path, tc.token, tc.ct, tc.body)
			if st != tc.status || !strings.Contains(body, `"`+tc.code+`"`) {
				t.Errorf("%d %s, want %d %s", st, body, tc.status, tc.code)
			}
		})
	}
}

// TestHTTPIngestAuthNoOracle: a forged token earns the same answer whether
// the code is unknown, revoked or known with another key, so an
// unauthenticated caller cannot learn which devices exist; the reason goes
// to the counter. A device sending for another device's code is told 403
// not_authorized (docs/PROTOCOL.md §6).
func TestHTTPIngestAuthNoOracle(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	known := register(t, h, "acme:o-1", "--model", "acme:pump@1.0.0")
	other := register(t, h, "acme:o-2", "--model", "acme:pump@1.0.0")
	revoked := register(t, h, "acme:o-3", "--model", "acme:pump@1.0.0")
	h.MustWanwu("ctl", "object", "revoke", revoked.Code, "--yes")

	forge := func(codeStr string) string {
		k, err := keys.Generate(keys.P256)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := devtoken.Sign(k, codeStr, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	post := func(codeStr, token string) (int, string) {
		resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/"+codeStr+"/telemetry", token, "application/json", `{"temperature": 1}`)
		return resp.StatusCode, resp.body
	}

	var first string
	for _, tc := range []struct{ name, code, token string }{
		{"unknown code", "acme:o-404", forge("acme:o-404")},
		{"revoked device", revoked.Code, forge(revoked.Code)},
		{"revoked device, its own key", revoked.Code, revoked.token(t)},
		{"known device, wrong key", known.Code, forge(known.Code)},
	} {
		st, body := post(tc.code, tc.token)
		got := fmt.Sprintf("%d %s", st, body)
		if st != http.StatusUnauthorized || !strings.Contains(body, `"unauthenticated"`) {
			t.Errorf("%s: %s, want 401 unauthenticated", tc.name, got)
		}
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("%s: answer %q differs from %q: it tells the caller something about the code", tc.name, got, first)
		}
	}
	metrics := string(h.Do("GET", "/metrics", "", nil).Body)
	for _, reason := range []string{"unknown", "revoked", "bad_signature"} {
		if !strings.Contains(metrics, `wanwu_api_device_auth_failed_total{reason="`+reason+`"}`) {
			t.Errorf("/metrics lacks wanwu_api_device_auth_failed_total{reason=%q}", reason)
		}
	}

	// Authenticated, but for another device's code.
	if st, body := post(known.Code, other.token(t)); st != http.StatusForbidden || !strings.Contains(body, `"not_authorized"`) {
		t.Errorf("another device's code: %d %s, want 403 not_authorized", st, body)
	}
}

// ingestAnswer is an HTTP ingest answer: its status, headers and body.
type ingestAnswer struct {
	*http.Response
	body string
}

// postIngest posts body to an ingest URL with a bearer token ("" = none).
func postIngest(t *testing.T, client *http.Client, url, token, contentType, body string) ingestAnswer {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return ingestAnswer{resp, string(b)}
}

// TestRangeKeepsTypes: the range and latest API answer a property in its
// own type (booleans as booleans, positions as {"lat","lon","alt"}, the
// shape ingest takes), accept relative times, and answer 404 for a
// property the model does not have.
func TestRangeKeepsTypes(t *testing.T) {
	h := Start(t)
	h.MustWanwu("ctl", "tenant", "create", "acme")
	model := filepath.Join(t.TempDir(), "tracker.json")
	os.WriteFile(model, []byte(`{"id":"acme:tracker","version":"1.0.0","properties":{
		"moving":{"type":"boolean"},"where":{"type":"position"},"speed":{"type":"number"}}}`), 0o644)
	h.MustWanwu("ctl", "model", "register", model)
	d := register(t, h, "acme:tr-1", "--model", "acme:tracker@1.0.0")
	resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/acme:tr-1/telemetry", d.token(t), "application/json",
		`{"moving": true, "speed": 3.5, "where": {"lat": 31.2, "lon": 121.5, "alt": 4}}`)
	if resp.StatusCode != 204 {
		t.Fatalf("ingest: %d %s", resp.StatusCode, resp.body)
	}
	eventually(t, "typed latest values", func() error {
		v := latest(t, h, d.Code)
		pos, _ := v["where"].Value.(map[string]any)
		if v["moving"].Value != true || v["speed"].Value != 3.5 || pos["lat"] != 31.2 || pos["lon"] != 121.5 || pos["alt"] != 4.0 {
			return fmt.Errorf("latest = %+v", v)
		}
		return nil
	})
	var out struct {
		Series []struct {
			Points []struct{ Value any }
		}
	}
	h.MustAdmin(200, "GET", "/api/v1/telemetry/acme:tr-1/moving?start=-10m&end=now&agg=last", nil).JSON(t, &out)
	if len(out.Series) != 1 || out.Series[0].Points[len(out.Series[0].Points)-1].Value != true {
		t.Errorf("moving, last: %+v", out)
	}
	h.MustAdmin(200, "GET", "/api/v1/telemetry/acme:tr-1/where?start=now-10m&agg=last", nil).JSON(t, &out)
	if len(out.Series) != 1 {
		t.Fatalf("where: %+v", out)
	}
	if pos, _ := out.Series[0].Points[len(out.Series[0].Points)-1].Value.(map[string]any); pos["lat"] != 31.2 || pos["lon"] != 121.5 {
		t.Errorf("where, last: %+v", out)
	}
	if r := h.Admin("GET", "/api/v1/telemetry/acme:tr-1/colour", nil); r.Status != 404 || !strings.Contains(string(r.Body), "colour") {
		t.Errorf("a property the model lacks: %d %s", r.Status, r.Body)
	}
	if r := h.Admin("GET", "/api/v1/telemetry/acme:tr-1/speed?start=+10m", nil); r.Status != 400 {
		t.Errorf("a bad relative time: %d %s", r.Status, r.Body)
	}
}

// TestCtlData: ctl shows what devices sent as tables, and as the hub's JSON
// with --json.
func TestCtlData(t *testing.T) {
	h := Start(t)
	setupAcme(t, h)
	d := register(t, h, "acme:ctl-1", "--model", "acme:pump@1.0.0")
	tok := d.token(t)
	base := h.URL + "/api/v1/ingest/acme:ctl-1/"
	for _, p := range []struct{ path, body string }{
		{"telemetry", `{"temperature": 21.5, "running": true}`},
		{"events/overheat", `{"temperature": 130}`},
		{"telemetry", `{"temperature": 999}`}, // refused: a dead letter
	} {
		postIngest(t, http.DefaultClient, base+p.path, tok, "application/json", p.body)
	}
	eventually(t, "stored", func() error {
		if v := latest(t, h, d.Code); v["temperature"].Value != 21.5 {
			return fmt.Errorf("latest = %+v", v)
		}
		if r := h.MustAdmin(200, "GET", "/api/v1/events?device="+d.Code, nil); !strings.Contains(string(r.Body), "overheat") {
			return fmt.Errorf("events: %s", r.Body)
		}
		return nil
	})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"ctl", "telemetry", "latest", d.Code}, []string{"PROPERTY", "temperature", "21.5", "running", "true"}},
		{[]string{"ctl", "telemetry", "range", d.Code, "temperature", "--since", "10m", "--agg", "max"}, []string{"TIME", "MAX", "21.5"}},
		{[]string{"ctl", "events", "--device", d.Code}, []string{"EVENT", "overheat", `{"temperature":130}`}},
		{[]string{"ctl", "deadletters", "--device", d.Code}, []string{"REASON", "out_of_range", "temperature=999"}},
		{[]string{"ctl", "telemetry", "latest", d.Code, "--json"}, []string{`"values"`, `"temperature"`}},
	} {
		out := h.MustWanwu(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args[1:], w, out)
			}
		}
	}
	if _, stderr, code := h.Wanwu("ctl", "telemetry", "range", d.Code, "temperature", "--since", "soon"); code == 0 || !strings.Contains(stderr, "--since") {
		t.Errorf("bad --since: exit %d, %q", code, stderr)
	}
}
