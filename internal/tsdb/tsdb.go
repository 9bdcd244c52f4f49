// Package tsdb is the hub's telemetry store: the Prometheus TSDB embedded as a
// library, its PromQL engine, and a Prometheus-compatible HTTP API so that
// Grafana's Prometheus data source works against the hub unchanged.
//
// # Writes
//
// [Store.Append] writes a batch in one appender transaction. The out-of-order
// window is on (24h by default) because edges that were cut off from the hub
// forward their backlog late, interleaved with current data from other
// devices; the TSDB measures "late" against the newest sample of any series,
// so the window must cover the longest outage whose data should still be kept.
// Samples are sorted by time before they are appended: the head checks a
// sample against committed data when it is appended and again at commit, and
// only in time order do both checks agree, so a sample that is not reported
// as rejected is really stored.
//
// Replays are idempotent: a sample identical to a stored one (same series,
// timestamp and value) is accepted and stored once. A sample with the same
// series and timestamp as the newest stored one but another value is rejected.
// For older timestamps the TSDB cannot tell cheaply; a conflicting value there
// is accepted and queries return one of the two values.
//
// Durability: the TSDB writes the WAL before it acknowledges a commit, but it
// does not fsync it. Unless [Options.NoSync] is set, Append fsyncs the WAL
// (and the out-of-order WBL) before it returns, with concurrent callers
// sharing one fsync, so that acknowledged samples survive a power loss, not
// only a crash of the process (docs/ARCHITECTURE.md, "Data flow of telemetry").
//
// # Reads
//
// [Store.Latest] and [Store.Range] read the TSDB directly rather than building
// PromQL strings: callers pass structured matchers, nothing is parsed, and the
// step windows are exact (see Range). The PromQL engine serves [Store.PromAPI].
//
// # Tenant isolation in the HTTP API
//
// When PromAPI is given an enforce function, its matchers are appended to every
// selector of every PromQL expression (the AST is rewritten, as
// prom-label-proxy does) and, as a second line of defence, to every Select the
// engine makes against storage; /series, /labels and /label/{name}/values apply
// them to each match[] selector, or use them alone when none is given. Matchers
// are ANDed, so a query that names another tenant simply matches nothing.
package tsdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// Defaults for Options.
const (
	DefaultOutOfOrderWindow = 24 * time.Hour
	DefaultRetention        = 30 * 24 * time.Hour
	DefaultLookbackDelta    = 5 * time.Minute
	DefaultQueryTimeout     = 2 * time.Minute
	// DefaultMaxSamples bounds the samples one PromQL query may hold in memory
	// (Prometheus' own default): about 800 MB at worst, which a hub survives.
	DefaultMaxSamples = 50_000_000
	// MaxPointsPerSeries is the most points Range and query_range return per
	// series, as in Prometheus: more is never useful on a chart and is
	// usually a step given in the wrong unit.
	MaxPointsPerSeries = 11_000
)

// Sentinel errors.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("tsdb: store closed")
	// ErrInvalid marks a caller mistake in a query (bad matcher, step,
	// aggregation or time range); the hub's API maps it to 400.
	ErrInvalid = errors.New("tsdb: invalid argument")
)

// Options configure a Store. Zero values take the defaults.
type Options struct {
	Dir string // where the TSDB blocks/WAL live
	// OutOfOrderWindow is how far behind the newest sample a sample may be
	// and still be accepted. 0 means DefaultOutOfOrderWindow; negative turns
	// out-of-order ingestion off.
	OutOfOrderWindow time.Duration
	Retention        time.Duration // default 30 days
	Logger           *slog.Logger
	// Registerer (optional) receives the TSDB's and the PromQL engine's own
	// metrics. They register once, so a Registerer serves one open Store.
	Registerer prometheus.Registerer

	// NoSync skips the fsync after each Append: faster, but a power loss can
	// drop the last acknowledged samples (a crash of the process cannot).
	NoSync bool
	// LookbackDelta, QueryTimeout and MaxSamples configure the PromQL engine;
	// zero means the defaults above.
	LookbackDelta time.Duration
	QueryTimeout  time.Duration
	MaxSamples    int
}

// Store is the telemetry store. Its methods are safe for concurrent use.
type Store struct {
	opts   Options
	log    *slog.Logger
	db     *promtsdb.DB
	engine *promql.Engine
	parser parser.Parser

	// mu makes Close wait for in-flight calls; closed is read under it.
	mu     sync.RWMutex
	closed bool

	// Group commit for fsync: callers that committed before a sync started
	// are covered by it and skip their own.
	syncMu     sync.Mutex
	commitSeq  atomic.Uint64
	syncedSeq  uint64 // guarded by syncMu
	walSync    segmentSyncer
	wblSync    segmentSyncer
	closeOnce  sync.Once
	closeError error

	// refs remembers series references across appends (appendPrepared).
	refMu sync.Mutex
	refs  map[uint64]refEntry
}

// Open opens (or creates) the store in opts.Dir and replays its WAL.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("tsdb: open: %w: Dir is required", ErrInvalid)
	}
	if opts.OutOfOrderWindow == 0 {
		opts.OutOfOrderWindow = DefaultOutOfOrderWindow
	}
	if opts.OutOfOrderWindow < 0 {
		opts.OutOfOrderWindow = 0
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LookbackDelta <= 0 {
		opts.LookbackDelta = DefaultLookbackDelta
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = DefaultMaxSamples
	}

	to := promtsdb.DefaultOptions()
	to.RetentionDuration = opts.Retention.Milliseconds()
	to.OutOfOrderTimeWindow = opts.OutOfOrderWindow.Milliseconds()
	// As Prometheus does: blocks grow up to a tenth of the retention (at most
	// 31 days) so that retention deletes whole blocks at a fine grain.
	maxBlock := min(opts.Retention/10, 31*24*time.Hour).Milliseconds()
	to.MaxBlockDuration = max(maxBlock, to.MinBlockDuration)
	// Telemetry compresses well and the WAL is read only on restart.
	to.WALCompression = compression.Snappy
	// Out-of-order samples end up in blocks that overlap older ones; merging
	// them is what keeps queries from reading ever more blocks.
	to.EnableOverlappingCompaction = true

	db, err := promtsdb.Open(opts.Dir, opts.Logger.With("component", "tsdb"), opts.Registerer, to, nil)
	if err != nil {
		return nil, fmt.Errorf("tsdb: open %s: %w", opts.Dir, err)
	}
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:        opts.Logger.With("component", "promql"),
		Reg:           opts.Registerer,
		MaxSamples:    opts.MaxSamples,
		Timeout:       opts.QueryTimeout,
		LookbackDelta: opts.LookbackDelta,
		// Grafana's default subquery step; also what Prometheus uses for
		// subqueries without a step (its global evaluation interval).
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	return &Store{opts: opts, log: opts.Logger, db: db, engine: engine, parser: p,
		walSync: segmentSyncer{dir: filepath.Join(opts.Dir, "wal")},
		wblSync: segmentSyncer{dir: filepath.Join(opts.Dir, "wbl")}}, nil
}

// Close flushes nothing extra (the WAL is the durable copy) and releases the
// store; it waits for in-flight calls and is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closeError = errors.Join(s.engine.Close(), s.db.Close())
		s.syncMu.Lock()
		s.walSync.close()
		s.wblSync.close()
		s.syncMu.Unlock()
		if s.closeError != nil {
			s.closeError = fmt.Errorf("tsdb: close: %w", s.closeError)
		}
	})
	return s.closeError
}

// acquire holds the store open for the duration of a call.
func (s *Store) acquire() (release func(), err error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	return s.mu.RUnlock, nil
}

// Sample is one value of one series. Labels must include "__name__".
type Sample struct {
	Labels map[string]string
	T      int64 // ms since epoch
	V      float64
}

// Reject says why the sample at Index of an Append batch was not stored.
type Reject struct {
	Index  int
	Reason string
}

// Append writes samples in one appender transaction and commits. It returns
// how many samples are stored (identical replays count as stored) and a
// Reject for each sample that is not: invalid labels, older than the
// out-of-order window, or a different value for an existing timestamp. The
// other samples of the batch are committed regardless. A non-nil err means
// the caller must treat no sample as stored: the commit failed, or (with
// fsync on) it is not known to be on disk; replaying the batch is safe.
func (s *Store) Append(ctx context.Context, samples []Sample) (int, []Reject, error) {
	var rejects []Reject
	prepared := make([]PreparedSample, len(samples))
	sets := make([]LabelSet, len(samples))
	for i, smp := range samples {
		lset, err := toLabels(smp.Labels)
		if err != nil {
			rejects = append(rejects, Reject{Index: i, Reason: err.Error()})
			continue
		}
		sets[i] = LabelSet{lset: lset, hash: lset.Hash()}
		prepared[i] = PreparedSample{Labels: &sets[i], T: smp.T, V: smp.V}
	}
	return s.appendPrepared(ctx, prepared, rejects, !s.opts.NoSync)
}

// LabelSet is the label set of one series, validated and converted once
// (NewLabelSet), for callers that append to the same series again and
// again: AppendPrepared then spends nothing on labels. A LabelSet is
// immutable and may be used with any Store.
type LabelSet struct {
	lset labels.Labels
	hash uint64
}

// Get returns the value of a label, "" when absent.
func (l *LabelSet) Get(name string) string { return l.lset.Get(name) }

// NewLabelSet validates a label set as Append does (it must include
// "__name__"; empty values are left out).
func NewLabelSet(m map[string]string) (*LabelSet, error) {
	lset, err := toLabels(m)
	if err != nil {
		return nil, err
	}
	return &LabelSet{lset: lset, hash: lset.Hash()}, nil
}

// String is the series in PromQL notation.
func (sr *LabelSet) String() string { return sr.lset.String() }

// PreparedSample is one value of a series with a prepared label set.
type PreparedSample struct {
	Labels *LabelSet
	T      int64 // ms since epoch
	V      float64
}

// AppendPrepared is Append for prepared label sets; a sample with nil
// Labels is refused. Besides the labels, it spares the head a lookup by labels:
// the store remembers each series' reference from earlier batches.
func (s *Store) AppendPrepared(ctx context.Context, samples []PreparedSample) (int, []Reject, error) {
	return s.appendPreparedChecked(ctx, samples, !s.opts.NoSync)
}

// AppendPreparedNoSync is AppendPrepared without the fsync: the samples are
// committed and queryable when it returns, durable only after a later Sync.
// A writer that records its progress only after Sync makes one fsync serve
// many appends.
func (s *Store) AppendPreparedNoSync(ctx context.Context, samples []PreparedSample) (int, []Reject, error) {
	return s.appendPreparedChecked(ctx, samples, false)
}

// Sync makes every committed append durable (a no-op with Options.NoSync).
func (s *Store) Sync() error {
	if s.opts.NoSync {
		return nil
	}
	release, err := s.acquire()
	if err != nil {
		return err
	}
	defer release()
	if err := s.sync(); err != nil {
		return fmt.Errorf("tsdb: sync: %w", err)
	}
	return nil
}

func (s *Store) appendPreparedChecked(ctx context.Context, samples []PreparedSample, sync bool) (int, []Reject, error) {
	var rejects []Reject
	for i := range samples {
		if samples[i].Labels == nil {
			rejects = append(rejects, Reject{Index: i, Reason: "no label set"})
		}
	}
	return s.appendPrepared(ctx, samples, rejects, sync)
}

// maxRefs bounds the series references a Store remembers across batches;
// beyond it they are forgotten all at once and learnt again.
const maxRefs = 1 << 17

// refEntry is a remembered series reference. The labels are compared
// because hashes can collide and the head trusts a reference without a
// check. References are never reused by the head: one for a series that
// was garbage-collected since is not found, and the head looks the labels up.
type refEntry struct {
	lset labels.Labels
	ref  storage.SeriesRef
}

// appendPrepared appends the samples with non-nil Labels; rejects holds
// those refused already.
func (s *Store) appendPrepared(ctx context.Context, samples []PreparedSample, rejects []Reject, sync bool) (int, []Reject, error) {
	release, err := s.acquire()
	if err != nil {
		return 0, nil, err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return 0, nil, fmt.Errorf("tsdb: append: %w", err)
	}

	order := make([]int32, 0, len(samples))
	for i := range samples {
		if samples[i].Labels == nil {
			continue
		}
		if err := checkValue(samples[i].V); err != nil {
			rejects = append(rejects, Reject{Index: i, Reason: err.Error()})
			continue
		}
		order = append(order, int32(i))
	}
	// Time order per series makes the append-time and commit-time checks of
	// the head agree (see package doc); the series order keeps duplicates
	// inside the batch adjacent, in the order of the batch.
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &samples[i], &samples[j]
		if c := cmp.Compare(a.T, b.T); c != 0 {
			return c
		}
		if a.Labels != b.Labels {
			if c := cmp.Compare(a.Labels.hash, b.Labels.hash); c != 0 {
				return c
			}
			if c := labels.Compare(a.Labels.lset, b.Labels.lset); c != 0 {
				return c
			}
		}
		return cmp.Compare(i, j)
	})

	app := s.db.AppenderV2(ctx)
	accepted := 0
	s.refMu.Lock()
	if s.refs == nil || len(s.refs) >= maxRefs {
		s.refs = make(map[uint64]refEntry)
	}
	for k, i := range order {
		smp := &samples[i]
		sr := smp.Labels
		if k > 0 {
			prev := &samples[order[k-1]]
			if prev.T == smp.T && (prev.Labels == sr || prev.Labels.hash == sr.hash && labels.Equal(prev.Labels.lset, sr.lset)) {
				// The head checks duplicates only against committed data,
				// so a repeat inside the batch is caught here.
				if math.Float64bits(prev.V) == math.Float64bits(smp.V) {
					accepted++
				} else {
					rejects = append(rejects, Reject{Index: int(i), Reason: describe(sr.lset, smp.T,
						fmt.Errorf("duplicate sample for timestamp in the batch: value %g, earlier %g", smp.V, prev.V))})
				}
				continue
			}
		}
		var ref storage.SeriesRef
		c, cached := s.refs[sr.hash]
		if cached && labels.Equal(c.lset, sr.lset) {
			ref = c.ref
		}
		newRef, err := app.Append(ref, sr.lset, 0, smp.T, smp.V, nil, nil, storage.AOptions{})
		if err != nil {
			rejects = append(rejects, Reject{Index: int(i), Reason: describe(sr.lset, smp.T, s.explain(err))})
			continue
		}
		if newRef != ref {
			s.refs[sr.hash] = refEntry{sr.lset, newRef}
		}
		accepted++
	}
	s.refMu.Unlock()
	if err := app.Commit(); err != nil {
		return 0, nil, fmt.Errorf("tsdb: commit %d samples: %w", len(order), err)
	}
	if accepted > 0 && sync {
		if err := s.sync(); err != nil {
			// Committed and visible, but not known to be on disk: the
			// caller must not acknowledge the source.
			return 0, nil, fmt.Errorf("tsdb: append: %w", err)
		}
	}
	slices.SortFunc(rejects, func(a, b Reject) int { return cmp.Compare(a.Index, b.Index) })
	return accepted, rejects, nil
}

// explain adds what the TSDB's terse errors leave out.
func (s *Store) explain(err error) error {
	switch {
	case errors.Is(err, storage.ErrTooOldSample):
		return fmt.Errorf("%w: more than %s behind the newest sample in the store", err, s.opts.OutOfOrderWindow)
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrOutOfOrderSample):
		return fmt.Errorf("%w: out-of-order ingestion is off and the series has newer samples", err)
	}
	return err
}

func describe(lset labels.Labels, t int64, err error) string {
	return fmt.Sprintf("%s @ %s: %v", lset.String(), time.UnixMilli(t).UTC().Format(time.RFC3339Nano), err)
}

// toLabels validates and converts a label map.
func toLabels(m map[string]string) (labels.Labels, error) {
	if m[labels.MetricName] == "" {
		return labels.EmptyLabels(), errors.New("missing __name__ label")
	}
	b := labels.NewScratchBuilder(len(m))
	for name, val := range m {
		if !model.LabelName(name).IsValid() {
			return labels.EmptyLabels(), fmt.Errorf("invalid label name %q", name)
		}
		if !model.LabelValue(val).IsValid() {
			return labels.EmptyLabels(), fmt.Errorf("label %s: value is not valid UTF-8", name)
		}
		// Names starting with __ are reserved for internal use; a stored
		// one would be dropped or misread by PromQL.
		if name != labels.MetricName && len(name) >= 2 && name[:2] == "__" {
			return labels.EmptyLabels(), fmt.Errorf("label name %q is reserved (starts with __)", name)
		}
		// An empty value is the same as no label in PromQL; storing it
		// would only make two spellings of one series.
		if val == "" {
			continue
		}
		b.Add(name, val)
	}
	b.Sort()
	return b.Labels(), nil
}

func checkValue(v float64) error {
	// A caller's NaN is a value; the staleness marker is a NaN with other
	// bits that would end the series for PromQL.
	if value.IsStaleNaN(v) {
		return errors.New("value is the Prometheus staleness marker")
	}
	return nil
}

// sync fsyncs the newest WAL and WBL segments and their directories. The TSDB
// writes each commit to the segment files before it returns but leaves the
// fsync to segment rotation; an fsync on our own descriptor flushes the same
// inode.
func (s *Store) sync() error {
	seq := s.commitSeq.Add(1)
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncedSeq >= seq {
		return nil // a sync that started after our commit covered it
	}
	covered := s.commitSeq.Load()
	for _, w := range []*segmentSyncer{&s.walSync, &s.wblSync} {
		if err := w.sync(); err != nil {
			return err
		}
	}
	s.syncedSeq = covered
	return nil
}

// segmentSyncer makes what the TSDB wrote to one write-ahead log directory
// durable. It keeps the newest segment open and fsyncs it when it grew; it
// lists the directory again only when the next segment exists (a rotation),
// and then also fsyncs the segment before it (the TSDB syncs a rotated
// segment in the background, perhaps after our commit) and the directory
// (the new file's entry). Before, every sync listed the directory and
// fsynced two segments and the directory: three fsyncs per store commit.
type segmentSyncer struct {
	dir    string
	newest *os.File // nil: no segment seen yet
	name   string   // newest's name
	synced int64    // newest's size at its last fsync
	next   string   // the name a rotation creates
}

func (w *segmentSyncer) sync() error {
	if w.newest != nil {
		if _, err := os.Lstat(filepath.Join(w.dir, w.next)); errors.Is(err, os.ErrNotExist) {
			return w.syncNewest()
		}
	}
	return w.rotated()
}

// syncNewest fsyncs the newest segment if it grew since its last fsync.
func (w *segmentSyncer) syncNewest() error {
	st, err := w.newest.Stat()
	if err != nil {
		return fmt.Errorf("fsync %s: %w", w.dir, err)
	}
	if st.Size() == w.synced {
		return nil
	}
	if err := w.newest.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.newest.Name(), err)
	}
	w.synced = st.Size()
	return nil
}

// rotated lists the directory, fsyncs every segment from the one it had open
// to the newest, and the directory, and opens the newest.
func (w *segmentSyncer) rotated() error {
	entries, err := os.ReadDir(w.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no out-of-order sample yet: no WBL
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", w.dir, err)
	}
	var segs []string
	for _, e := range entries {
		// Zero-padded, so ReadDir's order is numeric.
		if e.Type().IsRegular() && isSegmentName(e.Name()) && (w.name == "" || e.Name() >= w.name) {
			segs = append(segs, e.Name())
		}
	}
	if len(segs) == 0 {
		return nil
	}
	if w.name == "" && len(segs) > 2 {
		segs = segs[len(segs)-2:]
	}
	w.close()
	for i, name := range append(segs, ".") {
		f, err := os.Open(filepath.Join(w.dir, name))
		if err != nil {
			return fmt.Errorf("fsync %s: %w", w.dir, err)
		}
		err = f.Sync()
		var st os.FileInfo
		if err == nil {
			st, err = f.Stat()
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("fsync %s: %w", f.Name(), err)
		}
		if i == len(segs)-1 {
			w.newest, w.name, w.synced = f, name, st.Size()
			w.next = nextSegmentName(name)
			continue
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("fsync %s: %w", w.dir, err)
		}
	}
	return nil
}

func (w *segmentSyncer) close() {
	if w.newest != nil {
		w.newest.Close()
		w.newest = nil
	}
}

// nextSegmentName is the name of the segment after name, in its width.
func nextSegmentName(name string) string {
	n, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return name + ".next" // not a segment name: never exists
	}
	return fmt.Sprintf("%0*d", len(name), n+1)
}

func isSegmentName(n string) bool {
	if n == "" {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
