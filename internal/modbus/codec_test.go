package modbus

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

func pt(typ, byteOrder, wordOrder string, scale, offset float64) point {
	table := thingmodel.ModbusHolding
	if typ == thingmodel.ModbusBool {
		table = thingmodel.ModbusCoil
	}
	return newPoint(&thingmodel.ModbusPoint{Table: table, Type: typ, ByteOrder: byteOrder, WordOrder: wordOrder, Scale: scale, Offset: offset})
}

// TestCodec: every type in every byte and word order, with scaling, from
// the words as a device sends them to the value and back.
func TestCodec(t *testing.T) {
	const (
		big, little = thingmodel.ModbusBigEndian, thingmodel.ModbusLittleEndian
		hi, lo      = thingmodel.ModbusHighFirst, thingmodel.ModbusLowFirst
	)
	tests := []struct {
		name          string
		typ, bo, wo   string
		scale, offset float64
		words         []uint16
		want          float64
	}{
		{"u16", "u16", big, "", 1, 0, []uint16{0x1234}, 0x1234},
		{"u16 little", "u16", little, "", 1, 0, []uint16{0x3412}, 0x1234},
		{"u16 max", "u16", big, "", 1, 0, []uint16{0xffff}, 65535},
		{"u16 scaled", "u16", big, "", 0.1, 0, []uint16{215}, 21.5},
		{"u16 offset", "u16", big, "", 1, -100, []uint16{250}, 150},
		{"i16 negative", "i16", big, "", 1, 0, []uint16{0xfffe}, -2},
		{"i16 min", "i16", big, "", 1, 0, []uint16{0x8000}, -32768},
		{"i16 little", "i16", little, "", 1, 0, []uint16{0xfeff}, -2},
		{"i16 scaled", "i16", big, "", 0.1, 0, []uint16{0xff38}, -20}, // -200 * 0.1
		{"i16 scale and offset", "i16", big, "", 0.5, 10, []uint16{4}, 12},
		// 0x12345678 as ABCD, CDAB, BADC, DCBA.
		{"u32 ABCD", "u32", big, hi, 1, 0, []uint16{0x1234, 0x5678}, 0x12345678},
		{"u32 CDAB", "u32", big, lo, 1, 0, []uint16{0x5678, 0x1234}, 0x12345678},
		{"u32 BADC", "u32", little, hi, 1, 0, []uint16{0x3412, 0x7856}, 0x12345678},
		{"u32 DCBA", "u32", little, lo, 1, 0, []uint16{0x7856, 0x3412}, 0x12345678},
		{"u32 max", "u32", big, hi, 1, 0, []uint16{0xffff, 0xffff}, math.MaxUint32},
		{"u32 scaled", "u32", big, lo, 0.001, 0, []uint16{0x86a0, 0x0001}, 100}, // 100000
		{"i32 negative ABCD", "i32", big, hi, 1, 0, []uint16{0xffff, 0xfffe}, -2},
		{"i32 negative CDAB", "i32", big, lo, 1, 0, []uint16{0xfffe, 0xffff}, -2},
		{"i32 negative BADC", "i32", little, hi, 1, 0, []uint16{0xffff, 0xfeff}, -2},
		{"i32 negative DCBA", "i32", little, lo, 1, 0, []uint16{0xfeff, 0xffff}, -2},
		{"i32 min", "i32", big, hi, 1, 0, []uint16{0x8000, 0x0000}, math.MinInt32},
		// 1.5 is 0x3FC00000 in binary32.
		{"f32 ABCD", "f32", big, hi, 1, 0, []uint16{0x3fc0, 0x0000}, 1.5},
		{"f32 CDAB", "f32", big, lo, 1, 0, []uint16{0x0000, 0x3fc0}, 1.5},
		{"f32 BADC", "f32", little, hi, 1, 0, []uint16{0xc03f, 0x0000}, 1.5},
		{"f32 DCBA", "f32", little, lo, 1, 0, []uint16{0x0000, 0xc03f}, 1.5},
		{"f32 negative scaled", "f32", big, hi, 2, 1, []uint16{0xbfc0, 0x0000}, -2}, // -1.5*2+1
		// -2.25 is 0xC002000000000000 in binary64.
		{"f64 ABCD", "f64", big, hi, 1, 0, []uint16{0xc002, 0, 0, 0}, -2.25},
		{"f64 low first", "f64", big, lo, 1, 0, []uint16{0, 0, 0, 0xc002}, -2.25},
		{"f64 little", "f64", little, hi, 1, 0, []uint16{0x02c0, 0, 0, 0}, -2.25},
		{"f64 DCBA", "f64", little, lo, 1, 0, []uint16{0, 0, 0, 0x02c0}, -2.25},
		{"f64 pi", "f64", big, hi, 1, 0, []uint16{0x4009, 0x21fb, 0x5444, 0x2d18}, math.Pi},
		{"bool on", "bool", "", "", 0, 0, []uint16{1}, 1},
		{"bool off", "bool", "", "", 0, 0, []uint16{0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pt(tt.typ, tt.bo, tt.wo, tt.scale, tt.offset)
			got, err := decode(&p, tt.words)
			if err != nil || got != tt.want {
				t.Fatalf("decode(%04x) = %v, %v; want %v", tt.words, got, err, tt.want)
			}
			back, err := encode(&p, tt.want)
			if err != nil || !slices.Equal(back, tt.words) {
				t.Fatalf("encode(%v) = %04x, %v; want %04x", tt.want, back, err, tt.words)
			}
		})
	}
	// A register read as a bool is true when it is not 0.
	p := newPoint(&thingmodel.ModbusPoint{Table: thingmodel.ModbusInput, Type: thingmodel.ModbusBool})
	if v, err := decode(&p, []uint16{0x0100}); err != nil || v != 1 {
		t.Errorf("bool register 0x0100 = %v, %v", v, err)
	}
}

func TestCodecRefuses(t *testing.T) {
	u16 := pt("u16", "", "", 1, 0)
	f32 := pt("f32", "", "", 1, 0)
	f64 := pt("f64", "", "", 1, 0)
	i16 := pt("i16", "", "", 0.1, 0)
	for _, c := range []struct {
		name  string
		p     point
		words []uint16
		want  error
	}{
		{"too few", f32, []uint16{1}, errLength},
		{"too many", u16, []uint16{1, 2}, errLength},
		{"none", f64, nil, errLength},
		{"f32 NaN", f32, []uint16{0x7fc0, 0}, errNotFinite},
		{"f32 infinity", f32, []uint16{0x7f80, 0}, errNotFinite},
		{"f64 NaN", f64, []uint16{0x7ff8, 0, 0, 1}, errNotFinite},
	} {
		if _, err := decode(&c.p, c.words); !errors.Is(err, c.want) {
			t.Errorf("decode %s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		p    point
		v    float64
		want error
	}{
		{"u16 negative", u16, -1, errRange},
		{"u16 too big", u16, 65536, errRange},
		{"u16 rounds into range", u16, 65535.4, nil},
		{"i16 scaled too big", i16, 3276.8, errRange},
		{"i16 scaled fits", i16, -3276.8, nil},
		{"f32 too big", f32, 1e39, errRange},
		{"NaN", f64, math.NaN(), errNotFinite},
		{"infinity", u16, math.Inf(1), errNotFinite},
	} {
		if _, err := encode(&c.p, c.v); !errors.Is(err, c.want) && (c.want != nil || err != nil) {
			t.Errorf("encode %s: %v, want %v", c.name, err, c.want)
		}
	}
	// Rounding to the register's resolution: 21.55 at a scale of 0.1.
	if w, err := encode(&i16, 21.55); err != nil || w[0] != 216 {
		t.Errorf("encode 21.55 at 0.1 = %v, %v; want 216", w, err)
	}
}

// FuzzDecode: any words decode to a value or an error, never a panic; a
// value encodes back to words that decode to the same value, and, for the
// numeric types unscaled, to the same words.
func FuzzDecode(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), []byte{0x12, 0x34})
	f.Add(byte(3), byte(1), byte(2), []byte{0xff, 0xff, 0xff, 0xfe})
	f.Add(byte(4), byte(3), byte(0), []byte{0x3f, 0xc0, 0, 0})
	f.Add(byte(5), byte(2), byte(1), []byte{0xc0, 0x02, 0, 0, 0, 0, 0, 0})
	f.Add(byte(6), byte(0), byte(0), []byte{0, 7})
	f.Add(byte(4), byte(0), byte(0), []byte{0x7f, 0xc0, 0, 0})
	f.Add(byte(1), byte(0), byte(4), []byte{0x80, 0x00, 0x00})
	types := []string{"u16", "i16", "u32", "i32", "f32", "f64", "bool"}
	scales := []struct{ scale, offset float64 }{{1, 0}, {0.1, 0}, {10, -40}, {-2, 273.15}, {0.001, 0.5}}
	f.Fuzz(func(t *testing.T, typ, order, scaling byte, raw []byte) {
		s := scales[int(scaling)%len(scales)]
		bo, wo := thingmodel.ModbusBigEndian, thingmodel.ModbusHighFirst
		if order&1 != 0 {
			bo = thingmodel.ModbusLittleEndian
		}
		if order&2 != 0 {
			wo = thingmodel.ModbusLowFirst
		}
		p := pt(types[int(typ)%len(types)], bo, wo, s.scale, s.offset)
		words := make([]uint16, len(raw)/2)
		for i := range words {
			words[i] = uint16(raw[2*i])<<8 | uint16(raw[2*i+1])
		}
		v, err := decode(&p, words)
		if err != nil {
			if len(words) == p.words && !errors.Is(err, errNotFinite) {
				t.Fatalf("decode(%04x) as %+v: %v", words, p, err)
			}
			return
		}
		back, err := encode(&p, v)
		if err != nil {
			t.Fatalf("encode(%v) of decoded %04x as %+v: %v", v, words, p, err)
		}
		again, err := decode(&p, back)
		if err != nil || again != v && !(p.typ == thingmodel.ModbusF32 && math.Abs(again-v) <= math.Abs(v)*1e-6) {
			t.Fatalf("%04x → %v → %04x → %v, %v (%+v)", words, v, back, again, err, p)
		}
		// A float's -0 decodes to 0 (-0 + 0 is 0): the same number, other bits.
		exact := s.scale == 1 && s.offset == 0 && p.typ != thingmodel.ModbusBool && v != 0
		if exact && !slices.Equal(back, words) {
			t.Fatalf("%04x → %v → %04x (%+v)", words, v, back, p)
		}
	})
}
