package console

import (
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/forward"
)

// TestEdgeRowFrom: an edge's link is up while it spoke within 15 s, and
// its backlog rows carry the hub's marks.
func TestEdgeRowFrom(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	link := edgeLink{Code: "acme:edge-1", Tenant: "acme", BytesUp: 3 << 20, Marks: map[string]uint64{"alarm": 7, "telemetry": 42},
		Status: edgeStatus{DevicesOnline: 3, Backlog: []forward.Backlog{
			{Class: "alarm", Records: 2, Messages: 1, Bytes: 512, OldestS: 75.4, Quota: 1 << 30},
			{Class: "telemetry", Records: 10, Messages: 2, Bytes: 4096, Quota: 8 << 30, Full: true},
		}}}
	for _, tc := range []struct {
		name  string
		ago   time.Duration
		up    bool
		quiet string
	}{
		{"just heard", 2 * time.Second, true, ""},
		{"three heartbeats", 15 * time.Second, true, ""},
		{"quiet", 20*time.Second + 300*time.Millisecond, false, "20s"},
		{"away for hours", 3*time.Hour + 4*time.Minute + 5*time.Second, false, "3h4m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link.SeenAt = now.Add(-tc.ago)
			e := edgeRowFrom(link, now)
			if e.Up != tc.up || e.Quiet != tc.quiet {
				t.Errorf("up %v quiet %q, want %v %q", e.Up, e.Quiet, tc.up, tc.quiet)
			}
			if !e.Linked || e.Online != 3 || e.Waiting != 12 || e.BytesUp != "3.0 MiB" || len(e.Backlog) != 2 {
				t.Errorf("row: %+v", e)
			}
			if b := e.Backlog[0]; b.Mark != 7 || b.Oldest != "1m15s" || b.Bytes != "512 B" || b.Quota != "1.0 GiB" || b.Full {
				t.Errorf("alarm: %+v", b)
			}
			if b := e.Backlog[1]; b.Mark != 42 || b.Oldest != "–" || !b.Full || b.Bytes != "4.0 KiB" {
				t.Errorf("telemetry: %+v", b)
			}
		})
	}
}

func TestByteText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := byteText(n); got != want {
			t.Errorf("byteText(%d) = %q, want %q", n, got, want)
		}
	}
}
