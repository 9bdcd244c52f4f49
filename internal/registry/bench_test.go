package registry

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the registry's hot paths on a real SQLite file (WAL,
// synchronous=FULL, as the hub opens it). Results and the commands that
// produced them are in bench/RESULTS.md.
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/registry

// BenchmarkRegister measures one registration end to end: P-256 key
// generation by the hub, certificate issue, credential signing, the SQLite
// commit (fsync) and the two audit appends it carries.
func BenchmarkRegister(b *testing.B) {
	e := newBenchEnv(b, b.TempDir())
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := e.reg.Register(e.ctx, "bench", benchRequest(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
}

// BenchmarkRegisterParallel registers from GOMAXPROCS goroutines. The
// database has one writer connection, so registrations queue for it; this
// shows the ceiling, not a speed-up.
func BenchmarkRegisterParallel(b *testing.B) {
	e := newBenchEnv(b, b.TempDir())
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.reg.Register(e.ctx, "bench", benchRequest(int(next.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "objects/s")
}

func newBenchEnv(b *testing.B, dir string) *testEnv {
	b.Helper()
	e := newTestEnv(b, dir, func(o *Options) { o.OnCommit = nil })
	e.mustTenant("acme", "")
	if _, _, err := e.reg.RegisterModel(e.ctx, "admin", modelDoc("acme:pump", "1.0.0", "Pump"), nil); err != nil {
		b.Fatal(err)
	}
	return e
}

// benchRequest is the i-th object of a plausible fleet: devices with a model,
// 16 sites of 4 lines, a zone tag, and a hub-generated P-256 key.
func benchRequest(i int) RegisterRequest {
	return RegisterRequest{
		Code:  "acme:d-" + strconv.Itoa(i),
		Model: &ModelRef{ID: "acme:pump", Version: "1.0.0"},
		Path:  []string{"plant-" + strconv.Itoa(i%16), "line-" + strconv.Itoa(i%4)},
		Tags:  map[string]string{"zone": "z" + strconv.Itoa(i%8)},
	}
}

// resolveFixture is a registry holding resolveN objects, built once per
// process (only when BenchmarkResolve runs) and shared by its sub-benchmarks.
var resolveFixture struct {
	once    sync.Once
	dir     string
	err     error
	codes   []string
	numbers []string
	dids    []string
	loadDur time.Duration
}

// resolveN is how many objects BenchmarkResolve preloads;
// WANWU_BENCH_RESOLVE_N changes it.
func resolveN() int {
	if s := os.Getenv("WANWU_BENCH_RESOLVE_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 100_000
}

func TestMain(m *testing.M) {
	code := m.Run()
	if resolveFixture.dir != "" {
		os.RemoveAll(resolveFixture.dir)
	}
	os.Exit(code)
}

// loadResolveFixture registers resolveN objects through the real Register
// path (hub-generated keys, certificates, credentials, audit entries). To
// keep it practical it does two things the hub does not: it turns the writer
// connection's synchronous setting OFF for the load (one fsync per commit is
// what dominates Register, and durability of fixture data does not matter),
// and it registers from two goroutines so that one's crypto overlaps the
// other's commit. The benchmarks then reopen the file as the hub does.
func loadResolveFixture(b *testing.B) {
	f := &resolveFixture
	f.once.Do(func() {
		f.dir, f.err = os.MkdirTemp("", "wanwu-registry-bench-")
		if f.err != nil {
			return
		}
		start := time.Now()
		n := resolveN()
		e := newTestEnv(b, f.dir, func(o *Options) { o.OnCommit = nil })
		if _, f.err = e.db.W.ExecContext(e.ctx, `PRAGMA synchronous = OFF`); f.err != nil {
			return
		}
		e.mustTenant("acme", "")
		if _, _, f.err = e.reg.RegisterModel(e.ctx, "admin", modelDoc("acme:pump", "1.0.0", "Pump"), nil); f.err != nil {
			return
		}
		f.codes, f.numbers, f.dids = make([]string, n), make([]string, n), make([]string, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		var errOnce sync.Once
		for range 2 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					reg, err := e.reg.Register(e.ctx, "bench", benchRequest(i))
					if err != nil {
						errOnce.Do(func() { f.err = err })
						return
					}
					f.codes[i], f.numbers[i], f.dids[i] = reg.Object.Code, reg.Object.Number, reg.Object.DID
				}
			})
		}
		wg.Wait()
		if f.err == nil {
			f.err = e.db.Close()
		}
		f.loadDur = time.Since(start)
	})
	if f.err != nil {
		b.Fatalf("preload: %v", f.err)
	}
}

// BenchmarkResolve resolves random objects among resolveN (100k by default)
// by code, by number and by DID, and reports the median and 99th percentile
// latency besides the mean.
func BenchmarkResolve(b *testing.B) {
	loadResolveFixture(b)
	f := &resolveFixture
	b.Logf("preloaded %d objects in %v", len(f.codes), f.loadDur.Round(time.Second))
	e := newTestEnv(b, f.dir, nil) // reopened as the hub opens it
	// Warm up: prepare the statements on every reader connection and fill
	// their page caches, so the figures are the steady state, not the first
	// touches after a restart.
	warm := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		i := warm.IntN(len(f.codes))
		for _, k := range []string{f.codes[i], f.numbers[i], f.dids[i]} {
			if _, err := e.reg.Resolve(context.Background(), k); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, by := range []struct {
		name string
		keys []string
	}{
		{"code", f.codes},
		{"number", f.numbers},
		{"did", f.dids},
	} {
		b.Run("by="+by.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				i := rng.IntN(len(by.keys))
				t0 := time.Now()
				o, err := e.reg.Resolve(context.Background(), by.keys[i])
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if o.Code != f.codes[i] {
					b.Fatalf("resolve %s gave %s, want %s", by.keys[i], o.Code, f.codes[i])
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(at(0.50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(at(0.99).Nanoseconds()), "p99-ns")
}
