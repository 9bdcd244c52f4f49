package feature

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// encodeRaw writes counts the way a device does.
func encodeRaw(counts []int16, rate, scale float64) []byte {
	buf := make([]byte, 2*len(counts))
	for i, c := range counts {
		binary.LittleEndian.PutUint16(buf[2*i:], uint16(c))
	}
	b, _ := json.Marshal(map[string]any{
		"window":     base64.StdEncoding.EncodeToString(buf),
		"samples":    len(counts),
		"sampleRate": rate,
		"scale":      scale,
	})
	return b
}

func TestDecodeRawWindow(t *testing.T) {
	w, err := DecodeRawWindow(encodeRaw([]int16{0, 1, -1, math.MaxInt16, math.MinInt16}, 2560, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0, 0.5, -0.5, 16383.5, -16384}
	if w.Rate != 2560 || fmt.Sprint(w.Samples) != fmt.Sprint(want) {
		t.Fatalf("got %v at %v Hz; want %v at 2560 Hz", w.Samples, w.Rate, want)
	}
	// Members in any order, more members, the count as 3.0.
	w, err = DecodeRawWindow([]byte(`{"scale":2,"extra":[1],"sampleRate":1e6,"samples":3.0,"window":"AQACAP//"}`))
	if err != nil || fmt.Sprint(w.Samples) != "[2 4 -2]" || w.Rate != 1e6 {
		t.Fatalf("got %v, %v", w, err)
	}
}

// TestRawWindowBandEnergy goes the whole way: a device's capture of a
// 400 Hz tone of 3 m/s² amplitude, quantised to int16 full scale, decoded
// and measured.
func TestRawWindowBandEnergy(t *testing.T) {
	const n, rate, a = 2048, 2560.0, 3.0
	scale := a / math.MaxInt16
	counts := make([]int16, n)
	for i := range counts {
		counts[i] = int16(math.Round(a * math.Sin(2*math.Pi*400*float64(i)/rate) / scale))
	}
	w, err := DecodeRawWindow(encodeRaw(counts, rate, scale))
	if err != nil {
		t.Fatal(err)
	}
	in, err := w.BandEnergy(250, 750)
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.BandEnergy(750, 1250)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(in-a/math.Sqrt2) > 1e-3 || out > 1e-3 {
		t.Errorf("band 250-750 Hz %v (want %v), band 750-1250 Hz %v (want ≈ 0)", in, a/math.Sqrt2, out)
	}
}

func TestDecodeRawWindowErrors(t *testing.T) {
	good := func(edit func(m map[string]any)) []byte {
		m := map[string]any{"window": "AQACAP//", "samples": 3, "sampleRate": 100, "scale": 1}
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	big := base64.StdEncoding.EncodeToString(make([]byte, 2*MaxRawSamples+2))
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not JSON", []byte(`{"window":`), "unexpected end"},
		{"not an object", []byte(`[1]`), "cannot unmarshal array"},
		{"no window", good(func(m map[string]any) { delete(m, "window") }), `no "window"`},
		{"no samples", good(func(m map[string]any) { delete(m, "samples") }), `no "samples"`},
		{"no rate", good(func(m map[string]any) { delete(m, "sampleRate") }), `no "sampleRate"`},
		{"no scale", good(func(m map[string]any) { delete(m, "scale") }), `no "scale"`},
		{"window not a string", good(func(m map[string]any) { m["window"] = 5 }), "cannot unmarshal number"},
		{"bad base64", good(func(m map[string]any) { m["window"] = "AQ*CAP//" }), "not standard base64"},
		{"URL alphabet", good(func(m map[string]any) { m["window"] = "AQACAP__" }), "not standard base64"},
		{"no padding", good(func(m map[string]any) { m["window"] = "AQACAA"; m["samples"] = 2 }), "not standard base64"},
		{"odd length", good(func(m map[string]any) { m["window"] = "AQACAAM=" }), "odd number of bytes (5)"},
		{"count mismatch", good(func(m map[string]any) { m["samples"] = 4 }), `holds 3 samples, "samples" says 4`},
		{"too many", good(func(m map[string]any) { m["samples"] = MaxRawSamples + 1 }), `"samples" 65537 is not a whole number in [1, 65536]`},
		{"too long a window", good(func(m map[string]any) { m["window"] = big; m["samples"] = MaxRawSamples }), `"window" is 174768 characters; 65536 samples take 174764`},
		{"zero samples", good(func(m map[string]any) { m["window"] = ""; m["samples"] = 0 }), `"samples" 0 is not`},
		{"fractional samples", good(func(m map[string]any) { m["samples"] = 2.5 }), `"samples" 2.5 is not`},
		{"zero rate", good(func(m map[string]any) { m["sampleRate"] = 0 }), `"sampleRate" 0 Hz is not in (0, 1e+06]`},
		{"negative rate", good(func(m map[string]any) { m["sampleRate"] = -5 }), `"sampleRate" -5 Hz`},
		{"rate too high", good(func(m map[string]any) { m["sampleRate"] = 1e6 + 1 }), `"sampleRate" 1.000001e+06 Hz`},
		{"zero scale", good(func(m map[string]any) { m["scale"] = 0 }), `"scale" 0 is not a finite number > 0`},
		{"negative scale", good(func(m map[string]any) { m["scale"] = -1 }), `"scale" -1 is not`},
		{"huge scale", good(func(m map[string]any) { m["scale"] = 1e305 }), `"scale" 1e+305 is not`},
	}
	for _, tt := range tests {
		_, err := DecodeRawWindow(tt.in)
		if err == nil || !errors.Is(err, ErrRawWindow) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want ErrRawWindow with %q", tt.name, err, tt.want)
		}
	}
}

// FuzzDecodeRawWindow checks that DecodeRawWindow never panics and that
// what it takes is what it promised: n samples, each a whole number of
// counts in int16 range times the scale, at a rate in (0, 1e6], and that
// encoding them again gives them back.
func FuzzDecodeRawWindow(f *testing.F) {
	f.Add(encodeRaw([]int16{1, 2, -1}, 2560, 1e-3))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := DecodeRawWindow(data)
		if err != nil {
			if w.Samples != nil || !errors.Is(err, ErrRawWindow) {
				t.Fatalf("error %v with %v", err, w)
			}
			return
		}
		var raw struct {
			Scale float64 `json:"scale"`
		}
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatal(err)
		}
		if len(w.Samples) < 1 || len(w.Samples) > MaxRawSamples || !(w.Rate > 0 && w.Rate <= MaxRawRate) {
			t.Fatalf("%d samples at %v Hz", len(w.Samples), w.Rate)
		}
		counts := make([]int16, len(w.Samples))
		for i, v := range w.Samples {
			c := math.Round(v / raw.Scale)
			if c < math.MinInt16 || c > math.MaxInt16 || c*raw.Scale != v {
				t.Fatalf("sample %d is %v, not a whole number of counts of %v", i, v, raw.Scale)
			}
			counts[i] = int16(c)
		}
		again, err := DecodeRawWindow(encodeRaw(counts, w.Rate, raw.Scale))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(w) {
			t.Fatalf("round trip: %v, %v", again, err)
		}
	})
}
