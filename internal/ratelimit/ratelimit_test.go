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
