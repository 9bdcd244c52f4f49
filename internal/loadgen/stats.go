package loadgen

import (
	"slices"
	"sync"
	"time"
)

// Percentiles summarises a set of durations. Quantiles use the nearest-rank
// method on the sorted samples: the q-quantile of n samples is the
// ceil(q·n)-th smallest, so p99.9 of 1,000 samples is the largest but one
// and of 100 samples the largest.
type Percentiles struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize sorts d in place and returns its percentiles.
func Summarize(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	var sum float64
	for _, v := range d {
		sum += float64(v)
	}
	return Percentiles{
		N:    len(d),
		Min:  d[0],
		P50:  Quantile(d, 0.50),
		P99:  Quantile(d, 0.99),
		P999: Quantile(d, 0.999),
		Max:  d[len(d)-1],
		Mean: time.Duration(sum / float64(len(d))),
	}
}

// Quantile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted samples.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// ceil(q*n) computed in integers where possible: floating point makes
	// 0.999*1000 = 998.9999999999999.
	rank := int(q*float64(n) + 1 - 1e-9)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	return sorted[rank-1]
}

// seqState is what the tracker knows of one (client, seq) pair.
type seqState struct {
	sent  int64  // send time, ns since the tracker's epoch, +1 (0 = not sent)
	acked bool   // the broker acknowledged it
	recv  uint32 // receipts by the subscriber
}

// clientTrack holds one client's pairs, indexed by seq.
type clientTrack struct {
	mu     sync.Mutex
	seqs   []seqState
	lastMs int64 // last payload timestamp handed out, unix ms
}

// tracker counts (client, seq) pairs: what was sent and acknowledged, what
// the subscriber received and how often, and the latencies.
type tracker struct {
	epoch   time.Time
	clients []clientTrack

	mu      sync.Mutex
	deliver []time.Duration // publish→delivery, appended by the subscriber
	foreign int64           // receipts that match no sent pair
	lastRx  time.Time       // last receipt of a known pair
}

func newTracker(clients, perClient int) *tracker {
	t := &tracker{epoch: time.Now(), clients: make([]clientTrack, clients)}
	if perClient > 0 {
		for i := range t.clients {
			t.clients[i].seqs = make([]seqState, 0, perClient)
		}
	}
	return t
}

// next records the send of client c's next message and returns its seq and
// its payload timestamp in unix milliseconds, strictly increasing per client.
func (t *tracker) next(c int, now time.Time) (seq int, tsMs int64) {
	ct := &t.clients[c]
	ct.mu.Lock()
	defer ct.mu.Unlock()
	seq = len(ct.seqs)
	ct.seqs = append(ct.seqs, seqState{sent: int64(now.Sub(t.epoch)) + 1})
	tsMs = now.UnixMilli()
	if tsMs <= ct.lastMs {
		tsMs = ct.lastMs + 1
	}
	ct.lastMs = tsMs
	return seq, tsMs
}

// ack records the acknowledgement of (c, seq).
func (t *tracker) ack(c, seq int) {
	ct := &t.clients[c]
	ct.mu.Lock()
	ct.seqs[seq].acked = true
	ct.mu.Unlock()
}

// received records a receipt of (c, seq) at now (zero: found in a store,
// no latency). It reports false for a pair that was never sent (a message
// from someone else, or a malformed one).
func (t *tracker) received(c, seq int, now time.Time) bool {
	if c < 0 || c >= len(t.clients) || seq < 0 {
		t.mu.Lock()
		t.foreign++
		t.mu.Unlock()
		return false
	}
	ct := &t.clients[c]
	ct.mu.Lock()
	if seq >= len(ct.seqs) || ct.seqs[seq].sent == 0 {
		ct.mu.Unlock()
		t.mu.Lock()
		t.foreign++
		t.mu.Unlock()
		return false
	}
	s := &ct.seqs[seq]
	s.recv++
	first := s.recv == 1
	sent := s.sent - 1
	ct.mu.Unlock()
	if now.IsZero() {
		return true // read back from a store: no receipt time
	}
	t.mu.Lock()
	if first {
		t.deliver = append(t.deliver, now.Sub(t.epoch)-time.Duration(sent))
	}
	t.lastRx = now
	t.mu.Unlock()
	return true
}

// lastReceipt returns when a known pair was last received.
func (t *tracker) lastReceipt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastRx
}

// Tally is the (client, seq) accounting of a run.
type Tally struct {
	Sent, Acked      int64
	Delivered        int64 // distinct pairs received at least once
	Lost             int64 // acknowledged, never received
	Duplicates       int64 // receipts beyond the first
	DeliveredUnacked int64 // received although not acknowledged
	Foreign          int64 // receipts of pairs never sent
}

func (t *tracker) tally() Tally {
	var r Tally
	for i := range t.clients {
		ct := &t.clients[i]
		ct.mu.Lock()
		for _, s := range ct.seqs {
			r.Sent++
			if s.acked {
				r.Acked++
			}
			switch {
			case s.recv > 0:
				r.Delivered++
				r.Duplicates += int64(s.recv - 1)
				if !s.acked {
					r.DeliveredUnacked++
				}
			case s.acked:
				r.Lost++
			}
		}
		ct.mu.Unlock()
	}
	t.mu.Lock()
	r.Foreign = t.foreign
	t.mu.Unlock()
	return r
}

// pending is how many acknowledged pairs have not been received yet.
func (t *tracker) pending() int64 {
	tl := t.tally()
	return tl.Lost
}
