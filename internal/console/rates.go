package console

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The counters the fleet page's message rates are read from.
const (
	// Device messages made durable in the ingest log, whatever protocol
	// (or edge) they came over.
	metricIngest = "wanwu_ingest_messages_total"
	// Device messages rejected for their content (decode, model, mapping):
	// stored as dead letters with their reason.
	metricDeadLetters = "wanwu_ingest_dead_letters_total"
	// Publishes, requests and subscriptions the protocol endpoints refused
	// (ACL, limits, admission, malformed).
	metricMQTTRejected = "wanwu_mqtt_rejected_total"
	metricCoAPRejected = "wanwu_coap_rejected_total"
)

// sample is the counters' totals at one time.
type sample struct {
	at       time.Time
	accepted float64 // wanwu_ingest_messages_total{result="durable"}
	dead     float64 // wanwu_ingest_dead_letters_total
	refused  float64 // wanwu_mqtt_rejected_total + wanwu_coap_rejected_total
}

// rates keeps the last samples of the message counters, taken every
// Options.RateEvery by Console.Run.
type rates struct {
	g    prometheus.Gatherer
	keep int

	mu      sync.Mutex
	samples []sample // oldest first, at most keep
}

// take gathers the counters once and appends a sample.
func (r *rates) take(now time.Time) error {
	s, err := gatherSample(r.g, now)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == r.keep {
		copy(r.samples, r.samples[1:])
		r.samples = r.samples[:r.keep-1]
	}
	r.samples = append(r.samples, s)
	return nil
}

func gatherSample(g prometheus.Gatherer, now time.Time) (sample, error) {
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return sample{}, fmt.Errorf("console: gather metrics: %w", err)
	}
	s := sample{at: now}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricIngest, metricDeadLetters, metricMQTTRejected, metricCoAPRejected:
		default:
			continue
		}
		// Read through the generated getters, so that this package need not
		// import client_model, which the module uses only indirectly.
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			switch mf.GetName() {
			case metricIngest:
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" && l.GetValue() == "durable" {
						s.accepted += v
					}
				}
			case metricDeadLetters:
				s.dead += v
			default:
				s.refused += v
			}
		}
	}
	return s, nil
}

// rateView is what the fleet page shows of the message counters.
type rateView struct {
	// Every is the sampling interval; Measured is false until two samples
	// exist.
	Every    time.Duration
	Measured bool
	// Per second over the latest interval.
	Accepted, Dead, Refused float64
	// Totals since the node started.
	TotalAccepted, TotalDead, TotalRefused float64
	// At is the time of the latest sample.
	At time.Time
	// Series holds the per-interval rates for the chart: the end of each
	// interval (Unix seconds) and the three rates.
	Series rateSeries
}

// rateSeries is the chart's data, in uPlot's column layout.
type rateSeries struct {
	T        []int64   `json:"t"`
	Accepted []float64 `json:"accepted"`
	Dead     []float64 `json:"dead"`
	Refused  []float64 `json:"refused"`
}

// view returns the rates measured so far.
func (r *rates) view(every time.Duration) rateView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := rateView{Every: every}
	n := len(r.samples)
	if n == 0 {
		return v
	}
	last := r.samples[n-1]
	v.At, v.TotalAccepted, v.TotalDead, v.TotalRefused = last.at, last.accepted, last.dead, last.refused
	for i := 1; i < n; i++ {
		a, b := r.samples[i-1], r.samples[i]
		dt := b.at.Sub(a.at).Seconds()
		if dt <= 0 {
			continue
		}
		v.Series.T = append(v.Series.T, b.at.Unix())
		v.Series.Accepted = append(v.Series.Accepted, perSecond(a.accepted, b.accepted, dt))
		v.Series.Dead = append(v.Series.Dead, perSecond(a.dead, b.dead, dt))
		v.Series.Refused = append(v.Series.Refused, perSecond(a.refused, b.refused, dt))
	}
	if k := len(v.Series.T); k > 0 {
		v.Measured = true
		v.Accepted, v.Dead, v.Refused = v.Series.Accepted[k-1], v.Series.Dead[k-1], v.Series.Refused[k-1]
	}
	return v
}

// perSecond is a counter's rate; a counter that went down (a registry
// replaced) counts from zero.
func perSecond(a, b, dt float64) float64 {
	if b < a {
		return b / dt
	}
	return (b - a) / dt
}
