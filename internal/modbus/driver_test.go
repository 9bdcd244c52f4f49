package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	mb "github.com/simonvetter/modbus"

	"github.com/wanwu-iot/wanwu/internal/command"
	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/presence"
)

// driveModel maps one property of each type and encoding, and three
// actions, onto a device.
const driveModel = `{"id":"acme:drive","version":"1.0.0",
 "properties":{
  "temperature":{"type":"number","unit":"Cel"},
  "energy":{"type":"number","unit":"kWh"},
  "flow":{"type":"number"},
  "total":{"type":"number"},
  "count":{"type":"integer"},
  "level":{"type":"integer"},
  "pressure":{"type":"number"},
  "running":{"type":"boolean"},
  "alarm":{"type":"boolean"},
  "ready":{"type":"boolean"},
  "setpoint":{"type":"number"},
  "limit":{"type":"number","maximum":100}},
 "actions":{"setSpeed":{"input":{"rpm":{"type":"integer","minimum":0,"maximum":3000}}},
  "stop":{},"setRaw":{"input":{"x":{"type":"number"}}}},
 "mapping":{"modbus":{"groups":[{"interval":"100ms","registers":[
   {"property":"temperature","table":"holding","address":0,"type":"i16","scale":0.1},
   {"property":"energy","table":"input","address":10,"type":"u32","wordOrder":"low-first","unit":"Wh"},
   {"property":"flow","table":"holding","address":20,"type":"f32","byteOrder":"little","wordOrder":"low-first"},
   {"property":"total","table":"input","address":30,"type":"f64"},
   {"property":"count","table":"holding","address":1,"type":"i32","byteOrder":"little"},
   {"property":"level","table":"input","address":12,"offset":-100},
   {"property":"pressure","table":"input","address":13,"type":"u32","scale":0.01},
   {"property":"running","table":"coil","address":5},
   {"property":"alarm","table":"discrete","address":7},
   {"property":"ready","table":"input","address":40,"type":"bool"},
   {"property":"setpoint","table":"holding","address":60,"scale":0.5}]},
  {"interval":"100ms","registers":[{"property":"limit","table":"holding","address":70}]}],
  "actions":{"setSpeed":{"argument":"rpm","table":"holding","address":300},
   "stop":{"table":"coil","address":9,"value":true},
   "setRaw":{"argument":"x","table":"holding","address":301,"type":"i16"}}}}}`

func device(t *testing.T, code, addr string) Device {
	return Device{Code: code, Tenant: "acme", Model: parseModel(t, driveModel), URL: "tcp://" + addr, UnitID: 1}
}

// TestPollValues: every type, scaling, byte and word order read off a
// device over loopback reaches the store as the model's values; a value
// the model refuses becomes a dead letter and the rest goes on.
func TestPollValues(t *testing.T) {
	e := newEnv(t)
	f := newField()
	addr := freeAddr(t)
	serve(t, addr, f)
	tests := []struct {
		prop  string
		set   func()
		want  float64 // bools: 1 or 0
		isSet bool
	}{
		{prop: "temperature", set: func() { f.holding[0] = 0xff38 }, want: -20},                                            // i16 -200 × 0.1
		{prop: "energy", set: func() { f.input[10], f.input[11] = 0x86a0, 0x0001 }, want: 100},                             // u32 CDAB 100000 Wh
		{prop: "flow", set: func() { f.holding[20], f.holding[21] = 0x0000, 0xc03f }, want: 1.5},                           // f32 DCBA
		{prop: "total", set: func() { f.input[30], f.input[31], f.input[32], f.input[33] = 0xc002, 0, 0, 0 }, want: -2.25}, // f64 ABCD
		{prop: "count", set: func() { f.holding[1], f.holding[2] = 0xffff, 0xfeff }, want: -2},                             // i32 BADC
		{prop: "level", set: func() { f.input[12] = 250 }, want: 150},                                                      // u16 offset -100
		{prop: "pressure", set: func() { f.input[13], f.input[14] = 0x0001, 0x0000 }, want: 655.36},                        // u32 ABCD × 0.01
		{prop: "running", set: func() { f.coils[5] = true }, want: 1},
		{prop: "alarm", set: func() { f.discrete[7] = true }, want: 1},
		{prop: "ready", set: func() { f.input[40] = 0 }, want: 0},
		{prop: "setpoint", set: func() { f.holding[60] = 43 }, want: 21.5},
	}
	f.mu.Lock()
	for _, tt := range tests {
		tt.set()
	}
	f.holding[70] = 150 // above the model's maximum of 100
	f.mu.Unlock()
	reg := prometheus.NewRegistry()
	d := e.driver([]Device{device(t, "acme:d1", addr)}, func(o *Options) { o.Metrics = reg })

	for _, tt := range tests {
		t.Run(tt.prop, func(t *testing.T) {
			var rec ingest.Record
			eventually(t, tt.prop+" stored", func() (ok bool) { rec, ok = e.rec.latest("acme:d1", tt.prop); return ok })
			got := rec.Float
			if rec.Kind == ingest.KindBool {
				got = 0
				if rec.Bool {
					got = 1
				}
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("%s = %+v, want %v", tt.prop, rec, tt.want)
			}
		})
	}
	if rec, _ := e.rec.latest("acme:d1", "energy"); rec.Unit != "kWh" {
		t.Errorf("energy's unit %q: the register's Wh were not converted", rec.Unit)
	}
	// The refused group is a dead letter, named by its device and group.
	var dls []string
	eventually(t, "the dead letter", func() bool {
		got, err := e.tel.Pipeline.DeadLetters(e.ctx, "acme", "acme:d1", 10)
		if err != nil {
			t.Fatal(err)
		}
		dls = nil
		for _, dl := range got {
			dls = append(dls, string(dl.Reason)+" "+dl.Source+" "+dl.Topic+" "+dl.Message)
		}
		return len(dls) > 0
	})
	if !strings.HasPrefix(dls[0], "out_of_range modbus tcp://"+addr+" unit 1 group 1 limit=150 above maximum 100") {
		t.Errorf("dead letter %q", dls[0])
	}
	if _, ok := e.rec.latest("acme:d1", "limit"); ok {
		t.Error("a refused value was stored")
	}
	st := statusOf(d, "acme:d1")
	if !st.Online || st.Polls == 0 || st.LastSuccess.IsZero() || st.Failures != 0 {
		t.Errorf("status %+v", st)
	}
	// The driver counts the refusal once the intake answers, which may be
	// after the dead letter is stored.
	eventually(t, "the refusal counted", func() bool {
		return testutil.ToFloat64(d.m.errors.WithLabelValues(causeRefused)) >= 1
	})
	if n := testutil.ToFloat64(d.m.online); n != 1 {
		t.Errorf("online gauge %v", n)
	}
	if got := e.pres.list(); len(got) < 1 || got[0] != "connected acme:d1 modbus" {
		t.Errorf("presence %q", got)
	}
	// A value changed on the device is read at the next poll.
	f.mu.Lock()
	f.holding[0] = 215
	f.mu.Unlock()
	eventually(t, "the new temperature", func() bool { r, _ := e.rec.latest("acme:d1", "temperature"); return r.Float == 21.5 })
}

// waitCommand waits until the command is final.
func waitCommand(t *testing.T, e *env, id string) *command.Command {
	t.Helper()
	var c *command.Command
	eventually(t, "command "+id+" to end", func() bool {
		var err error
		if c, err = e.commands.Get(e.ctx, id); err != nil {
			t.Fatal(err)
		}
		return c.Status.Final()
	})
	return c
}

// TestCommands: a command writes its register or coil and ends succeeded;
// one the device answers with an exception ends failed with it; one whose
// value does not fit the register fails without reaching the device.
func TestCommands(t *testing.T) {
	e := newEnv(t)
	f := newField()
	f.fail[301] = mb.ErrIllegalDataValue
	addr := freeAddr(t)
	serve(t, addr, f)
	reg := prometheus.NewRegistry()
	d := e.driver([]Device{device(t, "acme:d1", addr)}, func(o *Options) { o.Metrics = reg })
	issue := func(action, args string) *command.Command {
		t.Helper()
		c, _, err := e.commands.Issue(e.ctx, "alice", command.IssueRequest{Code: "acme:d1", Action: action, Args: json.RawMessage(args)})
		if err != nil {
			t.Fatal(err)
		}
		return waitCommand(t, e, c.ID)
	}
	if c := issue("setSpeed", `{"rpm":1500}`); c.Status != command.Succeeded || f.holdingAt(300) != 1500 {
		t.Errorf("setSpeed: %s %q; register 300 = %d", c.Status, c.Reason, f.holdingAt(300))
	}
	if c := issue("stop", `{}`); c.Status != command.Succeeded || !f.coilAt(9) {
		t.Errorf("stop: %s %q; coil 9 = %v", c.Status, c.Reason, f.coilAt(9))
	}
	c := issue("setRaw", `{"x":5}`)
	if c.Status != command.Failed || c.Reason != "Modbus exception 03: illegal data value" {
		t.Errorf("setRaw: %s %q", c.Status, c.Reason)
	}
	c = issue("setRaw", `{"x":40000}`)
	if c.Status != command.Failed || !strings.Contains(c.Reason, "outside i16's -32768 to 32767") {
		t.Errorf("setRaw out of range: %s %q", c.Status, c.Reason)
	}
	if n := testutil.ToFloat64(d.m.writes.WithLabelValues(writeSucceeded)); n != 2 {
		t.Errorf("writes succeeded %v", n)
	}
	if n := testutil.ToFloat64(d.m.writes.WithLabelValues(writeFailed)); n != 2 {
		t.Errorf("writes failed %v", n)
	}
	// The device still answers after its exception.
	if st := statusOf(d, "acme:d1"); !st.Online {
		t.Errorf("status after an exception %+v", st)
	}
}

// TestCommandWaitsForDevice: a command for a device that does not answer
// waits in its queue and is written once the device is back.
func TestCommandWaitsForDevice(t *testing.T) {
	e := newEnv(t)
	f := newField()
	addr := freeAddr(t)
	stop := serve(t, addr, f)
	d := e.driver([]Device{device(t, "acme:d1", addr)}, nil)
	eventually(t, "online", func() bool { return statusOf(d, "acme:d1").Online })
	stop()
	eventually(t, "offline", func() bool { return !statusOf(d, "acme:d1").Online })
	c, _, err := e.commands.Issue(e.ctx, "alice", command.IssueRequest{Code: "acme:d1", Action: "setSpeed", Args: json.RawMessage(`{"rpm":42}`)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if c, _ := e.commands.Get(e.ctx, c.ID); c.Status != command.Queued || c.Attempts != 0 {
		t.Errorf("a command for an offline device: %s after %d attempts", c.Status, c.Attempts)
	}
	serve(t, addr, f)
	if c := waitCommand(t, e, c.ID); c.Status != command.Succeeded || f.holdingAt(300) != 42 {
		t.Errorf("after the device came back: %s %q; register 300 = %d", c.Status, c.Reason, f.holdingAt(300))
	}
}

// TestDeviceStopsAnswering: a device whose server goes away is reported
// offline with the connection as the reason, attempts back off further
// each time, and polling resumes when a server answers on the same port;
// a device that answers too late is offline for a timeout.
func TestDeviceStopsAnswering(t *testing.T) {
	e := newEnv(t)
	f := newField()
	addr := freeAddr(t)
	stop := serve(t, addr, f)
	d := e.driver([]Device{device(t, "acme:d1", addr)}, nil)
	eventually(t, "online", func() bool { return statusOf(d, "acme:d1").Online })

	stop()
	eventually(t, "offline", func() bool { return !statusOf(d, "acme:d1").Online })
	if st := statusOf(d, "acme:d1"); st.Reason != ReasonNetwork || st.LastError == "" {
		t.Errorf("offline status %+v", st)
	}
	// Backoff: 50 ms·2^(n-1) jittered into [d/2, d]; by the fourth
	// failure in a row it is longer than any first one.
	var first, fourth time.Duration
	eventually(t, "four failures in a row", func() bool {
		st := statusOf(d, "acme:d1")
		if st.Failures == 1 && first == 0 {
			first = st.Backoff
		}
		if st.Failures >= 4 {
			fourth = st.Backoff
			return true
		}
		return false
	})
	if first == 0 || first > 50*time.Millisecond || fourth < 200*time.Millisecond || fourth > 2*time.Second {
		t.Errorf("backoff after the first failure %v, after the fourth %v", first, fourth)
	}
	polls := statusOf(d, "acme:d1").Polls

	// Back on the same port.
	serve(t, addr, f)
	eventually(t, "online again", func() bool { return statusOf(d, "acme:d1").Online })
	eventually(t, "polls again", func() bool { return statusOf(d, "acme:d1").Polls > polls+2 })
	if st := statusOf(d, "acme:d1"); st.Failures != 0 || st.Backoff != 0 || st.Reason != "" {
		t.Errorf("status after recovery %+v", st)
	}

	// Too slow: a timeout.
	f.setDelay(time.Second)
	eventually(t, "offline for a timeout", func() bool {
		st := statusOf(d, "acme:d1")
		return !st.Online && st.Reason == ReasonTimeout
	})
	f.setDelay(0)
	eventually(t, "online after the timeouts", func() bool { return statusOf(d, "acme:d1").Online })

	want := []string{
		"connected acme:d1 modbus", "disconnected acme:d1 modbus network",
		"connected acme:d1 modbus", "disconnected acme:d1 modbus timeout",
		"connected acme:d1 modbus",
	}
	if got := e.pres.list(); !slices.Equal(got, want) {
		t.Errorf("presence\n got %q\nwant %q", got, want)
	}
}

// TestBadDevicesDoNotStallOthers: devices answering exceptions, frames of
// the wrong length, or nothing in time, poll beside a healthy one, whose
// polls keep their pace.
func TestBadDevicesDoNotStallOthers(t *testing.T) {
	e := newEnv(t)
	healthy, excepting, hanging := newField(), newField(), newField()
	excepting.failAll = mb.ErrIllegalDataAddress
	hanging.setDelay(5 * time.Second)
	ha, ea, xa := freeAddr(t), freeAddr(t), freeAddr(t)
	serve(t, ha, healthy)
	serve(t, ea, excepting)
	serve(t, xa, hanging)
	ga := serveGarbage(t)
	reg := prometheus.NewRegistry()
	d := e.driver([]Device{
		device(t, "acme:healthy", ha), device(t, "acme:excepting", ea),
		device(t, "acme:garbage", ga), device(t, "acme:hanging", xa),
	}, func(o *Options) { o.Metrics = reg })
	eventually(t, "the healthy device polled", func() bool { return statusOf(d, "acme:healthy").Polls > 0 })
	start := statusOf(d, "acme:healthy").Polls
	const window = 2 * time.Second
	time.Sleep(window)
	// Two groups every 100 ms: 40 polls in the window; a loaded machine
	// may lose some, a stalled loop would lose most.
	if n := statusOf(d, "acme:healthy").Polls - start; n < 24 {
		t.Errorf("the healthy device was polled %d times in %v, want about 40", n, window)
	}
	for cause, want := range map[string]float64{causeException: 1, causeBadResponse: 1, causeTimeout: 1} {
		if n := testutil.ToFloat64(d.m.errors.WithLabelValues(cause)); n < want {
			t.Errorf("errors{cause=%q} = %v", cause, n)
		}
	}
	if st := statusOf(d, "acme:excepting"); !st.Online || !strings.Contains(st.LastError, "illegal data address") || st.Polls != 0 {
		t.Errorf("excepting device %+v", st)
	}
	if st := statusOf(d, "acme:garbage"); !strings.Contains(st.LastError, "protocol error") || st.Polls != 0 {
		t.Errorf("garbage device %+v", st)
	}
	if st := statusOf(d, "acme:hanging"); st.Online || st.Reason != ReasonTimeout {
		t.Errorf("hanging device %+v", st)
	}
	if e.rec.messages("acme:excepting")+e.rec.messages("acme:garbage")+e.rec.messages("acme:hanging") != 0 {
		t.Error("a failing device's poll was published")
	}
	// The failing groups back off: far fewer requests than the healthy
	// device's.
	if n, h := excepting.reads.Load(), healthy.reads.Load(); n*2 > h {
		t.Errorf("the excepting device was asked %d times, the healthy one %d", n, h)
	}
}

// TestDeviceList: SetDevices starts, restarts and stops loops, refuses
// what it cannot poll and takes the rest; DisconnectDevice stops a revoked
// device; Shutdown reports the online ones offline.
func TestDeviceList(t *testing.T) {
	e := newEnv(t)
	f1, f2 := newField(), newField()
	a1, a2 := freeAddr(t), freeAddr(t)
	serve(t, a1, f1)
	serve(t, a2, f2)
	d := e.driver(nil, nil)
	if got := d.Status(); len(got) != 0 {
		t.Fatalf("status of an empty list %+v", got)
	}
	noMapping := parseModel(t, `{"id":"acme:plain","version":"1.0.0","properties":{"t":{"type":"number"}}}`)
	err := d.SetDevices([]Device{
		device(t, "acme:d1", a1), device(t, "acme:d2", a2),
		{Code: "acme:bad-url", Model: device(t, "x", a1).Model, URL: "http://" + a1},
		{Code: "acme:no-port", Model: device(t, "x", a1).Model, URL: "tcp://127.0.0.1"},
		{Code: "acme:path", Model: device(t, "x", a1).Model, URL: "tcp://" + a1 + "/"},
		{Code: "acme:broadcast", Model: device(t, "x", a1).Model, URL: "rtuovertcp://" + a1},
		{Code: "acme:plain", Model: noMapping, URL: "tcp://" + a1},
		device(t, "acme:d1", a2),
	})
	for _, want := range []string{"acme:bad-url", "acme:no-port", "acme:path", "acme:broadcast", "acme:plain: model: the model has no Modbus mapping", "acme:d1: listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SetDevices error %v lacks %q", err, want)
		}
	}
	eventually(t, "both polled", func() bool { return statusOf(d, "acme:d1").Polls > 0 && statusOf(d, "acme:d2").Polls > 0 })
	if got := len(d.Status()); got != 2 {
		t.Errorf("%d devices listed", got)
	}

	// d1 moves to the other server: its loop starts again there.
	moved := device(t, "acme:d1", a2)
	if err := d.SetDevices([]Device{moved, device(t, "acme:d2", a2)}); err != nil {
		t.Fatal(err)
	}
	before := f2.reads.Load()
	eventually(t, "d1 polled at its new address", func() bool { return statusOf(d, "acme:d1").Polls > 0 && f2.reads.Load() > before+20 })
	r1 := f1.reads.Load()
	time.Sleep(300 * time.Millisecond)
	if n := f1.reads.Load(); n != r1 {
		t.Errorf("the old address was read %d more times", n-r1)
	}

	// Revoked: its loop stops until a list names it again.
	d.DisconnectDevice("acme:d2")
	eventually(t, "d2 off the list", func() bool { return len(d.Status()) == 1 })
	// Shut down: the remaining online device goes offline.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := d.Start(ctx); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
	got := e.pres.list()
	for _, want := range []string{
		"disconnected acme:d1 modbus " + ReasonRemoved,
		"disconnected acme:d2 modbus " + presence.ReasonRevoked,
		"disconnected acme:d1 modbus " + presence.ReasonShutdown,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("presence %q lacks %q", got, want)
		}
	}
	if n := testutil.ToFloat64(d.m.online); n != 0 {
		t.Errorf("online gauge %v after shutdown", n)
	}
}

// TestDesiredState: a desired property with a holding register is written
// when the twin changes, and reported.
func TestDesiredState(t *testing.T) {
	e := newEnv(t)
	f := newField()
	addr := freeAddr(t)
	serve(t, addr, f)
	d := e.driver([]Device{device(t, "acme:d1", addr)}, nil)
	eventually(t, "online", func() bool { return statusOf(d, "acme:d1").Online })
	if _, err := e.twins.SetDesired(e.ctx, "alice", "acme:d1", []byte(`{"setpoint":21.5,"temperature":3}`), 0); err != nil {
		t.Fatal(err)
	}
	d.TwinChanged("acme:d1")
	eventually(t, "the setpoint written", func() bool { return f.holdingAt(60) == 43 })
	eventually(t, "the setpoint reported", func() bool {
		tw, err := e.twins.Get(e.ctx, "acme:d1")
		if err != nil {
			t.Fatal(err)
		}
		_, pending := tw.Delta()["setpoint"]
		return !pending
	})
	// temperature is a holding register too, and not read-only: 3 at a
	// scale of 0.1.
	if got := f.holdingAt(0); got != 30 {
		t.Errorf("temperature's register = %d, want 30", got)
	}
}

func TestMerge(t *testing.T) {
	m := parseModel(t, driveModel)
	pl, err := compile(m)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range pl.groups[0].reqs {
		var props []string
		for _, it := range r.items {
			props = append(props, pl.groups[0].readings[it.reading].prop)
		}
		got = append(got, r.table+":"+strings.Join(props, ",")+":"+string(rune('0'+r.count%10)))
	}
	// Adjacent registers of one table share a request; the rest have
	// their own.
	want := []string{"coil:running:1", "discrete:alarm:1", "holding:temperature,count:3", "holding:flow:2", "holding:setpoint:1",
		"input:energy,level,pressure:5", "input:total:4", "input:ready:1"}
	if !slices.Equal(got, want) {
		t.Errorf("requests\n got %q\nwant %q", got, want)
	}
	if _, ok := pl.desired["setpoint"]; !ok || pl.desired["energy"] != nil {
		t.Errorf("desired points %v", pl.desired)
	}
	if _, err := compile(nil); !errors.Is(err, errNoMapping) {
		t.Errorf("compile(nil) = %v", err)
	}
}
