package coap

import (
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/devtoken"
	"github.com/wanwu-iot/wanwu/internal/keys"
)

func TestTokenCache(t *testing.T) {
	k, err := keys.Generate(keys.P256)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	long, _ := devtoken.Sign(k, "acme:a", now, time.Hour)
	short, _ := devtoken.Sign(k, "acme:a", now, 10*time.Second)
	other, _ := devtoken.Sign(k, "acme:b", now, time.Hour)
	c := newTokenCache(3)
	devA, devB := &device{code: "acme:a"}, &device{code: "acme:b"}
	c.put(long, devA, now, 0)
	c.put(short, devA, now, 0)
	c.put(other, devB, now, 0)
	c.put("not a token", devA, now, 0) // never kept: its expiry is unknown
	for _, tt := range []struct {
		name  string
		token string
		at    time.Time
		want  *device
	}{
		{"verified token", long, now.Add(time.Second), devA},
		{"other device", other, now.Add(time.Second), devB},
		{"unknown token", "x", now, nil},
		{"unparsable token not kept", "not a token", now, nil},
		{"past the token's expiry", short, now.Add(11 * time.Second), nil},
		{"past the cache TTL", long, now.Add(tokenCacheTTL + time.Second), nil},
	} {
		if got := c.get([]byte(tt.token), tt.at); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	c.put(long, devA, now, c.generation())
	gen := c.generation()
	c.dropDevice("acme:a")
	if c.get([]byte(long), now) != nil || c.get([]byte(other), now) != devB {
		t.Error("dropDevice did not forget exactly the device's tokens")
	}
	// A verification that began before the drop is not cached after it.
	c.put(long, devA, now, gen)
	if c.get([]byte(long), now) != nil {
		t.Error("a token verified across a dropDevice was cached")
	}
	// Full: a new entry still goes in.
	for i := range 5 {
		tok, _ := devtoken.Sign(k, "acme:a", now.Add(time.Duration(i)*time.Second), time.Hour)
		c.put(tok, devA, now, c.generation())
		if c.get([]byte(tok), now) != devA {
			t.Fatalf("entry %d not kept when full", i)
		}
	}
	if len(c.entries) > 3 {
		t.Errorf("%d entries, bound 3", len(c.entries))
	}
}
