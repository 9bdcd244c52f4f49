package ingest

import "testing"

// TestReleasedRecordsServeTheNextMessage: records handed back are cleared
// (they pin no strings of the old message) and a message decoded after
// them has its own values, whether or not the pool handed the slice over.
func TestReleasedRecordsServeTheNextMessage(t *testing.T) {
	d := newTestDecoder(Options{})
	dev := devices(t)["none"]
	first, rej := d.Telemetry(dev, ContentSenMLJSON, []byte(`[{"bn":"acme:raw-1/","n":"a","v":1},{"n":"b","vs":"x"}]`), "mqtt")
	if rej != nil {
		t.Fatal(rej)
	}
	old := first.Records
	ReleaseRecords(old)
	for i, r := range old[:cap(old)] {
		if r.Property != "" || r.String != "" || r.Data != nil || r.Float != 0 || r.Time != 0 {
			t.Fatalf("released record %d still holds %+v", i, r)
		}
	}
	for range 3 {
		next, rej := d.Telemetry(dev, ContentSenMLJSON, []byte(`[{"bn":"acme:raw-1/","n":"c","v":2},{"n":"d","v":3}]`), "mqtt")
		if rej != nil {
			t.Fatal(rej)
		}
		if len(next.Records) != 2 || next.Records[0].Property != "c" || next.Records[0].Float != 2 ||
			next.Records[1].Property != "d" || next.Records[1].Float != 3 {
			t.Fatalf("next message: %+v", next.Records)
		}
		ReleaseRecords(next.Records)
	}
	ReleaseRecords(nil) // nothing to hand back
}
