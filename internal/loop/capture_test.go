package loop

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/command"
)

// rawWindow is a captureRaw result: a sine of amplitude amp (m/s²) at hz,
// 2048 samples at 2560 Hz, as int16 with a scale.
func rawWindow(hz, amp float64) json.RawMessage {
	const n, rate = 2048, 2560.0
	scale := amp / 30000
	buf := make([]byte, 2*n)
	for i := range n {
		v := amp * math.Sin(2*math.Pi*hz*float64(i)/rate)
		binary.LittleEndian.PutUint16(buf[2*i:], uint16(int16(math.Round(v/scale))))
	}
	b, _ := json.Marshal(map[string]any{"window": base64.StdEncoding.EncodeToString(buf), "samples": n, "sampleRate": rate, "scale": scale})
	return b
}

// TestCaptureBandEnergy: raw windows the spindle returns for captureRaw
// (asked by anyone) feed a band-energy feature through an FFT; a tone in
// the chatter band turns the decision on, one outside turns it off.
func TestCaptureBandEnergy(t *testing.T) {
	e := newEnv(t, "hub", "")
	e.object("demo:cnc-1", "demo:cnc-spindle", "", "", "")
	if _, _, err := e.engine.Define(e.ctx, "test", "demo", []byte(`
id: fft-chatter
mode: active
on: {model: demo:cnc-spindle}
perceive:
  chatter: {capture: captureRaw, band: [750, 1250], fn: last}
decide:
  when: chatter > 1.0
  clear: chatter < 0.5
act:
  alarm: {name: chatter-fft, severity: medium}
`)); err != nil {
		t.Fatal(err)
	}
	if err := e.engine.load(e.ctx); err != nil {
		t.Fatal(err)
	}
	result := func(hz, amp float64) {
		t.Helper()
		e.clock.set(e.clock.Now().Add(10 * time.Second))
		e.engine.CommandEvent(command.Event{Kind: command.EventSucceeded, Time: e.clock.Now(),
			Command: command.Command{Code: "demo:cnc-1", Action: "captureRaw", Output: rawWindow(hz, amp)}})
		e.engine.captured(e.ctx, <-e.engine.captures)
	}
	// A 900 Hz tone of amplitude 2: RMS √2 in the band.
	result(900, 2)
	evs, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{})
	if err != nil || len(evs) != 1 || evs[0].Kind != KindAction || evs[0].Alarm == "" {
		t.Fatalf("after a chatter tone: %v %+v", err, evs)
	}
	if got := evs[0].Features["chatter"]; math.Abs(got-math.Sqrt2) > 0.1 {
		t.Errorf("band energy %v, want about √2", got)
	}
	// The tone moves to 200 Hz: nothing in the band.
	result(200, 2)
	evs, _ = e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{})
	if len(evs) != 2 || evs[0].Kind != KindClear || evs[0].Features["chatter"] > 0.2 {
		t.Fatalf("after a tone outside the band: %+v", evs[0])
	}
	// A malformed window is counted, not used.
	e.engine.CommandEvent(command.Event{Kind: command.EventSucceeded, Time: e.clock.Now(),
		Command: command.Command{Code: "demo:cnc-1", Action: "captureRaw", Output: json.RawMessage(`{"window":"!!","samples":1,"sampleRate":1,"scale":1}`)}})
	e.engine.captured(e.ctx, <-e.engine.captures)
	if evs, _ := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{}); len(evs) != 2 {
		t.Fatalf("a malformed window made a decision: %+v", evs[0])
	}
	// A definition that captures from an action without a raw window is refused.
	_, _, err = e.engine.Define(e.ctx, "test", "demo", []byte(`
id: bad-capture
on: {model: demo:cnc-spindle}
perceive:
  x: {capture: setFeedRate, band: [10, 5], fn: last}
decide: {when: x > 1.0}
act: {alarm: {name: a, severity: low}}
`))
	if err == nil {
		t.Fatal("a capture of setFeedRate with an inverted band was accepted")
	}
	for _, want := range []string{"$.perceive.x.capture: the result of setFeedRate carries no raw window", "$.perceive.x.band: must be [low, high]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal lacks %q: %v", want, err)
		}
	}
}
