// Package diskguard watches the free space of the filesystem that holds a
// data directory and decides when device data must be refused because the
// disk is (nearly) full.
//
// Two things trip it. A threshold: below MinFree bytes free, device data is
// refused, which keeps a reserve for the node's own state (the audit log, the
// stores' cursor, metadata written by operators) when devices filled the disk.
// And a store that met "no space left on device" reports it: device data is
// refused from then on, also when the threshold is off or another process
// filled the disk between two polls. Either way the refusal is immediate and
// names the reason, the gauges say so, and one log line says which store is
// full; once space is back the guard lets data in again by itself, within one
// poll interval, without a restart.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrFull is wrapped by the errors Admit and Ready return, and by IsNoSpace's
// callers when they report a store's failure.
var ErrFull = errors.New("storage full")

// Options configure a Guard.
type Options struct {
	// Dir is a directory on the filesystem to watch (the data directory).
	Dir string
	// MinFree is the free space, in bytes, below which device data is
	// refused; 0 turns the threshold off (stores that meet a full disk
	// still stop device data until space returns).
	MinFree uint64
	// Interval is how often free space is measured (default 1s).
	Interval time.Duration
	Logger   *slog.Logger
	// Metrics receives the guard's gauges (optional).
	Metrics prometheus.Registerer
	// Statfs measures the filesystem: free bytes available to the process,
	// and its size. Tests replace it; the default asks the kernel.
	Statfs func(dir string) (free, total uint64, err error)
}

// DefaultInterval is Options.Interval's default.
const DefaultInterval = time.Second

// minAvailable is the free space a filesystem needs, with the threshold off,
// before a store that met a full disk is trusted with data again.
const minAvailable = 1 << 20

// Guard is the running watcher. Its methods are safe for concurrent use.
type Guard struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	free   uint64
	total  uint64
	known  bool            // free was measured at least once
	low    bool            // free < MinFree
	stores map[string]bool // stores that met a full disk, until space returns
	// refusal is what Admit returns (nil while data is admitted); written
	// under mu, read without it: Admit is on every device message's path.
	refusal atomic.Pointer[error]

	freeGauge, lowGauge prometheus.Gauge
	storeGauge          *prometheus.GaugeVec

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a guard that has measured the filesystem once; Start keeps
// measuring.
func New(opts Options) (*Guard, error) {
	if opts.Dir == "" {
		return nil, errors.New("diskguard: Dir is required")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Statfs == nil {
		opts.Statfs = statfs
	}
	g := &Guard{
		opts: opts, log: opts.Logger.With("component", "diskguard"), stores: map[string]bool{},
		freeGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_disk_free_bytes", Help: "Free bytes on the filesystem of the data directory, as available to the hub.",
		}),
		lowGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wanwu_disk_low", Help: "1 while device data is refused because the data directory's filesystem is below its free-space threshold or a store met a full disk.",
		}),
		storeGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wanwu_store_full", Help: "1 while a store (jetstream, tsdb, events, metadata) is failing its writes for lack of space.",
		}, []string{"store"}),
		wake: make(chan struct{}, 1),
	}
	if opts.Metrics != nil {
		for _, c := range []prometheus.Collector{g.freeGauge, g.lowGauge, g.storeGauge} {
			if err := opts.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("diskguard: metrics: %w", err)
			}
		}
	}
	g.measure()
	return g, nil
}

// Start measures every Interval, and at once after a store reported a full
// disk, until Shutdown.
func (g *Guard) Start() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		t := time.NewTicker(g.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-g.wake:
			}
			g.measure()
		}
	}()
}

// Shutdown stops measuring and waits for the goroutine; it is idempotent.
func (g *Guard) Shutdown() {
	g.mu.Lock()
	cancel, done := g.cancel, g.done
	g.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Admit returns nil while device data may be accepted, and otherwise an
// error wrapping ErrFull whose text says why (it goes back to devices).
func (g *Guard) Admit() error {
	if p := g.refusal.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready is Admit for a readiness probe.
func (g *Guard) Ready() error { return g.Admit() }

// Free returns the free bytes last measured (0 before the first measure).
func (g *Guard) Free() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.free
}

// Available reports whether the filesystem has room again: free space at or
// above the threshold (at least 1 MiB when it is off). A store that met a
// full disk and must be reopened (JetStream) waits for it.
func (g *Guard) Available() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.availableLocked()
}

func (g *Guard) availableLocked() bool {
	return !g.known || g.free >= max(g.opts.MinFree, minAvailable)
}

// Report tells the guard that store failed a write for lack of space (when
// IsNoSpace(err)); device data is refused until the filesystem has room
// again. It returns whether err was such a failure.
func (g *Guard) Report(store string, err error) bool {
	if !IsNoSpace(err) {
		return false
	}
	g.mu.Lock()
	first := !g.stores[store]
	g.stores[store] = true
	g.storeGauge.WithLabelValues(store).Set(1)
	g.updateLocked()
	g.mu.Unlock()
	if first {
		g.log.Error("a store ran out of disk space; refusing device data until space returns", "store", store, "dir", g.opts.Dir, "err", err)
	}
	select {
	case g.wake <- struct{}{}:
	default:
	}
	return true
}

func (g *Guard) measure() {
	free, total, err := g.opts.Statfs(g.opts.Dir)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		// Unknown free space never refuses data by itself: a store that
		// meets a full disk still reports it.
		if g.known {
			g.log.Warn("measuring free disk space failed", "dir", g.opts.Dir, "err", err)
		}
		g.known = false
		g.updateLocked()
		return
	}
	g.free, g.total, g.known = free, total, true
	g.freeGauge.Set(float64(free))
	wasLow := g.low
	g.low = g.opts.MinFree > 0 && free < g.opts.MinFree
	switch {
	case g.low && !wasLow:
		g.log.Warn("the data directory's filesystem is low on space; refusing device data",
			"dir", g.opts.Dir, "free_bytes", free, "min_free_bytes", g.opts.MinFree)
	case !g.low && wasLow:
		g.log.Info("free space is back above the threshold; accepting device data", "dir", g.opts.Dir, "free_bytes", free)
	}
	if g.availableLocked() {
		for s := range g.stores {
			g.log.Info("space returned for a store that had run out", "store", s, "free_bytes", free)
			delete(g.stores, s)
			g.storeGauge.WithLabelValues(s).Set(0)
		}
	}
	g.updateLocked()
}

// updateLocked recomputes the refusal from the threshold and the stores.
func (g *Guard) updateLocked() {
	var refusal error
	switch {
	case g.low:
		refusal = fmt.Errorf("%w: the hub's disk has %s free, below its threshold of %s; retry later", ErrFull, bytesText(g.free), bytesText(g.opts.MinFree))
	case len(g.stores) > 0:
		refusal = fmt.Errorf("%w: the hub's disk is full; retry later", ErrFull)
	}
	if refusal == nil {
		g.refusal.Store(nil)
		g.lowGauge.Set(0)
		return
	}
	g.refusal.Store(&refusal)
	g.lowGauge.Set(1)
}

// IsNoSpace reports whether err says a filesystem is full: ENOSPC or EDQUOT
// anywhere in its chain, or the texts of the libraries that flatten it
// (NATS, SQLite's SQLITE_FULL).
func IsNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "no space left on device") || strings.Contains(s, "database or disk is full") ||
		strings.Contains(s, "disk quota exceeded")
}

// bytesText writes n in binary units ("12.5 MiB").
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
