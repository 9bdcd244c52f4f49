package forward

import (
	"math"
	"sort"
	"strings"

	"github.com/wanwu-iot/wanwu/internal/ingest"
)

// Rollups summarise numeric values per device, property and minute: what
// remains of raw values that an edge reduced (a full telemetry quota) or
// keeps to itself (properties classified important or core).
//
// A rollup of property p is four values at the start of its minute:
// p:min1m, p:mean1m, p:max1m and p:count1m. The colon keeps them apart from
// every property name a model may declare (the name grammar has no colon),
// and is PromQL's convention for series computed from others.
const (
	RollupWindow = 60_000 // ms
	rollupMin    = ":min1m"
	rollupMean   = ":mean1m"
	rollupMax    = ":max1m"
	rollupCount  = ":count1m"
)

// IsRollup reports whether a property name is a rollup's.
func IsRollup(property string) bool { return strings.Contains(property, ":") }

type rollupKey struct {
	tenant, device, model, property string
	minute                          int64
}

type rollupAcc struct {
	min, max, sum float64
	n             int64
	added         int64 // wall clock of the last value added, ms
}

type seriesKey struct{ tenant, device, model, property string }

// rollups accumulates values into per-minute summaries.
type rollups struct {
	acc map[rollupKey]*rollupAcc
	// newest is, per series, the newest minute a value came for: an older
	// minute of the series is complete.
	newest map[seriesKey]int64
	// now is the wall clock (ms) the values are added at; 0: time.Now.
	now func() int64
}

// add takes a message's numeric values; it reports how many values it
// took.
func (r *rollups) add(m *ingest.Message) int {
	if m.Kind != ingest.Telemetry {
		return 0
	}
	n := 0
	for i := range m.Records {
		rec := &m.Records[i]
		if rec.Kind != ingest.KindFloat || IsRollup(rec.Property) {
			continue
		}
		r.addValue(m.Tenant, m.Device, m.Model, rec.Property, rec.Time, rec.Float)
		n++
	}
	return n
}

func (r *rollups) addValue(tenant, device, model, property string, t int64, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	if r.acc == nil {
		r.acc = make(map[rollupKey]*rollupAcc)
		r.newest = make(map[seriesKey]int64)
	}
	minute := t - mod(t, RollupWindow)
	k := rollupKey{tenant, device, model, property, minute}
	a := r.acc[k]
	if a == nil {
		a = &rollupAcc{min: v, max: v}
		r.acc[k] = a
	}
	a.min, a.max = min(a.min, v), max(a.max, v)
	a.sum += v
	a.n++
	if r.now != nil {
		a.added = r.now()
	}
	sk := seriesKey{tenant, device, model, property}
	if n, ok := r.newest[sk]; !ok || minute > n {
		r.newest[sk] = minute
	}
}

func mod(t, w int64) int64 {
	m := t % w
	if m < 0 {
		m += w
	}
	return m
}

// takeClosed returns the summaries of the minutes that are complete: a
// later minute of the series has values, or no value came for grace (ms)
// of the wall clock now and the minute ended more than grace ago.
func (r *rollups) takeClosed(now, grace int64) []ingest.Message {
	return r.takeIf(func(k rollupKey, a *rollupAcc) bool {
		if r.newest[seriesKey{k.tenant, k.device, k.model, k.property}] > k.minute {
			return true
		}
		return now-a.added > grace && now > k.minute+RollupWindow+grace
	})
}

// take returns the summaries of the minutes before (ms; math.MaxInt64 for
// all) as telemetry messages, one per device and minute, in time order, and
// forgets them.
func (r *rollups) take(before int64) []ingest.Message {
	return r.takeIf(func(k rollupKey, _ *rollupAcc) bool { return k.minute+RollupWindow <= before })
}

func (r *rollups) takeIf(closed func(rollupKey, *rollupAcc) bool) []ingest.Message {
	type devMinute struct {
		tenant, device, model string
		minute                int64
	}
	byDev := map[devMinute][]ingest.Record{}
	for k, a := range r.acc {
		if !closed(k, a) {
			continue
		}
		dm := devMinute{k.tenant, k.device, k.model, k.minute}
		byDev[dm] = append(byDev[dm],
			ingest.Record{Property: k.property + rollupMin, Time: k.minute, Float: a.min},
			ingest.Record{Property: k.property + rollupMean, Time: k.minute, Float: a.sum / float64(a.n)},
			ingest.Record{Property: k.property + rollupMax, Time: k.minute, Float: a.max},
			ingest.Record{Property: k.property + rollupCount, Time: k.minute, Float: float64(a.n)},
		)
		delete(r.acc, k)
	}
	for sk, minute := range r.newest {
		if _, open := r.acc[rollupKey{sk.tenant, sk.device, sk.model, sk.property, minute}]; !open {
			delete(r.newest, sk)
		}
	}
	out := make([]ingest.Message, 0, len(byDev))
	for dm, recs := range byDev {
		sort.Slice(recs, func(i, j int) bool { return recs[i].Property < recs[j].Property })
		out = append(out, ingest.Message{Device: dm.device, Tenant: dm.tenant, Model: dm.model, Kind: ingest.Telemetry,
			Received: dm.minute, Source: "edge", Records: recs})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Records[0].Time != out[j].Records[0].Time {
			return out[i].Records[0].Time < out[j].Records[0].Time
		}
		return out[i].Device < out[j].Device
	})
	return out
}

// len is how many summaries are open.
func (r *rollups) len() int { return len(r.acc) }
