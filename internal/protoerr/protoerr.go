// Package protoerr counts and reports malformed traffic on the hub's device
// protocols: garbage on an MQTT port, packets over the size limit, DTLS
// records that do not parse. Such traffic is refused where it arrives
// (closed, answered with a reason); this package makes it visible, as
// wanwu_protocol_errors_total{protocol, cause}, and logs a line about it
// that is rate-limited, so that a flood of garbage cannot flood the log.
//
// One Recorder serves every protocol adapter: the hub makes it once and
// hands it to each (the metric can be registered only once). It imports
// nothing of wanwu, so any adapter can use it without an import cycle.
//
// Nothing a client sent is logged: only the protocol, the cause, the peer's
// address and the error, whose text names what was wrong, never a payload.
package protoerr

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Recorder.
type Options struct {
	// Metrics registers wanwu_protocol_errors_total; nil: not exported.
	Metrics prometheus.Registerer
	Logger  *slog.Logger
	// LogEvery is the least time between two log lines for one protocol
	// and cause (default 10 s); the line counts what it stood for.
	LogEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Recorder counts protocol errors and logs them, rate-limited. Its methods
// are safe for concurrent use; a nil *Recorder records nothing.
type Recorder struct {
	count *prometheus.CounterVec
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	last map[key]*logState
}

type key struct{ protocol, cause string }

type logState struct {
	at         time.Time
	suppressed int
}

// New makes a Recorder and registers its metric.
func New(o Options) (*Recorder, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LogEvery <= 0 {
		o.LogEvery = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Recorder{
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wanwu_protocol_errors_total",
			Help: "Malformed or oversized device protocol traffic, by protocol (mqtt, coap, dtls) and cause.",
		}, []string{"protocol", "cause"}),
		log: o.Logger, every: o.LogEvery, now: o.Now,
		last: map[key]*logState{},
	}
	if o.Metrics != nil {
		if err := o.Metrics.Register(r.count); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Record counts one protocol error from remote and logs it unless a line
// for the same protocol and cause was logged within LogEvery; the next line
// says how many went unlogged in between. err describes what was wrong; it
// must not carry the client's data.
func (r *Recorder) Record(protocol, cause, remote string, err error) {
	if r == nil {
		return
	}
	r.count.WithLabelValues(protocol, cause).Inc()
	now := r.now()
	r.mu.Lock()
	st, ok := r.last[key{protocol, cause}]
	if !ok {
		st = &logState{}
		r.last[key{protocol, cause}] = st
	}
	if ok && now.Sub(st.at) < r.every {
		st.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	r.mu.Unlock()
	r.log.Warn("malformed protocol traffic refused", "protocol", protocol, "cause", cause, "remote", remote, "err", err,
		"unlogged_since_last", suppressed)
}
