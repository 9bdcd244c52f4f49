package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"

	"github.com/wanwu-iot/wanwu/internal/auth"
)

// session is one signed-in browser. The token's secret is kept here, in
// memory only, so that every request authenticates it again: a revoked
// token ends its sessions at once.
type session struct {
	secret    string
	principal auth.Principal
	csrf      string
	created   time.Time
	expires   time.Time
}

// sessions holds the live sessions by the SHA-256 of their id, so that the
// map's keys are not the cookies themselves. It is bounded: at max, the
// session closest to its end makes room for a new one.
type sessions struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]*session
}

func newSessions(max int) *sessions {
	return &sessions{max: max, m: map[[32]byte]*session{}}
}

// randomID returns 32 random bytes, base64url: a session id or a CSRF token.
func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics on a broken system source)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// add stores s and returns its id.
func (ss *sessions) add(s *session, now time.Time) string {
	id := randomID()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.max {
		ss.sweepLocked(now)
	}
	for len(ss.m) >= ss.max {
		var oldest [32]byte
		var first *session
		for k, v := range ss.m {
			if first == nil || v.expires.Before(first.expires) {
				oldest, first = k, v
			}
		}
		delete(ss.m, oldest)
	}
	ss.m[sessionKey(id)] = s
	return id
}

// get returns the session of id unless it has expired (an expired one is
// removed).
func (ss *sessions) get(id string, now time.Time) *session {
	if id == "" {
		return nil
	}
	k := sessionKey(id)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[k]
	if s == nil {
		return nil
	}
	if !now.Before(s.expires) {
		delete(ss.m, k)
		return nil
	}
	return s
}

// remove ends the session of id, if any.
func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.m, sessionKey(id))
	ss.mu.Unlock()
}

// sweep removes the expired sessions and returns how many remain.
func (ss *sessions) sweep(now time.Time) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweepLocked(now)
	return len(ss.m)
}

func (ss *sessions) sweepLocked(now time.Time) {
	for k, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, k)
		}
	}
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}
