package thingmodel

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add(readPump(f))
	f.Add([]byte(`{"id":"a:b","version":"0.0.1-alpha.1"}`))
	f.Add([]byte(`{"id":"a:b","version":"1.0.0","properties":{"t":{"type":"number","unit":"Cel","minimum":-1.5e3,"maximum":0.1}}}`))
	f.Add([]byte(`{"id":"a:b","version":"1.0.0","events":{"e":{"data":{"type":"array","items":{"type":"position"}}}}}`))
	f.Add([]byte(`{"id":"a:b","version":"1.0.0","actions":{"a":{"input":{"x":{"type":"string","enum":["\u00e9","<&>"]}}}}}`))
	f.Add([]byte(`{"id":"a:b","version":"1.0.0","title":"x","title":"y"}`))
	f.Add([]byte(`[[[[{}]]]]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || len(ve.Problems) == 0 {
				t.Fatalf("Parse error %v (%T) is not a ValidationError with problems", err, err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted model fails Validate: %v", err)
		}
		canon, err := m.JSON()
		if err != nil {
			t.Fatalf("JSON of accepted model: %v", err)
		}
		m2, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form rejected: %v\n%s", err, canon)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the model\nin:  %q\nout: %s", data, canon)
		}
		canon2, err := m2.JSON()
		if err != nil || string(canon) != string(canon2) {
			t.Fatalf("canonical form unstable: %v\n%s\n%s", err, canon, canon2)
		}
		if _, err := m.ThingDescription(); err != nil {
			t.Fatalf("ThingDescription of accepted model: %v", err)
		}
	})
}
