package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it needs
// sysconf(3), which needs cgo.
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and resident memory.
type ProcSample struct {
	CPU time.Duration // utime + stime
	RSS int64         // VmRSS in bytes
}

// SampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func SampleProc(pid int) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("loadgen: target process: %w", err)
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("loadgen: /proc/%d/stat: %w", pid, err)
	}
	s.CPU = cpu
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("loadgen: target process: %w", err)
	}
	if s.RSS, err = parseStatusRSS(status); err != nil {
		return s, fmt.Errorf("loadgen: /proc/%d/status: %w", pid, err)
	}
	return s, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a stat line. The
// command name (field 2) may contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command field")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func parseStatusRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line (a zombie?)")
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procWatch samples a target every 250 ms and keeps the peak RSS.
type procWatch struct {
	pid  int
	stop chan struct{}
	done sync.WaitGroup
	mu   sync.Mutex
	peak int64
}

func watchProc(pid int) *procWatch {
	w := &procWatch{pid: pid, stop: make(chan struct{})}
	if pid == 0 {
		return w
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *procWatch) sample() {
	s, err := SampleProc(w.pid)
	if err != nil {
		return
	}
	w.mu.Lock()
	if s.RSS > w.peak {
		w.peak = s.RSS
	}
	w.mu.Unlock()
}

// close stops sampling and returns the peak RSS seen.
func (w *procWatch) close() int64 {
	close(w.stop)
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// schedDelays is a reading of the Go scheduler's histogram of how long
// goroutines of this process waited to run once they could. A latency the
// generator measures includes that wait: when its tail is long, the figure
// describes the generator as much as the target.
type schedDelays struct {
	counts  []uint64
	buckets []float64 // seconds; len(counts)+1 boundaries
}

const schedLatencies = "/sched/latencies:seconds"

func readSchedDelays() schedDelays {
	s := []metrics.Sample{{Name: schedLatencies}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return schedDelays{}
	}
	h := s[0].Value.Float64Histogram()
	return schedDelays{counts: append([]uint64(nil), h.Counts...), buckets: h.Buckets}
}

// quantileSince returns the q-quantile of the waits since the earlier
// reading, as the upper bound of its histogram bucket (the lower bound for
// the last, unbounded one; 0 with no waits).
func (s schedDelays) quantileSince(prev schedDelays, q float64) time.Duration {
	if len(prev.counts) != len(s.counts) {
		prev.counts = make([]uint64, len(s.counts))
	}
	var n uint64
	for i, c := range s.counts {
		n += c - prev.counts[i]
	}
	if n == 0 {
		return 0
	}
	need := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range s.counts {
		seen += c - prev.counts[i]
		if seen >= need {
			bound := s.buckets[i+1]
			if math.IsInf(bound, 1) { // the last bucket: at least its lower bound
				bound = s.buckets[i]
			}
			return time.Duration(bound * float64(time.Second))
		}
	}
	return 0
}
