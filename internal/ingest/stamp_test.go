package ingest

import (
	"fmt"
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
	a.next("acme:c", late)
	if s := a.next("acme:c", late.Add(time.Millisecond)); s != late.UnixMilli()+1 {
		t.Errorf("next second: %d", s)
	}
	// Two seconds on, a shard forgets what it held: the device's entry is
	// gone from every generation once its shard is used again.
	a.next("acme:a", t0.Add(3*time.Second))
	a.next("acme:a", t0.Add(5*time.Second))
	for i := range a.shards {
		sh := &a.shards[i]
		if _, ok := sh.prev["acme:a"]; ok {
			t.Errorf("a stamp from 2 s before is still kept")
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
