package tsdb

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkAppend appends batches of 100 samples spread over 1000 series,
// as the telemetry consumer does, with and without the fsync per batch.
func BenchmarkAppend(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			s := openStore(b, Options{NoSync: noSync})
			const series, batchSize = 1000, 100
			lsets := make([]map[string]string, series)
			for i := range lsets {
				lsets[i] = lbl("__name__", "bench_metric", "dev", fmt.Sprintf("dev-%04d", i), "tenant", "acme")
			}
			// Each series gets one sample per 10 batches, 1s apart.
			t0 := time.Now().Add(-time.Hour).UnixMilli()
			batch := make([]Sample, batchSize)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				round := i / (series / batchSize)
				for j := range batch {
					k := (i*batchSize + j) % series
					batch[j] = Sample{Labels: lsets[k], T: t0 + int64(round)*1000, V: float64(i)}
				}
				if _, rejects, err := s.Append(ctx, batch); err != nil || len(rejects) > 0 {
					b.Fatalf("append: %v %v", err, rejects)
				}
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkRangeQuery reads one hour of 100 series at 10s resolution
// (36,000 samples) aggregated to 1-minute averages, directly and through
// PromQL (avg_over_time at a 1m step) for comparison.
func BenchmarkRangeQuery(b *testing.B) {
	s := openStore(b, Options{NoSync: true})
	end := time.Now().Truncate(time.Minute)
	start := end.Add(-time.Hour)
	var batch []Sample
	for ts := start; ts.Before(end); ts = ts.Add(10 * time.Second) {
		for d := range 100 {
			batch = append(batch, Sample{lbl("__name__", "bench_metric", "dev", fmt.Sprint(d)), ts.UnixMilli(), float64(d)})
		}
	}
	mustAppend(b, s, batch)
	ctx := context.Background()
	sel := []Matcher{{Name: "__name__", Value: "bench_metric"}}

	b.Run("Range", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := s.Range(ctx, sel, start, end, time.Minute, AggAvg)
			if err != nil || len(res) != 100 {
				b.Fatalf("%d series, %v", len(res), err)
			}
		}
	})
	b.Run("PromQL", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q, err := s.engine.NewRangeQuery(ctx, s.db, nil, "avg_over_time(bench_metric[1m])", start.Add(time.Minute), end, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			res := q.Exec(ctx)
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			q.Close()
		}
	})
}
