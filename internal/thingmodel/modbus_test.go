package thingmodel

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// modbusHead is a model whose properties and actions the Modbus cases map.
const modbusHead = `"id":"acme:drive","version":"1.0.0",
	"properties":{"temperature":{"type":"number","unit":"Cel"},"energy":{"type":"number","unit":"kWh"},
		"count":{"type":"integer"},"running":{"type":"boolean"},"mode":{"type":"string"},
		"speed":{"type":"integer","unit":"1/min"}},
	"actions":{"setSpeed":{"input":{"rpm":{"type":"integer","minimum":0,"maximum":3000}}},
		"stop":{},"setMode":{"input":{"a":{"type":"number"},"b":{"type":"number"}}},
		"enable":{"input":{"on":{"type":"boolean"}}}}`

func TestParseModbusMapping(t *testing.T) {
	doc := `{` + modbusHead + `,"mapping":{"modbus":{
		"groups":[{"interval":"1s","registers":[
			{"property":"temperature","table":"holding","address":100,"type":"i16","scale":0.1,"offset":-40},
			{"property":"energy","table":"input","address":200,"type":"u32","wordOrder":"low-first","byteOrder":"little","unit":"Wh"},
			{"property":"running","table":"coil","address":5}]},
			{"interval":"250ms","registers":[{"property":"count","table":"input","address":0}]}],
		"actions":{"setSpeed":{"argument":"rpm","table":"holding","address":300,"type":"u16"},
			"stop":{"table":"coil","address":7,"value":true}}}}}`
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	mb := m.Mapping.Modbus
	if m.Mapping.Properties != nil || m.Mapping.HasExpressions() {
		t.Errorf("a Modbus-only mapping has expressions: %+v", m.Mapping.Properties)
	}
	// Parse fills the defaults in, so that the canonical form says what
	// the driver does.
	want := []*ModbusRegister{
		{"temperature", ModbusPoint{Table: "holding", Address: 100, Type: "i16", Scale: 0.1, Offset: -40, ByteOrder: "big"}},
		{"energy", ModbusPoint{Table: "input", Address: 200, Type: "u32", Scale: 1, ByteOrder: "little", WordOrder: "low-first", Unit: "Wh"}},
		{"running", ModbusPoint{Table: "coil", Address: 5, Type: "bool"}},
	}
	if !reflect.DeepEqual(mb.Groups[0].Registers, want) {
		t.Errorf("registers:\n got %+v\nwant %+v", deref(mb.Groups[0].Registers), deref(want))
	}
	if got := mb.Groups[1].Registers[0].ModbusPoint; got.Type != "u16" || got.Scale != 1 || got.WordOrder != "" {
		t.Errorf("defaults of a u16: %+v", got)
	}
	if w := mb.Actions["stop"]; w.Value != true || w.Type != "bool" {
		t.Errorf("stop = %+v", w)
	}
	canon, err := m.JSON()
	if err != nil {
		t.Fatal(err)
	}
	const wantCanon = `"mapping":{"modbus":{"groups":[{"interval":"1s","registers":[` +
		`{"property":"temperature","table":"holding","address":100,"type":"i16","scale":0.1,"offset":-40,"byteOrder":"big"},` +
		`{"property":"energy","table":"input","address":200,"type":"u32","scale":1,"byteOrder":"little","wordOrder":"low-first","unit":"Wh"},` +
		`{"property":"running","table":"coil","address":5,"type":"bool"}]},` +
		`{"interval":"250ms","registers":[{"property":"count","table":"input","address":0,"type":"u16","scale":1,"byteOrder":"big"}]}],` +
		`"actions":{"setSpeed":{"argument":"rpm","table":"holding","address":300,"type":"u16","scale":1,"byteOrder":"big"},` +
		`"stop":{"value":true,"table":"coil","address":7,"type":"bool"}}}}`
	if !strings.Contains(string(canon), wantCanon) {
		t.Errorf("canonical form\n%s\nlacks\n%s", canon, wantCanon)
	}
	m2, err := Parse(canon)
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("round trip: %v", err)
	}
	// JSON normalizes a copy: a model built in code keeps its implicit
	// defaults, and a clone shares nothing with the original.
	c := m.clone()
	c.Mapping.Modbus.Groups[0].Registers[0].Address = 9
	c.Mapping.Modbus.Actions["stop"].Address = 9
	if mb.Groups[0].Registers[0].Address != 100 || mb.Actions["stop"].Address != 7 {
		t.Error("clone shares the Modbus mapping")
	}
	built := &Model{ID: "acme:x", Version: "1.0.0",
		Properties: map[string]*Property{"t": {Schema: Schema{Type: TypeNumber}}},
		Mapping:    &Mapping{Modbus: &ModbusMapping{Groups: []*ModbusGroup{{Interval: "1s", Registers: []*ModbusRegister{{Property: "t", ModbusPoint: ModbusPoint{Table: "input"}}}}}}}}
	if err := built.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := built.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `{"property":"t","table":"input","address":0,"type":"u16","scale":1,"byteOrder":"big"}`) ||
		built.Mapping.Modbus.Groups[0].Registers[0].Type != "" {
		t.Errorf("JSON of a model built in code: %s; its register now %+v", b, built.Mapping.Modbus.Groups[0].Registers[0])
	}
	// Expressions and a Modbus mapping live side by side.
	both := `{` + modbusHead + `,"mapping":{"properties":{"mode":"payload.m"},"modbus":{"groups":[{"interval":"1s","registers":[{"property":"count","table":"input","address":0}]}]}}}`
	if m, err := Parse([]byte(both)); err != nil || !m.Mapping.HasExpressions() {
		t.Errorf("both kinds of mapping: %v", err)
	}
}

func deref(rs []*ModbusRegister) []ModbusRegister {
	var out []ModbusRegister
	for _, r := range rs {
		out = append(out, *r)
	}
	return out
}

func TestParseModbusMappingInvalid(t *testing.T) {
	const g = `$.mapping.modbus.groups[0]`
	const r0 = g + `.registers[0]`
	// group wraps registers into one group polled every second.
	group := func(regs string) string {
		return `{"modbus":{"groups":[{"interval":"1s","registers":[` + regs + `]}]}}`
	}
	tests := []struct {
		name, mapping string
		paths         []string
	}{
		{"not an object", `{"modbus":[]}`, []string{"$.mapping.modbus"}},
		{"null", `{"modbus":null}`, []string{"$.mapping.modbus"}},
		{"empty", `{"modbus":{}}`, []string{"$.mapping.modbus"}},
		{"empty expressions beside it", `{"properties":{},"modbus":{"groups":[{"interval":"1s","registers":[{"property":"count","table":"input","address":0}]}]}}`,
			[]string{"$.mapping.properties"}},
		{"time without expressions", `{"time":"payload.ts","modbus":{"groups":[{"interval":"1s","registers":[{"property":"count","table":"input","address":0}]}]}}`,
			[]string{"$.mapping.time"}},
		{"unknown member", `{"modbus":{"groups":[],"poll":1}}`, []string{"$.mapping.modbus", "$.mapping.modbus.poll"}},
		{"groups not an array", `{"modbus":{"groups":{}}}`, []string{"$.mapping.modbus", "$.mapping.modbus.groups"}},
		{"null group", `{"modbus":{"groups":[null]}}`, []string{g}},
		{"no interval, no registers", `{"modbus":{"groups":[{}]}}`, []string{g + ".interval", g + ".registers"}},
		{"bad interval", `{"modbus":{"groups":[{"interval":"often","registers":[{"property":"count","table":"input","address":0}]}]}}`,
			[]string{g + ".interval"}},
		{"interval too short", `{"modbus":{"groups":[{"interval":"10ms","registers":[{"property":"count","table":"input","address":0}]}]}}`,
			[]string{g + ".interval"}},
		{"interval too long", `{"modbus":{"groups":[{"interval":"25h","registers":[{"property":"count","table":"input","address":0}]}]}}`,
			[]string{g + ".interval"}},
		{"unknown group member", `{"modbus":{"groups":[{"interval":"1s","registers":[{"property":"count","table":"input","address":0}],"unit":1}]}}`,
			[]string{g + ".unit"}},
		{"unknown register member", group(`{"property":"count","table":"input","address":0,"bit":3}`), []string{r0 + ".bit"}},
		{"missing property and table", group(`{"address":0}`), []string{r0 + ".property", r0 + ".table"}},
		{"undeclared property", group(`{"property":"colour","table":"input","address":0}`), []string{r0 + ".property"}},
		{"unknown table", group(`{"property":"count","table":"register","address":0}`), []string{r0 + ".table"}},
		{"unknown type", group(`{"property":"count","table":"input","address":0,"type":"u8"}`), []string{r0 + ".type"}},
		{"empty type", group(`{"property":"count","table":"input","address":0,"type":""}`), []string{r0 + ".type"}},
		{"number in a coil", group(`{"property":"count","table":"coil","address":0,"type":"u16"}`), []string{r0 + ".type"}},
		{"bool for a number", group(`{"property":"temperature","table":"input","address":0,"type":"bool"}`), []string{r0 + ".type"}},
		{"number for a bool", group(`{"property":"running","table":"input","address":0}`), []string{r0 + ".type"}},
		{"string property", group(`{"property":"mode","table":"input","address":0}`), []string{r0 + ".type"}},
		{"float for an integer", group(`{"property":"count","table":"input","address":0,"type":"f32"}`), []string{r0 + ".type"}},
		{"fraction for an integer", group(`{"property":"count","table":"input","address":0,"scale":0.5}`), []string{r0 + ".scale"}},
		{"negative address", group(`{"property":"count","table":"input","address":-1}`), []string{r0 + ".address"}},
		{"address too high", group(`{"property":"count","table":"input","address":65536}`), []string{r0 + ".address"}},
		{"huge address", group(`{"property":"count","table":"input","address":1e30}`), []string{r0 + ".address"}},
		{"fractional address", group(`{"property":"count","table":"input","address":1.5}`), []string{r0 + ".address"}},
		{"address as string", group(`{"property":"count","table":"input","address":"1"}`), []string{r0 + ".address"}},
		{"value past the end", group(`{"property":"energy","table":"input","address":65535,"type":"u32"}`), []string{r0 + ".address"}},
		{"u32 at the end fits", group(`{"property":"energy","table":"input","address":65534,"type":"u32"}`), nil},
		{"f64 at the end fits", group(`{"property":"energy","table":"input","address":65532,"type":"f64"}`), nil},
		{"scale 0", group(`{"property":"temperature","table":"input","address":0,"scale":0}`), []string{r0 + ".scale"}},
		{"scale on a bool", group(`{"property":"running","table":"coil","address":0,"scale":2}`), []string{r0 + ".scale"}},
		{"offset on a bool", group(`{"property":"running","table":"coil","address":0,"offset":2}`), []string{r0 + ".offset"}},
		{"bad byte order", group(`{"property":"temperature","table":"input","address":0,"byteOrder":"middle"}`), []string{r0 + ".byteOrder"}},
		{"byte order on a coil", group(`{"property":"running","table":"coil","address":0,"byteOrder":"big"}`), []string{r0 + ".byteOrder"}},
		{"bad word order", group(`{"property":"energy","table":"input","address":0,"type":"u32","wordOrder":"swapped"}`), []string{r0 + ".wordOrder"}},
		{"word order on one register", group(`{"property":"temperature","table":"input","address":0,"wordOrder":"low-first"}`), []string{r0 + ".wordOrder"}},
		{"unit on a bool", group(`{"property":"running","table":"coil","address":0,"unit":"Cel"}`), []string{r0 + ".unit"}},
		{"empty unit", group(`{"property":"temperature","table":"input","address":0,"unit":""}`), []string{r0 + ".unit"}},
		{"overlap", group(`{"property":"energy","table":"input","address":10,"type":"f64"},{"property":"count","table":"input","address":13}`),
			[]string{g + ".registers[1].address"}},
		{"overlap behind a long one", group(`{"property":"energy","table":"holding","address":10,"type":"f64"},` +
			`{"property":"count","table":"holding","address":11},{"property":"temperature","table":"holding","address":12}`),
			[]string{g + ".registers[1].address", g + ".registers[2].address"}},
		{"same address, other tables", group(`{"property":"count","table":"input","address":1},{"property":"temperature","table":"holding","address":1},` +
			`{"property":"running","table":"coil","address":1}`), nil},
		{"adjacent", group(`{"property":"energy","table":"input","address":10,"type":"u32"},{"property":"count","table":"input","address":12}`), nil},
		{"neighbours in three tables", group(`{"property":"running","table":"coil","address":1},{"property":"temperature","table":"holding","address":1},` +
			`{"property":"speed","table":"holding","address":2}`), nil},
		{"property mapped twice", `{"modbus":{"groups":[{"interval":"1s","registers":[{"property":"count","table":"input","address":0}]},` +
			`{"interval":"2s","registers":[{"property":"count","table":"input","address":5}]}]}}`,
			[]string{"$.mapping.modbus.groups[1].registers[0].property"}},
		{"registers not an array", `{"modbus":{"groups":[{"interval":"1s","registers":{}}]}}`, []string{g + ".registers"}},
		{"null register", group(`null`), []string{r0}},

		{"undeclared action", `{"modbus":{"actions":{"explode":{"table":"coil","address":1,"value":true}}}}`,
			[]string{"$.mapping.modbus.actions.explode"}},
		{"null action", `{"modbus":{"actions":{"stop":null}}}`, []string{"$.mapping.modbus.actions.stop"}},
		{"argument not an input", `{"modbus":{"actions":{"setSpeed":{"argument":"speed","table":"holding","address":1}}}}`,
			[]string{"$.mapping.modbus.actions.setSpeed", "$.mapping.modbus.actions.setSpeed.argument"}},
		{"argument and value", `{"modbus":{"actions":{"setSpeed":{"argument":"rpm","value":1,"table":"holding","address":1}}}}`,
			[]string{"$.mapping.modbus.actions.setSpeed"}},
		{"neither argument nor value", `{"modbus":{"actions":{"stop":{"table":"coil","address":1}}}}`,
			[]string{"$.mapping.modbus.actions.stop"}},
		{"an argument left unwritten", `{"modbus":{"actions":{"setMode":{"argument":"a","table":"holding","address":1}}}}`,
			[]string{"$.mapping.modbus.actions.setMode"}},
		{"read-only table", `{"modbus":{"actions":{"setSpeed":{"argument":"rpm","table":"input","address":1}}}}`,
			[]string{"$.mapping.modbus.actions.setSpeed.table"}},
		{"argument type does not fit", `{"modbus":{"actions":{"enable":{"argument":"on","table":"holding","address":1,"type":"u16"}}}}`,
			[]string{"$.mapping.modbus.actions.enable.type"}},
		{"bool argument to a coil", `{"modbus":{"actions":{"enable":{"argument":"on","table":"coil","address":1}}}}`, nil},
		{"bounds past the type", `{"modbus":{"actions":{"setSpeed":{"argument":"rpm","table":"holding","address":1,"type":"i16","scale":0.01}}}}`,
			[]string{"$.mapping.modbus.actions.setSpeed.argument"}},
		{"value does not fit", `{"modbus":{"actions":{"stop":{"table":"holding","address":1,"value":70000}}}}`,
			[]string{"$.mapping.modbus.actions.stop.value"}},
		{"bool value to a register", `{"modbus":{"actions":{"stop":{"table":"holding","address":1,"value":true}}}}`,
			[]string{"$.mapping.modbus.actions.stop.value"}},
		{"number value to a coil", `{"modbus":{"actions":{"stop":{"table":"coil","address":1,"value":1}}}}`,
			[]string{"$.mapping.modbus.actions.stop.value"}},
		{"string value", `{"modbus":{"actions":{"stop":{"table":"coil","address":1,"value":"on"}}}}`,
			[]string{"$.mapping.modbus.actions.stop", "$.mapping.modbus.actions.stop.value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(`{` + modbusHead + `,"mapping":` + tt.mapping + `}`))
			var paths []string
			var ve *ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Problems {
					paths = append(paths, p.Path)
					if p.Message == "" {
						t.Errorf("problem at %s has no message", p.Path)
					}
				}
			} else if err != nil {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if !slices.Equal(paths, tt.paths) {
				t.Fatalf("paths %q, want %q\n%v", paths, tt.paths, err)
			}
		})
	}
}

// TestModbusMessages: a problem says what is wrong in words an author can
// act on.
func TestModbusMessages(t *testing.T) {
	doc := `{` + modbusHead + `,"mapping":{"modbus":{"groups":[{"interval":"1s","registers":[
		{"property":"count","table":"input","address":0,"type":"f32"},
		{"property":"energy","table":"input","address":1,"type":"u32"}]}]}}}`
	_, err := Parse([]byte(doc))
	for _, want := range []string{
		`$.mapping.modbus.groups[0].registers[0].type: f32 gives fractions, but property count is an integer`,
		`$.mapping.modbus.groups[0].registers[1].address: overlaps registers[0] (input 0 to 1)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
