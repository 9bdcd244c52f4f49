package loop

import (
	"strconv"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// TestBatchEvidence: the records one batch of samples decides are all in
// the store when the engine is done with the batch, in the state they
// reached (the action sent, not only proposed; the other object's
// decision cleared), in the order the loops decided; and an action's
// record was stored before its command was issued: the command is named
// after the record's ID, which only its insert gives it.
func TestBatchEvidence(t *testing.T) {
	e := newEnv(t, "hub", "")
	e.object("demo:cnc-1", "demo:cnc-spindle", "", "", "")
	e.object("demo:cnc-2", "demo:cnc-spindle", "", "", "")
	for _, doc := range []string{`
id: a-feed
mode: active
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: last}
  feed: {property: feedRate, fn: last}
decide:
  when: band > 1.0
  clear: band < 0.5
act:
  command: setFeedRate
  args: {feedRate: feed * 0.8}
`, `
id: b-alarm
mode: active
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: last}
decide:
  when: band > 1.0
  clear: band < 0.5
act:
  alarm: {name: chatter, severity: low}
`} {
		if _, _, err := e.engine.Define(e.ctx, "author", "demo", []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.engine.load(e.ctx); err != nil {
		t.Fatal(err)
	}
	msg := func(code string, band float64, at time.Time) ingest.Message {
		ms := at.UnixMilli()
		return ingest.Message{Device: code, Tenant: "demo", Kind: ingest.Telemetry, Received: ms, Records: []ingest.Record{
			{Property: "vibBandHigh", Kind: ingest.KindFloat, Time: ms, Float: band},
			{Property: "feedRate", Kind: ingest.KindFloat, Time: ms, Float: 100},
		}}
	}
	// cnc-2's decisions turn on in a batch of their own.
	e.feed([]ingest.Message{msg("demo:cnc-2", 2, goldenBase)})
	before, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{})
	if err != nil || len(before) != 2 {
		t.Fatalf("after the first batch: %d records (%v), want 2", len(before), err)
	}
	// One batch: cnc-1's decisions turn on, cnc-2's turn off.
	at := goldenBase.Add(time.Second)
	e.clock.set(at)
	e.feed([]ingest.Message{msg("demo:cnc-1", 2, at), msg("demo:cnc-2", 0.1, at)})
	evs, err := e.engine.opts.Store.ListEvidence(e.ctx, EvidenceFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(evs) - 3; i >= 0; i-- { // oldest first, after the first batch's
		got = append(got, evs[i].Loop+" "+evs[i].Object+" "+evs[i].Kind+" "+evs[i].State)
	}
	want := []string{
		"demo:a-feed demo:cnc-1 action sent",
		"demo:b-alarm demo:cnc-1 action recorded",
		"demo:a-feed demo:cnc-2 clear recorded",
		"demo:b-alarm demo:cnc-2 clear recorded",
	}
	if len(got) != len(want) {
		t.Fatalf("records of the batch:\n%v\nwant\n%v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("records of the batch:\n%v\nwant\n%v", got, want)
		}
	}
	sent := evs[len(evs)-3]
	if sent.Action == nil || sent.Action.CommandID != "loop-"+strconv.FormatInt(sent.ID, 10) {
		t.Fatalf("the action's command is not named after its record %d: %+v", sent.ID, sent.Action)
	}
	cmd, err := e.commands.Get(e.ctx, sent.Action.CommandID)
	if err != nil || cmd.Code != "demo:cnc-1" {
		t.Fatalf("command %s: %+v, %v", sent.Action.CommandID, cmd, err)
	}
	if st := e.engine.Stats(); len(st) != 2 {
		t.Fatalf("stats: %+v", st)
	} else {
		for _, s := range st {
			if s.Key == "demo:a-feed" && (s.Outcomes[StateSent] != 2 || s.Outcomes["proposed"] != 2 || s.Outcomes[StateRecorded] != 1) {
				t.Fatalf("a-feed's outcomes: %v", s.Outcomes)
			}
		}
	}
}
