package dataset

import (
	"maps"
	"math"
	"slices"
	"time"
)

// MaxCaptureDelay is how soon after its end a window must be captured to
// count as timely.
const MaxCaptureDelay = time.Minute

// facts is what the quality scores need of one window (stored beside it,
// so that a build reads no series).
type facts struct {
	id                string
	toMS, capturedMS  int64
	present, expected int64  // completeness
	seriesSHA256      string // "" without a series
}

// majority returns the key of the label most of labels give, or "" when
// none has more votes than every other (no labels, or a tie).
func majority(labels []*Label) string {
	counts := map[string]int{}
	for _, l := range labels {
		counts[l.key()]++
	}
	best, n, tie := "", 0, false
	for k, c := range counts {
		switch {
		case c > n:
			best, n, tie = k, c, false
		case c == n:
			tie = true
		}
	}
	if tie {
		return ""
	}
	return best
}

// quality scores windows (in id order) and the labels of each (by window
// id), as the package doc defines.
func quality(ws []facts, labels map[string][]*Label) Quality {
	var q Quality
	seen := map[string]bool{}
	classes := map[string]int{}
	for _, w := range ws {
		q.PointsPresent += w.present
		q.PointsExpected += w.expected
		if w.capturedMS-w.toMS <= MaxCaptureDelay.Milliseconds() {
			q.Timely++
		}
		if w.seriesSHA256 != "" {
			if seen[w.seriesSHA256] {
				q.Duplicates++
			}
			seen[w.seriesSHA256] = true
		}
		ls := labels[w.id]
		if len(ls) == 0 {
			continue
		}
		q.Labelled++
		if len(ls) >= 2 {
			q.MultiLabelled++
			agree := true
			for _, l := range ls[1:] {
				agree = agree && l.key() == ls[0].key()
			}
			if agree {
				q.Agreeing++
			}
		}
		if k := majority(ls); k != "" {
			classes[k]++
		}
	}
	q.Completeness = ratio(q.PointsPresent, q.PointsExpected, 1)
	q.Timeliness = ratio(int64(q.Timely), int64(len(ws)), 0)
	q.LabelCoverage = ratio(int64(q.Labelled), int64(len(ws)), 0)
	q.LabelAgreement = ratio(int64(q.Agreeing), int64(q.MultiLabelled), 1)
	q.DuplicateRate = ratio(int64(q.Duplicates), int64(len(ws)), 0)
	q.Classes = len(classes)
	if len(classes) >= 2 {
		// In key order, so that the sum rounds the same every time.
		keys := slices.Sorted(maps.Keys(classes))
		total := 0
		for _, k := range keys {
			total += classes[k]
		}
		var h float64
		for _, k := range keys {
			p := float64(classes[k]) / float64(total)
			h -= p * math.Log(p)
		}
		q.ClassBalance = min(max(h/math.Log(float64(len(classes))), 0), 1)
	}
	return q
}

// ratio is n/d, or empty when d is 0.
func ratio(n, d int64, empty float64) float64 {
	if d == 0 {
		return empty
	}
	return float64(n) / float64(d)
}
