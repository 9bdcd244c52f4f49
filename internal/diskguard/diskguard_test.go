package diskguard

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeFS is a filesystem whose free space the test sets.
type fakeFS struct {
	mu   sync.Mutex
	free uint64
	err  error
}

func (f *fakeFS) set(free uint64) {
	f.mu.Lock()
	f.free = free
	f.mu.Unlock()
}

func (f *fakeFS) statfs(string) (uint64, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.free, 1 << 30, f.err
}

func TestThresholdAndStores(t *testing.T) {
	const mib = 1 << 20
	enospc := fmt.Errorf("write: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC})
	// A step measures free bytes (or, with report set, has store "jetstream"
	// report the error instead) and then checks Admit.
	type step struct {
		free   uint64
		report error
		admit  bool
		says   string // part of the refusal
	}
	cases := []struct {
		name    string
		minFree uint64
		steps   []step
	}{
		{"threshold refuses below it and admits again above it", 64 * mib, []step{
			{free: 100 * mib, admit: true},
			{free: 63 * mib, says: "63.0 MiB free, below its threshold of 64.0 MiB"},
			{free: 64 * mib, admit: true},
		}},
		{"a store's full disk refuses until space returns", 64 * mib, []step{
			{free: 100 * mib, admit: true},
			{report: enospc, says: "disk is full"},
			{free: 10 * mib, says: "below its threshold"},
			{free: 65 * mib, admit: true},
		}},
		{"threshold off: a full disk still refuses, 1 MiB free admits", 0, []step{
			{free: 0, admit: true},
			{report: errors.New("nats: no space left on device"), says: "disk is full"},
			{free: mib / 2, says: "disk is full"},
			{free: 2 * mib, admit: true},
		}},
		{"other errors are not a full disk", 64 * mib, []step{
			{free: 100 * mib, admit: true},
			{report: errors.New("permission denied"), admit: true},
			{report: errors.New("database or disk is full (13)"), says: "disk is full"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ffs := &fakeFS{free: 1 << 30}
			g, err := New(Options{Dir: "/data", MinFree: tc.minFree, Statfs: ffs.statfs, Metrics: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.steps {
				if s.report != nil {
					g.Report("jetstream", s.report)
				} else {
					ffs.set(s.free)
					g.measure()
				}
				err := g.Admit()
				if (err == nil) != s.admit {
					t.Fatalf("step %d: Admit() = %v, want admitted %v", i, err, s.admit)
				}
				if err != nil && (!errors.Is(err, ErrFull) || !strings.Contains(err.Error(), s.says)) {
					t.Fatalf("step %d: Admit() = %v, want ErrFull saying %q", i, err, s.says)
				}
				if low := testutil.ToFloat64(g.lowGauge); (low == 0) != s.admit {
					t.Fatalf("step %d: wanwu_disk_low = %v", i, low)
				}
			}
		})
	}
}

// TestReportWakesTheWatcher: a store's report is followed by a measure at
// once, so space that returned is seen without waiting a whole interval.
func TestReportWakesTheWatcher(t *testing.T) {
	ffs := &fakeFS{free: 1 << 30}
	g, err := New(Options{Dir: "/data", MinFree: 1 << 20, Interval: time.Hour, Statfs: ffs.statfs})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	defer g.Shutdown()
	g.Report("tsdb", syscall.ENOSPC)
	deadline := time.Now().Add(5 * time.Second)
	for g.Admit() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the guard did not measure after the report")
		}
		time.Sleep(time.Millisecond)
	}
	g.Shutdown() // idempotent
}

func TestStatfsMeasuresThisFilesystem(t *testing.T) {
	free, total, err := statfs(t.TempDir())
	if err != nil {
		t.Skipf("statfs: %v", err)
	}
	if total == 0 || free > total {
		t.Fatalf("free %d of %d", free, total)
	}
}
