package ratelimit

import (
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	now := time.Unix(1000, 0)
	k := New[string](1, 2)
	for i, want := range []bool{true, true, false} {
		if got := k.Allow("a", now); got != want {
			t.Errorf("attempt %d: %v, want %v", i, got, want)
		}
	}
	if !k.Allow("b", now) {
		t.Error("another key shares the first key's bucket")
	}
	if !k.Allow("a", now.Add(time.Second)) {
		t.Error("bucket did not refill")
	}
	k.Sweep(time.Minute, now.Add(2*time.Minute))
	if k.Len() != 0 {
		t.Errorf("sweep left %d keys", k.Len())
	}
}

func TestBlocked(t *testing.T) {
	now := time.Unix(1000, 0)
	k := New[string](1, 2)
	for i, step := range []struct {
		at      time.Duration
		charge  bool
		blocked bool
	}{
		{0, false, false}, // unknown: not blocked
		{0, true, false},
		{0, true, true},
		{500 * time.Millisecond, false, true},
		{time.Second, false, false}, // refilled
	} {
		at := now.Add(step.at)
		if step.charge {
			k.Allow("a", at)
		}
		if got := k.Blocked("a", at); got != step.blocked {
			t.Errorf("step %d: blocked %v, want %v", i, got, step.blocked)
		}
	}
	if k.Blocked("b", now); k.Len() != 1 {
		t.Errorf("Blocked started tracking a key: %d keys", k.Len())
	}
}
