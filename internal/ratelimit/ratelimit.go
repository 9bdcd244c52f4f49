// Package ratelimit holds token-bucket limiters per key (a device code, a
// source address) for the protocol adapters, with a bounded number of keys so
// that a flood of distinct keys cannot exhaust memory.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxKeys bounds the keys tracked at once; beyond it new keys are refused
// until idle ones are swept, which is what a flood of distinct keys deserves.
const MaxKeys = 200_000

// Idle is how long an unused key is remembered.
const Idle = 10 * time.Minute

// Keyed hands out one limiter per key and forgets idle ones as it goes, so it
// needs no goroutine of its own. K is whatever names the key without work
// per call: a device code, or a netip.Addr rather than its string.
type Keyed[K comparable] struct {
	mu        sync.Mutex
	limit     rate.Limit
	burst     int
	m         map[K]*entry
	lastSweep time.Time
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns limiters allowing limit events per second with burst.
func New[K comparable](limit rate.Limit, burst int) *Keyed[K] {
	return &Keyed[K]{limit: limit, burst: burst, m: map[K]*entry{}}
}

// Allow reports whether key may act at now.
func (k *Keyed[K]) Allow(key K, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.lastSweep) > time.Minute {
		k.sweepLocked(Idle, now)
	}
	e, ok := k.m[key]
	if !ok {
		if len(k.m) >= MaxKeys {
			return false
		}
		e = &entry{lim: rate.NewLimiter(k.limit, k.burst)}
		k.m[key] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}

// Blocked reports whether key has no event left at now, without spending
// one. A key not tracked is not blocked, and Blocked does not start tracking
// it: a check that precedes the work whose failure Allow charges (a failed
// authentication, charged to its source address) cannot be made to refuse
// the innocent by a flood of distinct keys filling the table.
func (k *Keyed[K]) Blocked(key K, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[key]
	return ok && e.lim.TokensAt(now) < 1
}

// Sweep forgets keys idle for longer than idle.
func (k *Keyed[K]) Sweep(idle time.Duration, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sweepLocked(idle, now)
}

func (k *Keyed[K]) sweepLocked(idle time.Duration, now time.Time) {
	k.lastSweep = now
	for key, e := range k.m {
		if now.Sub(e.seen) > idle {
			delete(k.m, key)
		}
	}
}

// Len is the number of keys tracked.
func (k *Keyed[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
