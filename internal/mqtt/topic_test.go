package mqtt

import (
	"strings"
	"testing"
)

func TestParseTopic(t *testing.T) {
	cases := []struct {
		topic string
		ok    bool
		want  Topic
	}{
		{"wanwu/v1/acme/pump-1/telemetry", true, Topic{Tenant: "acme", ID: "pump-1", Kind: KindTelemetry}},
		{"wanwu/v1/acme/pump-1/events/overheat", true, Topic{Tenant: "acme", ID: "pump-1", Kind: KindEvent, Rest: "overheat"}},
		{"wanwu/v1/acme/pump-1/status", true, Topic{Tenant: "acme", ID: "pump-1", Kind: KindStatus}},
		{"wanwu/v1/acme/pump-1/twin/reported", true, Topic{Tenant: "acme", ID: "pump-1", Kind: KindTwin, Rest: "reported"}},
		{"wanwu/v1/acme/pump-1/commands/c1/result", true, Topic{Tenant: "acme", ID: "pump-1", Kind: KindCommands, Rest: "c1/result"}},
		{"wanwu/v1/acme/pump-1/telemetry/extra", false, Topic{}},
		{"wanwu/v1/acme/pump-1/events/", false, Topic{}},
		{"wanwu/v1/acme/pump-1/events/bad-name", false, Topic{}},
		{"wanwu/v1/acme/pump-1/events/a/b", false, Topic{}},
		{"wanwu/v1/ACME/pump-1/telemetry", false, Topic{}},
		{"wanwu/v1/acme/pump.1/telemetry", false, Topic{}},
		{"wanwu/v1/acme/+/telemetry", false, Topic{}},
		{"wanwu/v1/acme/pump-1/twin/+", false, Topic{}},
		{"wanwu/v1/acme/pump-1/unknown", false, Topic{}},
		{"wanwu/v2/acme/pump-1/telemetry", false, Topic{}},
		{"wanwu/v1/acme", false, Topic{}},
		{"", false, Topic{}},
		{"wanwu/v1/acme/" + strings.Repeat("a", 600) + "/telemetry", false, Topic{}},
	}
	for _, tc := range cases {
		got, err := ParseTopic(tc.topic)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTopic(%q) = %+v, %v; want %+v ok=%v", tc.topic, got, err, tc.want, tc.ok)
		}
	}
}

func TestACL(t *testing.T) {
	h := &hook{s: &Server{opts: Options{DevACL: []string{"wanwu/v1/dev/#"}}}}
	dev := &session{kind: kindDevice, tenant: "acme", id: "p1", prefix: devicePrefix("acme", "p1")}
	quar := &session{kind: kindDevice, tenant: "acme", id: "p1", prefix: devicePrefix("acme", "p1"), quarantined: true}
	acmeApp := &session{kind: kindIntegration}
	acmeApp.principal.Tenant = "acme"
	globalApp := &session{kind: kindIntegration}
	anon := &session{kind: kindAnonymous}
	cases := []struct {
		name  string
		s     *session
		topic string
		write bool
		want  bool
	}{
		{"device telemetry", dev, "wanwu/v1/acme/p1/telemetry", true, true},
		{"device event", dev, "wanwu/v1/acme/p1/events/overheat", true, true},
		{"device status (will)", dev, "wanwu/v1/acme/p1/status", true, true},
		{"device twin report", dev, "wanwu/v1/acme/p1/twin/reported", true, true},
		{"device twin get", dev, "wanwu/v1/acme/p1/twin/get", true, true},
		{"device writes desired", dev, "wanwu/v1/acme/p1/twin/desired", true, false},
		{"device writes delta", dev, "wanwu/v1/acme/p1/twin/delta", true, false},
		{"device command result", dev, "wanwu/v1/acme/p1/commands/c-1/result", true, true},
		{"device writes a command", dev, "wanwu/v1/acme/p1/commands/c-1", true, false},
		{"device result of other device", dev, "wanwu/v1/acme/p2/commands/c-1/result", true, false},
		{"device writes ota", dev, "wanwu/v1/acme/p1/ota/firmware", true, false},
		{"device writes other device", dev, "wanwu/v1/acme/p2/telemetry", true, false},
		{"device writes other tenant", dev, "wanwu/v1/beta/p1/telemetry", true, false},
		{"device writes sys", dev, "$SYS/broker", true, false},
		{"device subscribes own", dev, "wanwu/v1/acme/p1/#", false, true},
		{"device subscribes own errors", dev, "wanwu/v1/acme/p1/errors", false, true},
		{"device subscribes tenant", dev, "wanwu/v1/acme/+/telemetry", false, false},
		{"device subscribes all", dev, "#", false, false},
		{"device subscribes prefix only", dev, "wanwu/v1/acme/p1/", false, false},
		{"device shared own", dev, "$share/g/wanwu/v1/acme/p1/errors", false, true},
		{"device shared other", dev, "$share/g/wanwu/v1/acme/p2/#", false, false},
		{"quarantined telemetry", quar, "wanwu/v1/acme/p1/telemetry", true, false},
		{"quarantined twin report", quar, "wanwu/v1/acme/p1/twin/reported", true, false},
		{"quarantined command result", quar, "wanwu/v1/acme/p1/commands/c-1/result", true, true},
		{"quarantined errors", quar, "wanwu/v1/acme/p1/errors", false, true},
		{"quarantined ota", quar, "wanwu/v1/acme/p1/ota/firmware", false, true},
		{"quarantined commands", quar, "wanwu/v1/acme/p1/commands/#", false, true},
		{"quarantined all own", quar, "wanwu/v1/acme/p1/#", false, false},
		{"app own tenant", acmeApp, "wanwu/v1/acme/+/telemetry", false, true},
		{"app own tenant all", acmeApp, "wanwu/v1/acme/#", false, true},
		{"app other tenant", acmeApp, "wanwu/v1/beta/+/telemetry", false, false},
		{"app wildcard tenant", acmeApp, "wanwu/v1/+/+/telemetry", false, false},
		{"app everything", acmeApp, "#", false, false},
		{"app shared own", acmeApp, "$share/g/wanwu/v1/acme/+/telemetry", false, true},
		{"app writes", acmeApp, "wanwu/v1/acme/p1/telemetry", true, false},
		{"global app all tenants", globalApp, "wanwu/v1/+/+/telemetry", false, true},
		{"global app sys", globalApp, "$SYS/#", false, false},
		{"anonymous in dev", anon, "wanwu/v1/dev/x/telemetry", true, true},
		{"anonymous outside dev", anon, "wanwu/v1/acme/p1/telemetry", true, false},
		{"anonymous subscribes dev", anon, "wanwu/v1/dev/+/telemetry", false, true},
		{"anonymous subscribes wider", anon, "wanwu/v1/+/+/telemetry", false, false},
		{"anonymous subscribes all", anon, "#", false, false},
	}
	for _, tc := range cases {
		if got := h.allowed(tc.s, tc.topic, tc.write); got != tc.want {
			t.Errorf("%s: allowed(%q, write=%v) = %v, want %v", tc.name, tc.topic, tc.write, got, tc.want)
		}
	}
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"wanwu/v1/acme/pump-1/telemetry", "wanwu/v1/acme/pump-1/events/overheat", "wanwu/v1/a/b/twin/reported", "wanwu/v1/+/#", "wanwu/v1//x/telemetry"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if err != nil {
			return
		}
		// An accepted topic names one device and rebuilds to itself.
		if strings.ContainsAny(s, "+#\x00") {
			t.Fatalf("accepted a wildcard or NUL: %q", s)
		}
		re := devicePrefix(tp.Tenant, tp.ID) + tp.Kind
		if tp.Rest != "" {
			re += "/" + tp.Rest
		}
		if re != s {
			t.Fatalf("ParseTopic(%q) rebuilds as %q", s, re)
		}
	})
}
