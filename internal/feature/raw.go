package feature

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// MaxRawSamples is the most samples DecodeRawWindow takes.
const MaxRawSamples = 65536

// MaxRawRate is the highest sample rate DecodeRawWindow takes, Hz.
const MaxRawRate = 1e6

// ErrRawWindow is wrapped by every error of DecodeRawWindow.
var ErrRawWindow = errors.New("raw window")

// RawWindow is a captured raw window: Samples in physical units, Rate in
// Hz.
type RawWindow struct {
	Samples []float64
	Rate    float64
}

// BandEnergy is BandEnergy of the window's samples at its rate.
func (w RawWindow) BandEnergy(lo, hi float64) (float64, error) {
	return BandEnergy(w.Samples, w.Rate, lo, hi)
}

// rawJSON is the object a device returns for a raw capture.
type rawJSON struct {
	Window     *string  `json:"window"`
	Samples    *float64 `json:"samples"`
	SampleRate *float64 `json:"sampleRate"`
	Scale      *float64 `json:"scale"`
}

// DecodeRawWindow parses the JSON object a device returns for a raw
// capture: {"window": base64 (standard alphabet, padded) of little-endian
// int16 samples, "samples": n, "sampleRate": Hz, "scale": unit per count};
// each sample is its count times scale. Other members are ignored. It
// refuses, with an error saying which: a missing member, bad base64, an odd
// number of bytes, a byte count that is not 2n, n not a whole number in
// [1, 65536], a rate not in (0, 1e6], a scale that is not finite and > 0
// (or whose product with 32768 is not finite).
func DecodeRawWindow(b []byte) (RawWindow, error) {
	var raw rawJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return RawWindow{}, fmt.Errorf("%w: %w", ErrRawWindow, err)
	}
	bad := func(format string, a ...any) (RawWindow, error) {
		return RawWindow{}, fmt.Errorf("%w: %s", ErrRawWindow, fmt.Sprintf(format, a...))
	}
	switch {
	case raw.Window == nil:
		return bad(`no "window"`)
	case raw.Samples == nil:
		return bad(`no "samples"`)
	case raw.SampleRate == nil:
		return bad(`no "sampleRate"`)
	case raw.Scale == nil:
		return bad(`no "scale"`)
	}
	n, rate, scale := *raw.Samples, *raw.SampleRate, *raw.Scale
	if n != math.Trunc(n) || n < 1 || n > MaxRawSamples {
		return bad(`"samples" %v is not a whole number in [1, %d]`, n, MaxRawSamples)
	}
	if !(rate > 0 && rate <= MaxRawRate) {
		return bad(`"sampleRate" %v Hz is not in (0, %g]`, rate, MaxRawRate)
	}
	if !(scale > 0) || math.IsInf(scale*-math.MinInt16, 1) {
		return bad(`"scale" %v is not a finite number > 0 (that stays finite times 32768)`, scale)
	}
	// Refuse a window too long for any n before decoding it.
	if l := len(*raw.Window); l > base64.StdEncoding.EncodedLen(2*MaxRawSamples) {
		return bad(`"window" is %d characters; %d samples take %d`, l, int(n), base64.StdEncoding.EncodedLen(2*int(n)))
	}
	data, err := base64.StdEncoding.DecodeString(*raw.Window)
	if err != nil {
		return RawWindow{}, fmt.Errorf(`%w: "window" is not standard base64: %w`, ErrRawWindow, err)
	}
	if len(data)%2 != 0 {
		return bad(`"window" has an odd number of bytes (%d); samples are int16`, len(data))
	}
	if len(data) != 2*int(n) {
		return bad(`"window" holds %d samples, "samples" says %d`, len(data)/2, int(n))
	}
	w := RawWindow{Samples: make([]float64, int(n)), Rate: rate}
	for i := range w.Samples {
		w.Samples[i] = float64(int16(binary.LittleEndian.Uint16(data[2*i:]))) * scale
	}
	return w, nil
}
