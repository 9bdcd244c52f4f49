// Package detect owns the streaming detectors and anti-chatter filters of
// wanwu's closed loops and alarms: the decision step's numeric side, next
// to the CEL conditions that the loop engine evaluates.
//
//   - EWMA scores each sample against an exponentially weighted mean and
//     standard deviation (a z-score), for sudden deviations.
//   - CUSUM is Page's two-sided tabular cumulative sum, for small
//     persistent shifts of the mean that a z-score misses.
//   - Hysteresis is a deadband on a numeric signal: on past one limit, off
//     only past another, so noise around one threshold does not chatter.
//   - Delay debounces a boolean condition in time (on-delay and off-delay,
//     as ISA-18.2 recommends for alarms): a state changes only after the
//     condition has held for its delay, so it never changes more often
//     than once per the shorter of the two delays.
//
// Everything is pure computation on values and caller-given times
// (milliseconds since the epoch): no I/O, no clocks, no locking; a
// detector belongs to one goroutine. The zero value of each type is
// usable once its parameters are set; Validate says what is wrong with
// them. Non-finite samples (NaN, ±Inf) are ignored by EWMA and CUSUM, so
// that one bad reading does not poison their state; Hysteresis keeps its
// state on NaN.
package detect
