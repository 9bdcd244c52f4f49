package loop

// BenchmarkEngineIngest (bench/loops.sh, bench/RESULTS.md "Closed loops"):
// how many samples the engine takes into its feature windows, and how many
// decisions it evaluates, per second of one core, with 10,000 objects. No
// peer: these are wanwu's own code paths.

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wanwu-iot/wanwu/internal/ingest"
	"github.com/wanwu-iot/wanwu/internal/keys"
	"github.com/wanwu-iot/wanwu/internal/registry"
)

// benchLoop perceives five features of the spindle (mean, max and rms over
// time windows, a rate, the last value) and decides on two of them. The
// benchmark's values keep the decision off: it measures perception and
// decision, not actuation (whose cost is the command and the evidence,
// measured end to end by the loop latency benchmark in internal/hubtest).
const benchLoop = `
id: bench-features
mode: active
on: {model: demo:cnc-spindle}
perceive:
  band: {property: vibBandHigh, fn: mean, window: 15s}
  peak: {property: vibRms, fn: max, window: 30s}
  mid: {property: vibBandMid, fn: rms, window: 1m}
  heat: {property: spindleTemp, fn: rate, window: 1m}
  feed: {property: feedRate, fn: last}
decide:
  when: band > 1.0 && peak > 5.0 || heat > 0.5
  clear: band < 0.6 && heat < 0.2
act:
  command: setFeedRate
  args: {feedRate: feed * 0.8}
guard:
  bounds: {feedRate: [40, 120]}
`

// BenchmarkEngineIngest feeds an engine over real services (the golden
// tests' env: SQLite registry, twins, commands) one message per object per
// round, five records each, for WANWU_BENCH_LOOP_OBJECTS objects (10,000),
// in batches of 100 messages as the ingest log hands them over; the clock
// moves 5 s (the model's sampling) per round, and the engine evaluates the
// touched objects after each batch, as its goroutine does. One op is one
// object's message. Two rounds fill the windows before the timer starts.
// Run it with -cpu 1 so that everything, the garbage collector included,
// shares one core: the rates are then per core.
func BenchmarkEngineIngest(b *testing.B) {
	n := 10000
	if v := os.Getenv("WANWU_BENCH_LOOP_OBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	e := newEnv(b, "hub", "")
	reg := prometheus.NewRegistry()
	e.engine.metrics = newMetrics(reg)
	start := time.Now()
	// One fsync per registration is not what is measured: the load runs
	// with the writer's synchronous setting off, then back to FULL.
	if _, err := e.db.W.ExecContext(e.ctx, `PRAGMA synchronous = OFF`); err != nil {
		b.Fatal(err)
	}
	codes := make([]string, n)
	for i := range codes {
		codes[i] = "demo:spindle-" + strconv.Itoa(i)
		if _, err := e.reg.Register(e.ctx, "bench", registry.RegisterRequest{Code: codes[i], Kind: "device",
			Model: &registry.ModelRef{ID: "demo:cnc-spindle", Version: "1.0.0"}, Key: registry.KeySource{Alg: keys.Ed25519}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.db.W.ExecContext(e.ctx, `PRAGMA synchronous = FULL`); err != nil {
		b.Fatal(err)
	}
	if _, _, err := e.engine.Define(e.ctx, "bench", "demo", []byte(benchLoop)); err != nil {
		b.Fatal(err)
	}
	if err := e.engine.load(e.ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d objects registered in %v", n, time.Since(start).Round(time.Millisecond))

	const batch = 100
	const step = 5 * time.Second
	msgs := make([]ingest.Message, 0, batch)
	var out []sample
	round, next := 0, 0
	// feed hands the next count objects' messages to the engine.
	feed := func(count int) {
		for count > 0 {
			msgs = msgs[:0]
			at := goldenBase.Add(time.Duration(round) * step)
			e.clock.set(at)
			for len(msgs) < batch && count > 0 && next < n {
				i := next
				ms := at.UnixMilli()
				x := float64((i+round)%7) / 10 // 0 … 0.6: the decision stays off
				msgs = append(msgs, ingest.Message{Device: codes[i], Tenant: "demo", Kind: ingest.Telemetry, Received: ms,
					Records: []ingest.Record{
						{Property: "vibBandHigh", Kind: ingest.KindFloat, Time: ms, Float: 0.2 + x},
						{Property: "vibRms", Kind: ingest.KindFloat, Time: ms, Float: 2 + x},
						{Property: "vibBandMid", Kind: ingest.KindFloat, Time: ms, Float: 0.5 + x},
						{Property: "spindleTemp", Kind: ingest.KindFloat, Time: ms, Float: 40 + x},
						{Property: "feedRate", Kind: ingest.KindFloat, Time: ms, Float: 100},
					}})
				next++
				count--
			}
			out = out[:0]
			e.engine.collect(msgs, &out)
			e.engine.ingest(e.ctx, out)
			if next == n {
				next = 0
				round++
			}
		}
	}
	feed(2 * n) // the windows hold two samples: every feature has a value
	evals := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "wanwu_loop_evaluations_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	if evals() == 0 {
		b.Fatal("the engine evaluated no decision while the windows filled")
	}
	b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
		ev0 := evals()
		b.ReportAllocs()
		b.ResetTimer()
		feed(b.N)
		b.StopTimer()
		sec := b.Elapsed().Seconds()
		evaluated := evals() - ev0
		// Every message of an object whose windows are full is evaluated
		// once, after its batch.
		if evaluated < float64(b.N) {
			b.Fatalf("%v decisions evaluated for %d messages", evaluated, b.N)
		}
		b.ReportMetric(float64(b.N)*5/sec, "samples/s")
		b.ReportMetric(evaluated/sec, "decisions/s")
		b.ReportMetric(0, "ns/op")
	})
	for _, s := range e.engine.Stats() {
		if s.Outcomes[StateSent]+s.Outcomes[StateRefused]+s.Outcomes[StateError] != 0 {
			b.Fatalf("the loop acted or failed: %+v", s)
		}
	}
}
