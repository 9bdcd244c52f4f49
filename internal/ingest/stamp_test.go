package ingest

import (
	"fmt"
	"hash/maphash"
	"testing"
	"time"
)

// TestArrivalStampsStrictlyIncreasePerDevice: messages of one device in the
// same millisecond get distinct, increasing stamps; other devices are not
// moved; a stamp catches up with the clock; memory is dropped after two
// seconds.
func TestArrivalStampsStrictlyIncreasePerDevice(t *testing.T) {
	a := newArrivalStamps()
	t0 := time.UnixMilli(1_767_225_600_000)
	var got []int64
	for range 3 {
		got = append(got, a.next("acme:a", t0))
	}
	if fmt.Sprint(got) != "[1767225600000 1767225600001 1767225600002]" {
		t.Errorf("same millisecond: %v", got)
	}
	if s := a.next("acme:b", t0); s != t0.UnixMilli() {
		t.Errorf("another device moved to %d", s)
	}
	if s := a.next("acme:a", t0.Add(time.Millisecond)); s != t0.UnixMilli()+3 {
		t.Errorf("clock behind the last stamp: %d, want last+1", s)
	}
	if s := a.next("acme:a", t0.Add(10*time.Millisecond)); s != t0.UnixMilli()+10 {
		t.Errorf("clock ahead again: %d, want the clock", s)
	}
	// Across a second boundary the previous generation still counts.
	late := time.UnixMilli(1_767_225_600_999)
	for range 3 { // stamped .999, .000 and .001 of the next second
		a.next("acme:c", late)
	}
	if s := a.next("acme:c", late.Add(time.Millisecond)); s != late.UnixMilli()+3 {
		t.Errorf("next second: %d, want %d", s, late.UnixMilli()+3)
	}
	// Two seconds on, a shard forgets what it held: the device's entry is
	// gone from every generation once its shard is used again.
	a.next("acme:a", t0.Add(3*time.Second))
	a.next("acme:a", t0.Add(5*time.Second))
	h := maphash.String(a.seed, "acme:a")
	for i := range a.shards {
		sh := &a.shards[i]
		if _, ok := sh.prev[h]; ok {
			t.Errorf("a stamp from 2 s before is still kept")
		}
		if v, ok := sh.cur[h]; ok && v != t0.Add(5*time.Second).UnixMilli() {
			t.Errorf("current stamp %d, want the clock's", v)
		}
	}
}

// TestTelemetryBurstKeepsEveryValue: messages without times from one device
// in one millisecond are stamped apart, so the store keeps every value.
func TestTelemetryBurstKeepsEveryValue(t *testing.T) {
	d := newTestDecoder(Options{})
	dev := devices(t)["pump"]
	seen := map[int64]bool{}
	for i := range 5 {
		msg, rej := d.Telemetry(dev, ContentJSON, []byte(fmt.Sprintf(`{"level": %d}`, i)), "mqtt")
		if rej != nil {
			t.Fatal(rej)
		}
		if seen[msg.Records[0].Time] || msg.Received != msg.Records[0].Time {
			t.Fatalf("message %d stamped %d (received %d), seen before: %v", i, msg.Records[0].Time, msg.Received, seen[msg.Records[0].Time])
		}
		seen[msg.Records[0].Time] = true
	}
}

// BenchmarkArrivalStamps: 1,000 devices, each sending in turn, over a
// clock that moves 1 ms per 1,000 messages (about the hub's rate).
func BenchmarkArrivalStamps(b *testing.B) {
	a := newArrivalStamps()
	codes := make([]string, 1000)
	for i := range codes {
		codes[i] = fmt.Sprintf("bench:dev-%d", i)
	}
	t0 := time.UnixMilli(1_767_225_600_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a.next(codes[i%len(codes)], t0.Add(time.Duration(i/1000)*time.Millisecond))
		i++
	}
}
