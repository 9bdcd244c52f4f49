package coap

import (
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
)

// tokenCache remembers device tokens the plain-UDP listener verified, so
// that a device sending many requests with one token costs one signature
// check and registry lookup, not one per request: those were most of the
// endpoint's CPU. Holding the same token is what verifying it proved, and
// nothing is kept past the token's own expiry or tokenCacheTTL, whichever
// is first. DisconnectDevice (revocation, quarantine, key changes) forgets
// a device's tokens at once, so admission changes take effect as they do
// for DTLS sessions.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]cachedToken
	max     int
	// gen counts dropDevice calls: a verification that started before one
	// (and may have read the old admission) is not cached.
	gen uint64
}

type cachedToken struct {
	dev   *device
	until time.Time
}

// tokenCacheTTL bounds how long a verified token is trusted without a new
// check (model changes reach a device's requests within it).
const tokenCacheTTL = time.Minute

func newTokenCache(max int) *tokenCache {
	return &tokenCache{entries: map[string]cachedToken{}, max: max}
}

func (c *tokenCache) get(token []byte, now time.Time) *device {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[string(token)] // no copy for a lookup
	if !ok {
		return nil
	}
	if !now.Before(e.until) {
		delete(c.entries, string(token))
		return nil
	}
	return e.dev
}

// generation is what put needs to know that no device was dropped while
// the token was being verified; take it before verifying.
func (c *tokenCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *tokenCache) put(token string, dev *device, now time.Time, gen uint64) {
	until := now.Add(tokenCacheTTL)
	if exp, err := devtoken.Expiry(token); err != nil {
		return
	} else if exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= c.max {
		// Full: drop what expired; if that is not enough, start over (the
		// cache only saves work, it never decides admission).
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[token] = cachedToken{dev: dev, until: until}
}

// dropDevice forgets every token of a device.
func (c *tokenCache) dropDevice(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		if e.dev.code == code {
			delete(c.entries, k)
		}
	}
}
