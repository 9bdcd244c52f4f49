package dataset_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/dataset"
)

// FuzzParseManifest: ParseManifest never panics, refuses with ErrInvalid,
// and what it accepts encodes to a manifest it accepts again, unchanged.
// Seeds: testdata/manifest.json and testdata/fuzz/FuzzParseManifest
// (valid, truncated, unknown field, bad digest).
func FuzzParseManifest(f *testing.F) {
	f.Add(validManifest(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dataset.ParseManifest(b)
		if err != nil {
			if !errors.Is(err, dataset.ErrInvalid) {
				t.Fatalf("ParseManifest error %v does not wrap ErrInvalid", err)
			}
			return
		}
		roundTrip(t, m, func(b []byte) (any, error) { return dataset.ParseManifest(b) })
	})
}

// FuzzParseWindow: ParseWindow never panics, refuses with ErrInvalid, and
// what it accepts encodes to a window it accepts again, unchanged.
// Seeds: a window with every field, and testdata/fuzz/FuzzParseWindow
// (valid, redacted, unknown field, point without a value, point outside
// the window).
func FuzzParseWindow(f *testing.F) {
	w := window()
	w.Features = map[string]float64{"temp_mean": 4.5, "temp_rate": -1e-9}
	w.Edge, w.Loop, w.Classification = "acme:edge-1", "cooling", "core"
	w.Summary = map[string]dataset.Stats{"pressure": {N: 3, Mean: 1, Min: 0, Max: 2, Std: 0.8}}
	b, err := json.Marshal(w)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := dataset.ParseWindow(b)
		if err != nil {
			if !errors.Is(err, dataset.ErrInvalid) {
				t.Fatalf("ParseWindow error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if w.ID != "" || w.Raw != (len(w.Series) > 0) || w.Classification == "" {
			t.Fatalf("accepted %+v", w)
		}
		for prop, pts := range w.Series {
			if w.Summary[prop] != dataset.Summarize(pts) {
				t.Fatalf("summary of %s: %+v", prop, w.Summary[prop])
			}
		}
		roundTrip(t, w, func(b []byte) (any, error) { return dataset.ParseWindow(b) })
	})
}

// roundTrip checks that v encodes to JSON that parse accepts and that
// encodes the same.
func roundTrip(t *testing.T, v any, parse func([]byte) (any, error)) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted %+v does not encode: %v", v, err)
	}
	v2, err := parse(b)
	if err != nil {
		t.Fatalf("refused its own encoding %s: %v", b, err)
	}
	b2, err := json.Marshal(v2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("encoding changed:\n%s\n%s", b, b2)
	}
}
