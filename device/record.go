package device

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is one measurement: a property of the device's thing model, its
// value, and when it was taken.
type Record struct {
	// Name is the property's name in the device's thing model.
	Name string
	// Unit is the SenML unit ("Cel", "m/s2", ...); empty means the model's.
	Unit string
	// Time is when the value was measured; zero means the time of Publish.
	// Every record is sent with its time, so a record sent again after a
	// lost acknowledgement is stored once.
	Time time.Time
	// Value is a number (any Go integer or float type), a bool, a string,
	// or []byte (sent as SenML data, base64url).
	Value any
}

// ErrRecord is wrapped by errors about records that cannot be encoded.
var ErrRecord = errors.New("device: invalid record")

// EncodeSenML encodes records as the SenML JSON pack (RFC 8428) a device
// with the given code sends: the base name "<code>/" on the first record, an
// absolute time in seconds with millisecond precision on every record
// (records without a time get now), then the unit and the value. It is
// what Publish sends; docs/DEVICES.md shows its exact bytes.
func EncodeSenML(code string, now time.Time, records ...Record) ([]byte, error) {
	if len(records) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrRecord)
	}
	b := make([]byte, 0, 64*len(records))
	b = append(b, '[')
	for i, r := range records {
		if r.Name == "" {
			return nil, fmt.Errorf("%w %d: no name", ErrRecord, i)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if i == 0 {
			b = append(b, `"bn":`...)
			b = appendString(b, code+"/")
			b = append(b, ',')
		}
		b = append(b, `"n":`...)
		b = appendString(b, r.Name)
		if r.Unit != "" {
			b = append(b, `,"u":`...)
			b = appendString(b, r.Unit)
		}
		t := r.Time
		if t.IsZero() {
			t = now
		}
		b = append(b, `,"t":`...)
		b = strconv.AppendFloat(b, float64(t.UnixMilli())/1000, 'f', -1, 64)
		var err error
		if b, err = appendValue(b, r.Value); err != nil {
			return nil, fmt.Errorf("%w %d (%s): %v", ErrRecord, i, r.Name, err)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case bool:
		return strconv.AppendBool(append(b, `,"vb":`...), x), nil
	case string:
		if !utf8.ValidString(x) {
			return nil, errors.New("string value is not valid UTF-8")
		}
		return appendString(append(b, `,"vs":`...), x), nil
	case []byte:
		return appendString(append(b, `,"vd":`...), base64.RawURLEncoding.EncodeToString(x)), nil
	case nil:
		return nil, errors.New("no value")
	}
	f, ok := number(v)
	if !ok {
		return nil, fmt.Errorf("value of type %T (want a number, bool, string or []byte)", v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errors.New("value is not a finite number")
	}
	return strconv.AppendFloat(append(b, `,"v":`...), f, 'g', -1, 64), nil
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a valid UTF-8 string always marshals
	return append(b, q...)
}
