// Package feature owns windowed features: the perception step of wanwu's
// closed loops. It computes one function (mean, min, max, sum, count,
// last, stddev, rms, peak, crest, kurtosis, rate) over a window of the
// samples of one object's signal, and the energy of frequency bands of a
// raw vibration window (BandEnergy, DecodeRawWindow). It is pure
// computation: no I/O, no clocks (times are milliseconds since the epoch,
// given by the caller), no locking (one State per object and feature,
// used from one goroutine).
//
// # Windows
//
// A window is sliding or tumbling, and a time window (Duration) or a count
// window (Count):
//
//   - sliding time: Value(now) is over the samples in (now−Duration, now];
//   - sliding count: Value is over the last Count samples taken;
//   - tumbling time: windows are [k·Duration, (k+1)·Duration) for integer
//     k (aligned to the epoch); a window closes when a sample at or after
//     its end is taken, or when Value is asked at now ≥ end + Lateness, and
//     Value gives the value of the latest closed window (windows with no
//     samples close too, and give none);
//   - tumbling count: a window closes at every Count-th sample taken, and
//     Value gives the value of the latest closed window.
//
// A time window holds at most MaxSamples (65536) samples: taking one more
// drops the oldest and counts it (State.Dropped).
//
// # Late and out-of-order samples
//
// Samples are placed by their own timestamp. For time windows, a sample
// older than (newest time seen − Lateness) is refused as "late" and
// counted; within Lateness it is inserted in time order; for a tumbling
// window a sample for an already closed window is late. A sample with the
// same timestamp as a held one replaces it ("duplicate", ok=true). Count
// windows order by arrival but refuse a sample older than the newest minus
// Lateness the same way. Lateness default 0 means strictly: anything older
// than the newest is late.
//
// Only held samples are replaced: a sample at the time of one that has
// left the window (a sliding window moved past it, its tumbling count
// window closed) is a new sample. A sample whose value is NaN or infinite
// is refused ("not finite") and not counted as late.
//
// # Functions
//
// Over the n samples x₁…xₙ of the window, with mean m:
//
//	mean      Σx/n
//	min, max  the smallest, largest x
//	sum       Σx
//	count     n
//	last      the x of the newest timestamp
//	stddev    population standard deviation √(Σ(x−m)²/n)
//	rms       √(Σx²/n)
//	peak      max |x|
//	crest     peak/rms
//	kurtosis  plain (not excess) population kurtosis m₄/m₂², where
//	          mₖ = Σ(x−m)ᵏ/n: 1.5 for a sine, 1.8 for a uniform, 3 for a
//	          Gaussian; impulsive signals (bearing damage) score high
//	rate      least-squares slope of x against time, per second: robust
//	          to jitter in the sample times, unlike (last−first)/Δt
//
// Value's ok is false when there is nothing to compute from: an empty
// window (for every function, count and sum too), fewer than 2 samples for
// rate, fewer than 4 or all equal for kurtosis, rms 0 for crest; and for a
// tumbling window until one closed.
//
// # Cost
//
// A State holds its samples in a ring buffer that grows by doubling up to
// the window's bound. Add is O(1) amortised for in-order samples (an
// out-of-order one is inserted by shifting the newer ones); Value
// recomputes over the held samples, O(n). Spec.MaxSamples tells an engine
// what a window can hold at a given sample interval, and State.Bytes what
// it holds.
package feature
