package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/hubclient"
)

// Twin and command round trips against a wanwu hub: M devices connected
// over MQTT 5 subscribe to their twin/delta and commands/+ topics and
// answer at once; the generator drives them through the hub's API and
// measures, from the moment it sends the API request:
//
//   - twin: desired set → the device sees the delta; → the device's report
//     is stored (its PUBACK) and a GET of the twin shows an empty delta;
//   - commands: issued → the device receives it; → the device's result is
//     stored (its PUBACK); → the API shows it succeeded.

// RoundtripModelVersion is the version of the round-trip devices' model.
const RoundtripModelVersion = "1.0.0"

// RoundtripModel returns the thing model document of the round-trip
// devices of tenant: a writable number "setpoint" and an action "ping"
// with a number argument "n".
func RoundtripModel(tenant string) []byte {
	return []byte(`{"id":"` + tenant + `:rtdev","version":"` + RoundtripModelVersion + `","title":"bench round-trip device",
 "properties":{"setpoint":{"type":"number"}},
 "actions":{"ping":{"description":"answer at once","input":{"n":{"type":"number"}}}}}`)
}

// RoundtripModelRef is <tenant>:rtdev@<version>.
func RoundtripModelRef(tenant string) string { return tenant + ":rtdev@" + RoundtripModelVersion }

// EnsureModel registers a thing model at the hub; one already registered
// (an identical document) is fine.
func EnsureModel(ctx context.Context, hub, token string, doc []byte) error {
	h := &hubclient.Client{Base: strings.TrimRight(hub, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
	body, _ := json.Marshal(map[string]string{"name": tenantOfModel(doc), "title": "load generator devices"})
	if _, status, err := h.Do(ctx, "POST", "/api/v1/tenants", bytes.NewReader(body), "application/json"); err != nil && status != http.StatusConflict {
		return fmt.Errorf("loadgen: create tenant: %w", err)
	}
	if _, _, err := h.Do(ctx, "POST", "/api/v1/models", bytes.NewReader(doc), "application/json"); err != nil {
		return fmt.Errorf("loadgen: register model: %w", err)
	}
	return nil
}

func tenantOfModel(doc []byte) string {
	var m struct{ ID string }
	_ = json.Unmarshal(doc, &m)
	t, _, _ := strings.Cut(m.ID, ":")
	return t
}

// DevicePSKs reads every device's DTLS pre-shared key from the hub (GET
// /api/v1/objects/{code}/psk; the key's text is the PSK).
func DevicePSKs(ctx context.Context, hub, token string, codes []string) ([][]byte, error) {
	h := &hubclient.Client{Base: strings.TrimRight(hub, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
	out := make([][]byte, len(codes))
	errs := make([]error, len(codes))
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var k struct{ Key string }
				if _, err := h.JSON(ctx, "GET", "/api/v1/objects/"+url.PathEscape(codes[i])+"/psk", nil, &k); err != nil {
					errs[i] = fmt.Errorf("loadgen: PSK of %s: %w", codes[i], err)
					continue
				}
				out[i] = []byte(k.Key)
			}
		}()
	}
	for i := range codes {
		work <- i
	}
	close(work)
	wg.Wait()
	return out, errors.Join(errs...)
}

// RoundtripOptions describes a round-trip run.
type RoundtripOptions struct {
	Broker string // MQTT broker of the hub: tcp://host:port
	Hub    string // hub API base URL
	Token  string // API token (operator on the tenant)
	// Devices and their device tokens (MQTT passwords); len(Devices) is M.
	Devices []Device
	Tokens  []string
	// TwinRounds and CommandRounds per device (default 20 each).
	TwinRounds, CommandRounds int
	// Interval is the pause between one device's rounds (default 100 ms):
	// latency below saturation, not queueing.
	Interval    time.Duration
	Timeout     time.Duration // one round's limit (default 30 s)
	SourceAddrs []string
	Progress    func(string)
}

// RoundtripResult is what a round-trip run measured. Durations marshal as
// nanoseconds; every latency starts when the API request is sent.
type RoundtripResult struct {
	Mode          string        `json:"mode"` // "roundtrip"
	Broker        string        `json:"broker"`
	Hub           string        `json:"hub"`
	Devices       int           `json:"devices"`
	Connected     int           `json:"connected"`
	TwinRounds    int           `json:"twin_rounds"`
	CommandRounds int           `json:"command_rounds"`
	Interval      time.Duration `json:"interval_ns"`

	TwinOK int64 `json:"twin_ok"` // rounds completed with an empty delta
	// TwinNotified: PATCH desired sent → the device received the delta.
	TwinNotified Percentiles `json:"twin_desired_to_notified"`
	// TwinReported: → the device's report acknowledged (stored).
	TwinReported Percentiles `json:"twin_desired_to_reported"`
	// TwinSettled: → a GET of the twin after the report shows no delta.
	TwinSettled Percentiles `json:"twin_desired_to_settled"`

	CommandOK int64 `json:"command_ok"` // commands the API shows succeeded
	// CommandReceived: POST command sent → the device received it.
	CommandReceived Percentiles `json:"command_issued_to_received"`
	// CommandResult: → the device's result acknowledged (stored).
	CommandResult Percentiles `json:"command_issued_to_result_acked"`
	// CommandSucceeded: → GET /api/v1/commands/{id} shows succeeded
	// (polled after the result's acknowledgement, every 5 ms).
	CommandSucceeded Percentiles `json:"command_issued_to_succeeded"`

	Errors              map[string]int64 `json:"errors,omitempty"`
	GeneratorCPUSeconds float64          `json:"generator_cpu_s"`
	Elapsed             time.Duration    `json:"elapsed_ns"`
}

// rtDevice is one round-trip device's connection and its inbox.
type rtDevice struct {
	code, prefix string
	c            client
	delta        chan rtDelta
	cmd          chan rtCommand
}

type rtDelta struct {
	at    time.Time
	delta map[string]any
}

type rtCommand struct {
	at   time.Time
	id   string
	args map[string]any
}

func devicePrefix(code string) string { return strings.TrimSuffix(DeviceTopic(code), "telemetry") }

// Roundtrip runs the twin rounds, then the command rounds, of every device
// at once, each device's rounds one after another.
func Roundtrip(ctx context.Context, o RoundtripOptions) (*RoundtripResult, error) {
	if o.TwinRounds == 0 && o.CommandRounds == 0 {
		o.TwinRounds, o.CommandRounds = 20, 20
	}
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if len(o.Tokens) != len(o.Devices) {
		return nil, fmt.Errorf("%w: %d devices, %d tokens", ErrOptions, len(o.Devices), len(o.Tokens))
	}
	d, err := newDialer(Options{Broker: o.Broker, Timeout: o.Timeout, SourceAddrs: o.SourceAddrs})
	if err != nil {
		return nil, err
	}
	res := &RoundtripResult{Mode: "roundtrip", Broker: o.Broker, Hub: o.Hub, Devices: len(o.Devices),
		TwinRounds: o.TwinRounds, CommandRounds: o.CommandRounds, Interval: o.Interval}
	start := time.Now()
	cpu0 := selfCPU()
	var mu sync.Mutex
	addErr := func(kind string) {
		mu.Lock()
		if res.Errors == nil {
			res.Errors = map[string]int64{}
		}
		res.Errors[kind]++
		mu.Unlock()
	}

	devs := make([]*rtDevice, len(o.Devices))
	var wg sync.WaitGroup
	sem := make(chan struct{}, DefaultConnectWorkers)
	for i, dev := range o.Devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rd := &rtDevice{code: dev.Code, prefix: devicePrefix(dev.Code), delta: make(chan rtDelta, 64), cmd: make(chan rtCommand, 64)}
			c, err := connect(ctx, d, connectSpec{
				clientID: dev.Code, username: dev.Code, password: o.Tokens[i], protocol: 5,
				keepAlive: DefaultKeepAlive, timeout: o.Timeout, receiveMax: 64,
				onMessage: rd.onMessage,
			})
			if err != nil {
				addErr(errKind("connect", err))
				return
			}
			rd.c = c
			for _, f := range []string{rd.prefix + "twin/delta", rd.prefix + "commands/+"} {
				if err := c.subscribe(ctx, f, 1); err != nil {
					addErr(errKind("subscribe", err))
					c.disconnect()
					return
				}
			}
			devs[i] = rd
		}()
	}
	wg.Wait()
	var live []*rtDevice
	for _, rd := range devs {
		if rd != nil {
			live = append(live, rd)
		}
	}
	res.Connected = len(live)
	defer func() {
		for _, rd := range live {
			rd.c.disconnect()
		}
	}()
	if len(live) == 0 {
		return res, fmt.Errorf("loadgen: no round-trip device connected to %s", o.Broker)
	}
	o.Progress(fmt.Sprintf("%d devices connected; %d twin and %d command rounds each", len(live), o.TwinRounds, o.CommandRounds))

	h := &hubclient.Client{Base: strings.TrimRight(o.Hub, "/"), Token: o.Token,
		HTTP: &http.Client{Timeout: o.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: len(live) + 4}}}
	var notified, reported, settled, received, resulted, succeeded []time.Duration
	var twinOK, cmdOK int64
	run := func(rd *rtDevice) {
		// Drain what the subscription brought (the current state).
		time.Sleep(200 * time.Millisecond)
		drainDeltas(rd.delta)
		for k := 1; k <= o.TwinRounds && ctx.Err() == nil; k++ {
			n, r, s, err := twinRound(ctx, h, rd, k, o.Timeout)
			if err != nil {
				addErr(err.Error())
			} else {
				mu.Lock()
				notified, reported, settled = append(notified, n), append(reported, r), append(settled, s)
				twinOK++
				mu.Unlock()
			}
			time.Sleep(o.Interval)
		}
		for k := 1; k <= o.CommandRounds && ctx.Err() == nil; k++ {
			rcv, rs, sc, err := commandRound(ctx, h, rd, k, o.Timeout)
			if err != nil {
				addErr(err.Error())
			} else {
				mu.Lock()
				received, resulted, succeeded = append(received, rcv), append(resulted, rs), append(succeeded, sc)
				cmdOK++
				mu.Unlock()
			}
			time.Sleep(o.Interval)
		}
	}
	for _, rd := range live {
		wg.Add(1)
		go func() { defer wg.Done(); run(rd) }()
	}
	wg.Wait()
	res.TwinOK, res.CommandOK = twinOK, cmdOK
	res.TwinNotified, res.TwinReported, res.TwinSettled = Summarize(notified), Summarize(reported), Summarize(settled)
	res.CommandReceived, res.CommandResult, res.CommandSucceeded = Summarize(received), Summarize(resulted), Summarize(succeeded)
	res.GeneratorCPUSeconds = (selfCPU() - cpu0).Seconds()
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

func drainDeltas(ch chan rtDelta) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// onMessage is the device's MQTT handler: it notes the time of receipt and
// hands the message to the round waiting for it.
func (rd *rtDevice) onMessage(topic string, payload []byte) {
	now := time.Now()
	rest, ok := strings.CutPrefix(topic, rd.prefix)
	if !ok {
		return
	}
	switch {
	case rest == "twin/delta":
		var m struct {
			Delta map[string]any `json:"delta"`
		}
		if json.Unmarshal(payload, &m) == nil {
			select {
			case rd.delta <- rtDelta{at: now, delta: m.Delta}:
			default:
			}
		}
	case strings.HasPrefix(rest, "commands/"):
		var m struct {
			ID   string         `json:"id"`
			Args map[string]any `json:"args"`
		}
		if json.Unmarshal(payload, &m) == nil {
			select {
			case rd.cmd <- rtCommand{at: now, id: m.ID, args: m.Args}:
			default:
			}
		}
	}
}

// twinRound sets desired setpoint=k and waits for the delta carrying it;
// the device reports it; a GET then must show no delta.
func twinRound(ctx context.Context, h *hubclient.Client, rd *rtDevice, k int, timeout time.Duration) (notified, reported, settled time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	if _, err := h.JSON(ctx, "PATCH", "/api/v1/objects/"+url.PathEscape(rd.code)+"/twin/desired", map[string]any{"setpoint": k}, nil); err != nil {
		return 0, 0, 0, errors.New("twin_patch")
	}
	for {
		select {
		case <-ctx.Done():
			return 0, 0, 0, errors.New("twin_delta_timeout")
		case d := <-rd.delta:
			if v, ok := d.delta["setpoint"].(float64); !ok || v != float64(k) {
				continue // an earlier state's delta, or an empty one
			}
			notified = d.at.Sub(t0)
		}
		break
	}
	if err := rd.c.publish(ctx, rd.prefix+"twin/reported", 1, []byte(fmt.Sprintf(`{"setpoint":%d}`, k))); err != nil {
		return 0, 0, 0, errors.New(errKind("twin_report", err))
	}
	reported = time.Since(t0)
	var tw struct {
		Delta map[string]any `json:"delta"`
	}
	if _, err := h.JSON(ctx, "GET", "/api/v1/objects/"+url.PathEscape(rd.code)+"/twin", nil, &tw); err != nil {
		return 0, 0, 0, errors.New("twin_get")
	}
	if len(tw.Delta) != 0 {
		return 0, 0, 0, errors.New("twin_delta_not_empty")
	}
	return notified, reported, time.Since(t0), nil
}

// commandRound issues ping{n:k}; the device answers it succeeded at once;
// the API must then show it succeeded.
func commandRound(ctx context.Context, h *hubclient.Client, rd *rtDevice, k int, timeout time.Duration) (received, resulted, succeeded time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	var c struct{ ID string }
	if _, err := h.JSON(ctx, "POST", "/api/v1/objects/"+url.PathEscape(rd.code)+"/commands",
		map[string]any{"action": "ping", "args": map[string]any{"n": k}}, &c); err != nil || c.ID == "" {
		return 0, 0, 0, errors.New("command_issue")
	}
	for {
		select {
		case <-ctx.Done():
			return 0, 0, 0, errors.New("command_delivery_timeout")
		case m := <-rd.cmd:
			if m.id != c.ID {
				continue // a redelivery of an earlier command
			}
			received = m.at.Sub(t0)
		}
		break
	}
	out := fmt.Sprintf(`{"status":"succeeded","output":{"n":%d}}`, k)
	if err := rd.c.publish(ctx, rd.prefix+"commands/"+c.ID+"/result", 1, []byte(out)); err != nil {
		return 0, 0, 0, errors.New(errKind("command_result", err))
	}
	resulted = time.Since(t0)
	for {
		var st struct {
			Command struct{ Status string }
		}
		if _, err := h.JSON(ctx, "GET", "/api/v1/commands/"+url.PathEscape(c.ID), nil, &st); err != nil {
			return 0, 0, 0, errors.New("command_get")
		}
		switch st.Command.Status {
		case "succeeded":
			return received, resulted, time.Since(t0), nil
		case "failed", "expired", "timed_out", "canceled":
			return 0, 0, 0, errors.New("command_" + st.Command.Status)
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, errors.New("command_status_timeout")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
