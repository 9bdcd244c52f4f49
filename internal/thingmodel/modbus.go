package thingmodel

import (
	"math"
	"slices"
	"strings"
	"time"
)

// ModbusMapping says how an edge polls a Modbus device (Modbus TCP, or
// Modbus RTU through a TCP gateway) for the model's properties and writes
// its actions (PROTOCOL.md §10). Groups are polled each at its own
// interval; every register of a group is read in the same poll and its
// values are published as one message. Actions maps an action of the
// model to the register or coil a command writes.
//
//	"mapping": {"modbus": {
//	  "groups": [{"interval": "1s", "registers": [
//	    {"property": "temperature", "table": "holding", "address": 100, "type": "i16", "scale": 0.1},
//	    {"property": "running", "table": "coil", "address": 5}]}],
//	  "actions": {"setSpeed": {"argument": "rpm", "table": "holding", "address": 300, "type": "u16"}}}}
//
// A property mapped to a holding register or a coil that the model does
// not declare readOnly is also written when the twin's desired state names
// it.
type ModbusMapping struct {
	Groups  []*ModbusGroup          `json:"groups,omitempty"`
	Actions map[string]*ModbusWrite `json:"actions,omitempty"`
}

// ModbusGroup is a set of registers polled together every Interval.
type ModbusGroup struct {
	Interval  string            `json:"interval"` // Go duration, ModbusMinInterval to ModbusMaxInterval
	Registers []*ModbusRegister `json:"registers"`
}

// ModbusRegister maps one property onto a point of the device.
type ModbusRegister struct {
	Property string `json:"property"`
	ModbusPoint
}

// ModbusWrite is what a command for one action writes: the action's
// argument, or a constant Value when the action takes none.
type ModbusWrite struct {
	Argument string `json:"argument,omitempty"`
	// Value is a float64 or a bool, in the engineering units a register
	// value has after scaling.
	Value any `json:"value,omitempty"`
	ModbusPoint
}

// ModbusPoint locates one value in a device's Modbus tables and says how
// its register words become a number: the words are combined in WordOrder,
// each word's two bytes in ByteOrder, read as Type, then multiplied by
// Scale and added Offset (value = raw·Scale + Offset; a write inverts it
// and rounds to the nearest raw integer). A Unit, when set, is the unit of
// that value; ingest converts it to the property's (or, for a write, the
// argument's to it).
//
// Parse fills in the defaults: Type u16 on registers and bool on coils and
// discrete inputs; Scale 1, ByteOrder big, and WordOrder high-first on
// values of two or four registers.
type ModbusPoint struct {
	Table     string  `json:"table"`
	Address   int     `json:"address"`
	Type      string  `json:"type,omitempty"`
	Scale     float64 `json:"scale,omitempty"`
	Offset    float64 `json:"offset,omitempty"`
	ByteOrder string  `json:"byteOrder,omitempty"`
	WordOrder string  `json:"wordOrder,omitempty"`
	Unit      string  `json:"unit,omitempty"`
}

// Modbus tables.
const (
	ModbusHolding  = "holding"  // holding registers: read (03), write (06, 16)
	ModbusInput    = "input"    // input registers: read (04)
	ModbusCoil     = "coil"     // coils: read (01), write (05)
	ModbusDiscrete = "discrete" // discrete inputs: read (02)
)

// Modbus value types.
const (
	ModbusU16  = "u16"
	ModbusI16  = "i16"
	ModbusU32  = "u32"
	ModbusI32  = "i32"
	ModbusF32  = "f32" // IEEE 754 binary32
	ModbusF64  = "f64" // IEEE 754 binary64
	ModbusBool = "bool"
)

// Byte orders within a register, and word orders of a value of several
// registers.
const (
	ModbusBigEndian    = "big"    // the high byte first, as Modbus sends a register
	ModbusLittleEndian = "little" // the bytes of each register swapped
	ModbusHighFirst    = "high-first"
	ModbusLowFirst     = "low-first" // the register at Address holds the lowest word
)

// Bounds on a group's poll interval: faster polling than this loads a
// field bus for nothing a thing model is for, and slower is not polling.
const (
	ModbusMinInterval = 100 * time.Millisecond
	ModbusMaxInterval = 24 * time.Hour
)

// ModbusWords is how many registers a value of type t takes (1 for bool,
// which is one bit of a coil or discrete input, or a register that is
// true when not zero); 0 for an unknown type.
func ModbusWords(t string) int {
	switch t {
	case ModbusU16, ModbusI16, ModbusBool:
		return 1
	case ModbusU32, ModbusI32, ModbusF32:
		return 2
	case ModbusF64:
		return 4
	}
	return 0
}

// ModbusRegisterTable reports whether t is a table of 16-bit registers.
func ModbusRegisterTable(t string) bool { return t == ModbusHolding || t == ModbusInput }

// ModbusWritable reports whether t is a table a master can write.
func ModbusWritable(t string) bool { return t == ModbusHolding || t == ModbusCoil }

func modbusTable(t string) bool {
	return ModbusRegisterTable(t) || t == ModbusCoil || t == ModbusDiscrete
}

func modbusNumeric(t string) bool { return t != ModbusBool && ModbusWords(t) > 0 }

// ModbusRange is the raw range of a numeric type's integers; ok is false
// for floats and bool.
func ModbusRange(t string) (lo, hi float64, ok bool) {
	switch t {
	case ModbusU16:
		return 0, math.MaxUint16, true
	case ModbusI16:
		return math.MinInt16, math.MaxInt16, true
	case ModbusU32:
		return 0, math.MaxUint32, true
	case ModbusI32:
		return math.MinInt32, math.MaxInt32, true
	}
	return 0, 0, false
}

// fill makes the point's defaults explicit (see ModbusPoint).
func (p *ModbusPoint) fill() {
	if p.Type == "" {
		switch {
		case ModbusRegisterTable(p.Table):
			p.Type = ModbusU16
		case modbusTable(p.Table):
			p.Type = ModbusBool
		}
	}
	if !modbusNumeric(p.Type) || !ModbusRegisterTable(p.Table) {
		return
	}
	if p.Scale == 0 {
		p.Scale = 1
	}
	if p.ByteOrder == "" {
		p.ByteOrder = ModbusBigEndian
	}
	if p.WordOrder == "" && ModbusWords(p.Type) > 1 {
		p.WordOrder = ModbusHighFirst
	}
}

func (mb *ModbusMapping) fillDefaults() {
	for _, g := range mb.Groups {
		if g == nil {
			continue
		}
		for _, r := range g.Registers {
			if r != nil {
				r.fill()
			}
		}
	}
	for _, w := range mb.Actions {
		if w != nil {
			w.fill()
		}
	}
	if len(mb.Groups) == 0 {
		mb.Groups = nil
	}
	if len(mb.Actions) == 0 {
		mb.Actions = nil
	}
}

func (mb *ModbusMapping) clone() *ModbusMapping {
	if mb == nil {
		return nil
	}
	n := &ModbusMapping{Actions: cloneMap(mb.Actions, func(w *ModbusWrite) *ModbusWrite { x := *w; return &x })}
	if mb.Groups != nil {
		n.Groups = make([]*ModbusGroup, len(mb.Groups))
		for i, g := range mb.Groups {
			if g == nil {
				continue
			}
			h := *g
			if g.Registers != nil {
				h.Registers = make([]*ModbusRegister, len(g.Registers))
				for j, r := range g.Registers {
					if r != nil {
						x := *r
						h.Registers[j] = &x
					}
				}
			}
			n.Groups[i] = &h
		}
	}
	return n
}

func decodeModbus(c *checker, path string, n *node) *ModbusMapping {
	mb := &ModbusMapping{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "groups":
			if v.kind != kindArray {
				c.add(kp, "must be an array, not %s", v.kind)
				return
			}
			mb.Groups = make([]*ModbusGroup, 0, len(v.elems))
			for i, e := range v.elems {
				mb.Groups = append(mb.Groups, decodeModbusGroup(c, index(kp, i), e))
			}
		case "actions":
			mb.Actions = make(map[string]*ModbusWrite)
			members(c, kp, v, func(name, p string, v *node) {
				mb.Actions[name] = decodeModbusWrite(c, p, v)
			})
		default:
			unknown(c, kp)
		}
	})
	if !ok {
		return nil
	}
	return mb
}

func decodeModbusGroup(c *checker, path string, n *node) *ModbusGroup {
	g := &ModbusGroup{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "interval":
			g.Interval = str(c, kp, v)
		case "registers":
			if v.kind != kindArray {
				c.add(kp, "must be an array, not %s", v.kind)
				return
			}
			g.Registers = make([]*ModbusRegister, 0, len(v.elems))
			for i, e := range v.elems {
				r := &ModbusRegister{}
				rp := index(kp, i)
				if !members(c, rp, e, func(k, kp string, v *node) {
					if k == "property" {
						r.Property = str(c, kp, v)
						return
					}
					decodeModbusPointField(c, &r.ModbusPoint, k, kp, v)
				}) {
					r = nil
				}
				g.Registers = append(g.Registers, r)
			}
		default:
			unknown(c, kp)
		}
	})
	if !ok {
		return nil
	}
	return g
}

func decodeModbusWrite(c *checker, path string, n *node) *ModbusWrite {
	w := &ModbusWrite{}
	ok := members(c, path, n, func(k, kp string, v *node) {
		switch k {
		case "argument":
			w.Argument = str(c, kp, v)
		case "value":
			switch v.kind {
			case kindBool:
				w.Value = v.b
			case kindNumber:
				if f := number(c, kp, v); f != nil {
					w.Value = *f
				}
			default:
				c.add(kp, "must be a number or a boolean, not %s", v.kind)
			}
		default:
			decodeModbusPointField(c, &w.ModbusPoint, k, kp, v)
		}
	})
	if !ok {
		return nil
	}
	return w
}

// decodeModbusPointField decodes one member of a point. Members that the
// struct cannot tell from their default (a scale of 0, an empty string) are
// named here, where the document still shows they were given.
func decodeModbusPointField(c *checker, p *ModbusPoint, k, path string, v *node) {
	nonEmpty := func(s string) string {
		if v.kind == kindString && s == "" {
			c.add(path, "must not be empty")
		}
		return s
	}
	switch k {
	case "table":
		p.Table = str(c, path, v)
	case "address":
		f := number(c, path, v)
		switch {
		case f == nil:
		case *f != math.Trunc(*f):
			c.add(path, "%v is not an integer", *f)
		default:
			// Out of range is validate's to report; clamping keeps the
			// conversion defined.
			p.Address = int(max(min(*f, 1<<31-1), -1<<31))
		}
	case "type":
		p.Type = nonEmpty(str(c, path, v))
	case "scale":
		if f := number(c, path, v); f != nil {
			if *f == 0 {
				c.add(path, "must not be 0")
			}
			p.Scale = *f
		}
	case "offset":
		if f := number(c, path, v); f != nil {
			p.Offset = *f
		}
	case "byteOrder":
		p.ByteOrder = nonEmpty(str(c, path, v))
	case "wordOrder":
		p.WordOrder = nonEmpty(str(c, path, v))
	case "unit":
		p.Unit = nonEmpty(str(c, path, v))
	default:
		unknown(c, path)
	}
}

func (mb *ModbusMapping) validate(c *checker, m *Model) {
	const path = "$.mapping.modbus"
	if len(mb.Groups) == 0 && len(mb.Actions) == 0 {
		c.add(path, "a Modbus mapping needs groups to poll or actions to write")
	}
	mapped := make(map[string]string) // property → path of its first register
	for i, g := range mb.Groups {
		gp := index(path+".groups", i)
		if g == nil {
			c.add(gp, "must not be null")
			continue
		}
		switch d, err := time.ParseDuration(g.Interval); {
		case g.Interval == "":
			c.add(gp+".interval", "is required")
		case err != nil:
			c.add(gp+".interval", "%q is not a duration such as \"1s\"", g.Interval)
		case d < ModbusMinInterval || d > ModbusMaxInterval:
			c.add(gp+".interval", "%v is outside %v to %v", d, ModbusMinInterval, ModbusMaxInterval)
		}
		if len(g.Registers) == 0 {
			c.add(gp+".registers", "a group needs at least one register")
		}
		for j, r := range g.Registers {
			rp := index(gp+".registers", j)
			if r == nil {
				c.add(rp, "must not be null")
				continue
			}
			prop := m.Properties[r.Property]
			switch {
			case r.Property == "":
				c.add(rp+".property", "is required")
			case prop == nil:
				c.add(rp+".property", "%q is not a property of the model", r.Property)
			case mapped[r.Property] != "":
				c.add(rp+".property", "%q is mapped already, at %s", r.Property, mapped[r.Property])
			default:
				mapped[r.Property] = rp
			}
			var s *Schema
			if prop != nil {
				s = &prop.Schema
			}
			r.ModbusPoint.validate(c, rp, s, "property "+r.Property, false)
		}
		checkOverlaps(c, gp, g.Registers)
	}
	for _, name := range sortedKeys(mb.Actions) {
		ap := child(path+".actions", name)
		w := mb.Actions[name]
		a, declared := m.Actions[name]
		switch {
		case !declared:
			c.add(ap, "%q is not an action of the model", name)
			continue
		case w == nil:
			c.add(ap, "must not be null")
			continue
		}
		if !ModbusWritable(w.Table) && modbusTable(w.Table) {
			c.add(ap+".table", "%s is read-only: an action writes a holding register or a coil", w.Table)
		}
		var arg *Schema
		switch {
		case w.Argument != "" && w.Value != nil:
			c.add(ap, "has both an argument and a value: a write takes one")
		case w.Argument != "":
			if a != nil {
				arg = a.Input[w.Argument]
			}
			if arg == nil {
				c.add(ap+".argument", "%q is not an argument of action %s", w.Argument, name)
			}
		case w.Value == nil:
			c.add(ap, "needs an argument of the action, or a value to write")
		}
		if a != nil {
			for _, in := range sortedKeys(a.Input) {
				if in != w.Argument {
					c.add(ap, "action %s takes argument %q, which the mapping does not write: an action is one write", name, in)
					break
				}
			}
		}
		w.ModbusPoint.validate(c, ap, arg, "argument "+w.Argument, true)
		// An argument's declared bounds must fit the register; other
		// values fail at run time, each command with its reason. With a
		// unit, the bounds convert first, which is ingest's to know.
		if arg != nil && w.Unit == "" && modbusNumeric(w.typ()) {
			for _, b := range []struct {
				name string
				v    *float64
			}{{"minimum", arg.Minimum}, {"maximum", arg.Maximum}} {
				if b.v != nil {
					w.checkRaw(c, ap+".argument", *b.v, "the argument's "+b.name+" ")
				}
			}
		}
		if w.Value != nil {
			w.checkValue(c, ap+".value")
		}
	}
}

// validate checks a point and, when s is not nil, that its value fits s
// (what, e.g. "property temperature", names s in messages): a value read
// into s, or written from s when write.
func (p *ModbusPoint) validate(c *checker, path string, s *Schema, what string, write bool) {
	switch {
	case p.Table == "":
		c.add(path+".table", "is required")
	case !modbusTable(p.Table):
		c.add(path+".table", "%q is not one of holding, input, coil, discrete", p.Table)
	}
	typ := p.typ() // a model built in code may leave the default implicit
	words := ModbusWords(typ)
	switch {
	case words == 0:
		c.add(path+".type", "%q is not one of u16, i16, u32, i32, f32, f64, bool", typ)
	case modbusTable(p.Table) && !ModbusRegisterTable(p.Table) && typ != ModbusBool:
		c.add(path+".type", "a %s holds one bit: its type is bool, not %s", p.Table, typ)
	}
	if p.Address < 0 || p.Address > math.MaxUint16 {
		c.add(path+".address", "%d is outside 0 to 65535", p.Address)
	} else if words > 0 && p.Address+words-1 > math.MaxUint16 {
		c.add(path+".address", "a %s at %d ends past register 65535", typ, p.Address)
	}
	numeric := modbusNumeric(typ)
	switch {
	case math.IsInf(p.Scale, 0) || math.IsNaN(p.Scale):
		c.add(path+".scale", "must be finite")
	case p.Scale != 0 && !numeric && words > 0:
		c.add(path+".scale", "scale applies to numbers, not to %s", typ)
	}
	if math.IsInf(p.Offset, 0) || math.IsNaN(p.Offset) {
		c.add(path+".offset", "must be finite")
	} else if !numeric && p.Offset != 0 && words > 0 {
		c.add(path+".offset", "offset applies to numbers, not to %s", typ)
	}
	switch {
	case p.ByteOrder == "":
	case p.ByteOrder != ModbusBigEndian && p.ByteOrder != ModbusLittleEndian:
		c.add(path+".byteOrder", "%q is not big or little", p.ByteOrder)
	case words > 0 && (!numeric || !ModbusRegisterTable(p.Table)):
		c.add(path+".byteOrder", "byte order applies to numbers in registers, not to a %s %s", typ, p.Table)
	}
	switch {
	case p.WordOrder == "":
	case p.WordOrder != ModbusHighFirst && p.WordOrder != ModbusLowFirst:
		c.add(path+".wordOrder", "%q is not high-first or low-first", p.WordOrder)
	case words == 1:
		c.add(path+".wordOrder", "word order applies to values of several registers, not to %s", typ)
	}
	if p.Unit != "" {
		checkText(c, path+".unit", p.Unit)
		if len(p.Unit) > 32 {
			c.add(path+".unit", "longer than 32 bytes")
		} else if !numeric && words > 0 {
			c.add(path+".unit", "a unit applies to numbers, not to %s", typ)
		}
		// Whether it converts to the property's unit is ingest's to say
		// (ingest.CheckMapping): the conversion table lives there.
	}
	if s == nil || words == 0 {
		return
	}
	switch {
	case typ == ModbusBool && s.Type != TypeBoolean:
		c.add(path+".type", "bool does not fit %s, which is %s", what, article(s.Type))
	case numeric && s.Type != TypeNumber && s.Type != TypeInteger:
		c.add(path+".type", "%s does not fit %s, which is %s", typ, what, article(s.Type))
	case write:
		// Any number is written: the raw value is rounded.
	case numeric && s.Type == TypeInteger && (typ == ModbusF32 || typ == ModbusF64):
		c.add(path+".type", "%s gives fractions, but %s is an integer", typ, what)
	case numeric && s.Type == TypeInteger && (!whole(p.Scale) || !whole(p.Offset)):
		c.add(path+".scale", "scale %v and offset %v give fractions, but %s is an integer", p.scale(), p.Offset, what)
	}
}

// checkValue checks a write's constant against the point's type.
func (w *ModbusWrite) checkValue(c *checker, path string) {
	typ := w.typ()
	switch v := w.Value.(type) {
	case bool:
		if typ != ModbusBool {
			c.add(path, "a boolean does not fit %s", typ)
		}
	case float64:
		if typ == ModbusBool {
			c.add(path, "a number does not fit bool")
			return
		}
		w.checkRaw(c, path, v, "")
	default:
		c.add(path, "must be a number or a boolean")
	}
}

// checkRaw reports an engineering value v whose raw value does not fit the
// point's integer type (what names a bound it came from, or "").
func (p *ModbusPoint) checkRaw(c *checker, path string, v float64, what string) {
	typ := p.typ()
	lo, hi, ok := ModbusRange(typ)
	if !ok {
		return
	}
	if raw := math.Round((v - p.Offset) / p.scale()); raw < lo || raw > hi {
		c.add(path, "%s%v is %v raw, outside %s's %v to %v", what, v, raw, typ, lo, hi)
	}
}

// typ is the point's type with the default filled in.
func (p *ModbusPoint) typ() string {
	switch {
	case p.Type != "":
		return p.Type
	case modbusTable(p.Table) && !ModbusRegisterTable(p.Table):
		return ModbusBool
	}
	return ModbusU16
}

func (p *ModbusPoint) scale() float64 {
	if p.Scale == 0 {
		return 1
	}
	return p.Scale
}

func whole(f float64) bool { return f == math.Trunc(f) }

func article(t string) string {
	if t == "" {
		return "untyped"
	}
	if strings.ContainsRune("aeiou", rune(t[0])) {
		return "an " + t
	}
	return "a " + t
}

// checkOverlaps reports a register of a group that shares a register or a
// bit with another of the same table.
func checkOverlaps(c *checker, gp string, regs []*ModbusRegister) {
	type span struct{ lo, hi, i int }
	byTable := map[string][]span{}
	for i, r := range regs {
		if r == nil || !modbusTable(r.Table) {
			continue
		}
		n := 1
		if ModbusRegisterTable(r.Table) {
			typ := r.Type
			if typ == "" {
				typ = ModbusU16
			}
			n = max(ModbusWords(typ), 1)
		}
		byTable[r.Table] = append(byTable[r.Table], span{r.Address, r.Address + n - 1, i})
	}
	for _, t := range sortedKeys(byTable) {
		spans := byTable[t]
		slices.SortStableFunc(spans, func(a, b span) int { return a.lo - b.lo })
		reach := spans[0] // the span reaching furthest so far
		for _, cur := range spans[1:] {
			if cur.lo <= reach.hi {
				first, second := min(reach.i, cur.i), max(reach.i, cur.i)
				c.add(index(gp+".registers", second)+".address", "overlaps registers[%d] (%s %d to %d)", first, t, reach.lo, reach.hi)
			}
			if cur.hi > reach.hi {
				reach = cur
			}
		}
	}
}
