package hubtest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// publicRoutes answer anyone: health, metrics, what verifying needs, and the
// claim, which carries its own claim token.
var publicRoutes = map[string]bool{
	"GET /healthz": true, "GET /readyz": true, "GET /metrics": true,
	"GET /api/v1/info": true, "GET /api/v1/openapi.json": true, "GET /api/v1/ca.pem": true, "GET /api/v1/ca/crl": true,
}

// apiRoutes lists the routes the api package registers, read from its
// source so that a new route is in the matrix the day it is added.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`"((?:GET|POST|PUT|PATCH|DELETE) /[^" ]*)"`)
	seen := map[string]bool{}
	for _, f := range []string{"api.go", "routes.go", "downlink.go", "ingest.go", "telemetry.go", "audit.go", "networks.go", "ml.go"} {
		src, err := os.ReadFile("../api/" + f)
		if err != nil {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			seen[m[1]] = true
		}
	}
	var out []string
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	if len(out) < 40 {
		t.Fatalf("found only %d routes in internal/api: has the registration changed?", len(out))
	}
	return out
}

// TestAuthorizationMatrix tries every API route with every kind of caller
// that must be refused there, on another tenant's resources, and every
// foreign topic over MQTT: nothing succeeds, and nothing is stored for the
// devices an attacker named.
//
//   - no token, a forged token, a device token (not an API token);
//   - viewers, deployment-wide and tenant-bound, on every write;
//   - acme-bound operators and viewers on beta's resources;
//   - a device on other devices' ingest routes and MQTT topics, wildcards,
//     $SYS, $share and a topic alias rebound to a foreign topic.
func TestAuthorizationMatrix(t *testing.T) {
	h := mcHub(t)
	h.MustWanwu("ctl", "tenant", "create", "beta")
	own := mcPump(t, h, "m-own")
	other := mcPump(t, h, "m-other")
	foreign := register(t, h, "beta:m-foreign")
	ownTok := own.token(t)

	callers := map[string]string{
		"none": "", "forged": "wwt_" + strings.Repeat("A", 43), "device token": ownTok,
		"viewer":        mcToken(t, h, "m-viewer", "viewer", ""),
		"acme viewer":   mcToken(t, h, "m-acme-viewer", "viewer", "acme"),
		"acme operator": mcToken(t, h, "m-acme-op", "operator", "acme"),
	}
	fill := func(route, code string) (method, path string) {
		method, path, _ = strings.Cut(route, " ")
		r := strings.NewReplacer("{code}", code, "{id}", "beta:pump", "{name}", "beta", "{key}", code,
			"{version}", "1.0.0", "{property}", "temperature", "{event}", "alarm")
		path = r.Replace(path)
		if strings.HasPrefix(path, "/api/v1/commands/") {
			path = strings.Replace(path, "beta:pump", "cmd-unknown", 1)
		}
		return method, path + "?tenant=beta&device=" + code
	}
	body := func(route string) any {
		switch {
		case strings.Contains(route, "/objects/import"):
			return "code\nbeta:m-new\n"
		case strings.Contains(route, "/tokens"):
			return map[string]any{"name": "m-evil", "role": "admin"}
		case strings.HasSuffix(route, "POST /api/v1/objects"):
			return map[string]any{"code": "beta:m-new"}
		case strings.Contains(route, "/tenants"):
			return map[string]any{"name": "gamma"}
		case strings.Contains(route, "/twin/desired"):
			return map[string]any{"speed": 1}
		case strings.Contains(route, "/commands"):
			return map[string]any{"action": "stop"}
		case strings.Contains(route, "/ingest/"):
			return `{"temperature": 1}`
		}
		return map[string]any{}
	}
	tries, refused := 0, 0
	for _, route := range apiRoutes(t) {
		if publicRoutes[route] {
			continue
		}
		method, _, _ := strings.Cut(route, " ")
		for name, tok := range callers {
			mustRefuse := false
			switch name {
			case "none", "forged":
				mustRefuse = route != "POST /api/v1/claim" // the device's, with a claim token
			case "device token":
				mustRefuse = !strings.Contains(route, "/ingest/") // and there: a foreign code, below
			case "viewer", "acme viewer":
				mustRefuse = method != "GET"
			}
			if strings.HasPrefix(name, "acme") {
				mustRefuse = true // everything below names beta's resources
			}
			if !mustRefuse {
				continue
			}
			code := foreign.Code
			if name == "device token" || name == "none" || name == "forged" {
				code = other.Code // another device of the device's own tenant
			}
			m, path := fill(route, code)
			r := h.Do(m, path, tok, body(route))
			tries++
			ok := r.Status >= 200 && r.Status < 300
			if r.Status == http.StatusMultiStatus && bytes.Contains(r.Body, []byte(`"created": 0`)) {
				ok = false // a bulk import whose every row was refused
			}
			if ok && strings.HasPrefix(name, "acme") && !bytes.Contains(r.Body, []byte("beta")) {
				// Lists and writes of the caller's own tenant (a ?tenant=
				// of another is not honoured), and answers that say as
				// little as for a code that does not exist: nothing of
				// beta's is shown or changed (checked again below).
				ok = false
			}
			if ok {
				t.Errorf("%s: %s %s succeeded (%d): %s", name, m, path, r.Status, r.Body)
				continue
			}
			refused++
		}
	}
	// A device's token on the ingest routes of its neighbour and of another tenant.
	for _, code := range []string{other.Code, foreign.Code} {
		for _, p := range []string{"/telemetry", "/events/alarm"} {
			resp := postIngest(t, http.DefaultClient, h.URL+"/api/v1/ingest/"+code+p, ownTok, "application/json", `{"temperature": 1}`)
			tries++
			if resp.StatusCode < 300 {
				t.Errorf("device %s posted to %s%s: %d", own.Code, code, p, resp.StatusCode)
			} else {
				refused++
			}
		}
	}

	// MQTT: the device's own connection, every foreign topic.
	in := newMCInbox()
	conf := mcDevice(t, own)
	conf.inbox = in
	c := mustConnect5(t, h, conf)
	foreignTopics := []string{
		other.topic("telemetry"), foreign.topic("telemetry"), foreign.topic("events/alarm"),
		other.topic("twin/reported"), foreign.topic("commands/x/result"),
		"wanwu/v1/acme/+/telemetry", "wanwu/v1/acme/#", "wanwu/v1/beta/m-foreign/telemetry",
		"$SYS/broker/x", "$share/g/" + other.topic("telemetry"), "wanwu/v1/acme/m-own/../m-other/telemetry",
		"wanwu/v1/acme/m-own/telemetry/../../m-other/telemetry", "#", "wanwu", "",
	}
	publishRefused := func(c *mcClient, p *paho.Publish) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		pr, err := c.Publish(ctx, p)
		return err != nil || pr == nil || pr.ReasonCode >= 0x80
	}
	for _, topic := range foreignTopics {
		select {
		case <-c.lost:
			c = mustConnect5(t, h, conf) // a refusal may close the connection
		default:
		}
		tries++
		if publishRefused(c, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(`{"temperature": 66}`)}) {
			refused++
		} else {
			t.Errorf("device published to %q", topic)
		}
	}
	for _, filter := range []string{other.topic("commands/+"), foreign.topic("twin/desired"), "wanwu/v1/acme/+/telemetry",
		"wanwu/v1/+/+/#", "#", "$SYS/#", "$share/g/wanwu/v1/acme/#", "+/+/+/+/telemetry"} {
		select {
		case <-c.lost:
			c = mustConnect5(t, h, conf)
		default:
		}
		tries++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		cancel()
		if err == nil && sa != nil && len(sa.Reasons) == 1 && sa.Reasons[0] < 0x80 {
			t.Errorf("device subscribed to %q (SUBACK 0x%02x)", filter, sa.Reasons[0])
		} else {
			refused++
		}
	}
	// A topic alias bound to the device's own topic, then rebound to a
	// foreign topic: the rebinding is checked like any topic.
	select {
	case <-c.lost:
		c = mustConnect5(t, h, conf)
	default:
	}
	alias := uint16(1)
	publishRefused(c, &paho.Publish{Topic: own.topic("telemetry"), QoS: 1, Payload: []byte(`{"temperature": 20}`),
		Properties: &paho.PublishProperties{TopicAlias: &alias}})
	tries++
	if publishRefused(c, &paho.Publish{Topic: other.topic("telemetry"), QoS: 1, Payload: []byte(`{"temperature": 66}`),
		Properties: &paho.PublishProperties{TopicAlias: &alias}}) {
		refused++
	} else {
		t.Error("a topic alias rebound to another device's topic was accepted")
	}
	// Whatever the answers said, nothing reached the other devices' data or
	// this device's subscriptions.
	time.Sleep(200 * time.Millisecond)
	for _, code := range []string{other.Code, foreign.Code} {
		if v := latest(t, h, code); len(v) > 0 {
			t.Errorf("%s has telemetry an attacker sent: %+v", code, v)
		}
	}
	// beta is as it was: one object, no claims, no tokens of its own.
	var objs struct{ Objects []object }
	h.MustAdmin(200, "GET", "/api/v1/objects?tenant=beta", nil).JSON(t, &objs)
	if len(objs.Objects) != 1 || objs.Objects[0].Code != foreign.Code || objs.Objects[0].Status != "active" {
		t.Errorf("beta's objects changed: %+v", objs.Objects)
	}
	if r := h.MustAdmin(200, "GET", "/api/v1/tokens", nil); bytes.Contains(r.Body, []byte("m-evil")) {
		t.Errorf("a token was minted: %s", r.Body)
	}
	if r := h.MustAdmin(200, "GET", "/api/v1/tenants", nil); bytes.Contains(r.Body, []byte("gamma")) {
		t.Errorf("a tenant was created: %s", r.Body)
	}
	select {
	case p := <-in:
		if !bytes.Contains([]byte(p.Topic), []byte(own.Code[5:])) {
			t.Errorf("device received %s", p.Topic)
		}
	default:
	}
	t.Logf("%d attempts, %d refused", tries, refused)
}
