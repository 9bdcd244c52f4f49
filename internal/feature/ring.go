package feature

import "sort"

// sample is one value at its time, milliseconds since the epoch.
type sample struct {
	t int64
	v float64
}

// ring is a double-ended queue of samples in a power-of-two buffer that
// grows by doubling up to a bound: pushing at the back and popping at the
// front are O(1); inserting in the middle shifts the samples after it.
type ring struct {
	buf   []sample
	head  int // index in buf of the first sample
	n     int // samples held
	bound int // the most samples the ring is asked to hold
}

func newRing(bound int) ring {
	return ring{bound: bound}
}

// at returns the i-th sample, 0 being the front.
func (r *ring) at(i int) *sample {
	return &r.buf[(r.head+i)&(len(r.buf)-1)]
}

func (r *ring) front() *sample { return r.at(0) }
func (r *ring) back() *sample  { return r.at(r.n - 1) }

// grow makes room for one more sample.
func (r *ring) grow() {
	if r.n < len(r.buf) {
		return
	}
	size := max(8, 2*len(r.buf))
	if limit := nextPow2(r.bound); size > limit {
		size = limit
	}
	if size <= len(r.buf) { // only when the caller pushes past its bound
		size = 2 * len(r.buf)
	}
	buf := make([]sample, size)
	for i := range r.n {
		buf[i] = *r.at(i)
	}
	r.buf, r.head = buf, 0
}

func (r *ring) push(s sample) {
	r.grow()
	r.n++
	*r.at(r.n - 1) = s
}

func (r *ring) popFront() {
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
}

// insert puts s at position i (0 ≤ i ≤ n), moving the samples from i on
// one place back.
func (r *ring) insert(i int, s sample) {
	r.grow()
	r.n++
	for j := r.n - 1; j > i; j-- {
		*r.at(j) = *r.at(j - 1)
	}
	*r.at(i) = s
}

func (r *ring) clear() {
	r.head, r.n = 0, 0
}

// search returns the first position whose time is ≥ t, for a ring in
// time order.
func (r *ring) search(t int64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).t >= t })
}

// find returns the position of the sample at time t, or -1, for a ring in
// any order (newest first, since that is where duplicates are).
func (r *ring) find(t int64) int {
	for i := r.n - 1; i >= 0; i-- {
		if r.at(i).t == t {
			return i
		}
	}
	return -1
}

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
