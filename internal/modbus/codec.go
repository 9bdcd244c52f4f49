package modbus

import (
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// point is one value's place in a device and its encoding, with the
// mapping's defaults resolved (thingmodel.ModbusPoint).
type point struct {
	table    string // thingmodel.ModbusHolding, ...
	addr     uint16
	typ      string // thingmodel.ModbusU16, ...
	words    int    // registers it takes; 1 for a bit
	little   bool   // the two bytes of each register swapped
	lowFirst bool   // the register at addr holds the lowest word
	scale    float64
	offset   float64
	unit     string
}

// newPoint resolves a mapping's point; the model was validated.
func newPoint(mp *thingmodel.ModbusPoint) point {
	p := point{
		table: mp.Table, addr: uint16(mp.Address), typ: mp.Type,
		little: mp.ByteOrder == thingmodel.ModbusLittleEndian, lowFirst: mp.WordOrder == thingmodel.ModbusLowFirst,
		scale: mp.Scale, offset: mp.Offset, unit: mp.Unit,
	}
	if p.typ == "" {
		p.typ = thingmodel.ModbusU16
		if !thingmodel.ModbusRegisterTable(p.table) {
			p.typ = thingmodel.ModbusBool
		}
	}
	if p.scale == 0 {
		p.scale = 1
	}
	p.words = thingmodel.ModbusWords(p.typ)
	return p
}

// isBool reports whether the point's value is a boolean.
func (p *point) isBool() bool { return p.typ == thingmodel.ModbusBool }

// Errors of decode and encode.
var (
	errLength    = errors.New("wrong number of registers")
	errNotFinite = errors.New("not a finite number")
	errRange     = errors.New("out of range")
)

// decode turns the register words of one value, each as Modbus sends it
// (its high byte first), into the value: a number after scaling, or 1 or 0
// for a bool (a coil or discrete input reads as one word of 1 or 0; a
// register is true when it is not 0). A float that is not finite (a
// sensor's NaN) is errNotFinite: JSON and SenML cannot carry it.
func decode(p *point, words []uint16) (float64, error) {
	if len(words) != p.words {
		return 0, fmt.Errorf("%s at %d: %d registers for a %s: %w", p.table, p.addr, len(words), p.typ, errLength)
	}
	raw := combine(p, words)
	var v float64
	switch p.typ {
	case thingmodel.ModbusBool:
		if raw != 0 {
			return 1, nil
		}
		return 0, nil
	case thingmodel.ModbusU16:
		v = float64(uint16(raw))
	case thingmodel.ModbusI16:
		v = float64(int16(raw))
	case thingmodel.ModbusU32:
		v = float64(uint32(raw))
	case thingmodel.ModbusI32:
		v = float64(int32(raw))
	case thingmodel.ModbusF32:
		v = float64(math.Float32frombits(uint32(raw)))
	case thingmodel.ModbusF64:
		v = math.Float64frombits(raw)
	default:
		return 0, fmt.Errorf("type %q: %w", p.typ, errRange)
	}
	v = v*p.scale + p.offset
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%s at %d: %w", p.table, p.addr, errNotFinite)
	}
	return v, nil
}

// combine joins the words into the value's bits, most significant first.
func combine(p *point, words []uint16) uint64 {
	var raw uint64
	n := len(words)
	for i := range n {
		w := words[i]
		if p.lowFirst {
			w = words[n-1-i]
		}
		if p.little {
			w = bits.ReverseBytes16(w)
		}
		raw = raw<<16 | uint64(w)
	}
	return raw
}

// encode is decode's inverse: the register words that make v, each as
// Modbus sends it. An integer type's raw value, (v - offset) / scale, is
// rounded to the nearest integer and must lie within the type's range; a
// bool is 1 (or a coil on) for any v but 0.
func encode(p *point, v float64) ([]uint16, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, errNotFinite
	}
	var raw uint64
	x := (v - p.offset) / p.scale
	switch p.typ {
	case thingmodel.ModbusBool:
		if v != 0 {
			raw = 1
		}
	case thingmodel.ModbusF32:
		if math.IsInf(x, 0) || math.Abs(x) > math.MaxFloat32 {
			return nil, fmt.Errorf("%v is %v raw: %w of f32", v, x, errRange)
		}
		raw = uint64(math.Float32bits(float32(x)))
	case thingmodel.ModbusF64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, fmt.Errorf("%v is %v raw: %w of f64", v, x, errRange)
		}
		raw = math.Float64bits(x)
	default:
		lo, hi, ok := thingmodel.ModbusRange(p.typ)
		if !ok {
			return nil, fmt.Errorf("type %q: %w", p.typ, errRange)
		}
		r := math.Round(x)
		if !(r >= lo && r <= hi) {
			return nil, fmt.Errorf("%v is %v raw, outside %s's %v to %v: %w", v, r, p.typ, lo, hi, errRange)
		}
		raw = uint64(int64(r)) // two's complement for the signed types
	}
	words := make([]uint16, p.words)
	for i := range words {
		w := uint16(raw >> (16 * (p.words - 1 - i)))
		if p.little {
			w = bits.ReverseBytes16(w)
		}
		if p.lowFirst {
			words[p.words-1-i] = w
		} else {
			words[i] = w
		}
	}
	return words, nil
}
