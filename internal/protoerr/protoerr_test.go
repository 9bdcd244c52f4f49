package protoerr

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRecord(t *testing.T) {
	var logs bytes.Buffer
	now := time.Unix(1000, 0)
	reg := prometheus.NewRegistry()
	r, err := New(Options{Metrics: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), LogEvery: 10 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance         time.Duration
		protocol, cause string
		logged          bool
	}{
		{0, "mqtt", "malformed", true},
		{time.Second, "mqtt", "malformed", false},
		{time.Second, "mqtt", "malformed", false},
		{0, "mqtt", "packet_too_large", true}, // another cause has its own budget
		{0, "dtls", "malformed", true},        // and another protocol
		{9 * time.Second, "mqtt", "malformed", true},
	} {
		now = now.Add(step.advance)
		before := logs.Len()
		r.Record(step.protocol, step.cause, "192.0.2.1:1234", errors.New("bad flags"))
		if got := logs.Len() > before; got != step.logged {
			t.Errorf("%s/%s at %v: logged %v, want %v", step.protocol, step.cause, now.Unix(), got, step.logged)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `msg="malformed protocol traffic refused"`) || !strings.Contains(last, "unlogged_since_last=2") {
		t.Errorf("last line %q: want the message and the 2 unlogged errors", last)
	}
	if got := testutil.ToFloat64(r.count.WithLabelValues("mqtt", "malformed")); got != 4 {
		t.Errorf("mqtt malformed counted %v, want 4", got)
	}
	var nilRecorder *Recorder
	nilRecorder.Record("mqtt", "malformed", "", nil) // no panic
}
