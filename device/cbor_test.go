package device

import (
	"reflect"
	"testing"
	"time"

	"github.com/wanwu-iot/wanwu/internal/senml"
)

// TestSenMLCBOR: the CBOR pack says what the JSON pack says, in fewer bytes.
func TestSenMLCBOR(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		recs []Record
	}{
		{"one number", []Record{{Name: "temperature", Unit: "Cel", Value: 21.5}}},
		{"times and kinds", []Record{
			{Name: "volume", Unit: "m3", Time: now.Add(-time.Hour), Value: 1234.567},
			{Name: "battery", Unit: "%", Time: now.Add(-time.Hour + 250*time.Millisecond), Value: uint8(97)},
			{Name: "valve", Value: "open"},
			{Name: "leak", Value: false},
			{Name: "raw", Value: []byte{0, 1, 2, 255}},
			{Name: "small", Value: float32(0.1)},
			{Name: "big", Value: int64(1) << 40},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js, err := EncodeSenML("acme:m-1", now, tc.recs...)
			if err != nil {
				t.Fatal(err)
			}
			cb, err := EncodeSenMLCBOR("acme:m-1", now, tc.recs...)
			if err != nil {
				t.Fatal(err)
			}
			if len(cb) >= len(js) {
				t.Errorf("CBOR %d bytes, JSON %d", len(cb), len(js))
			}
			pj, err := senml.DecodeJSON(js, senml.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			pc, err := senml.DecodeCBOR(cb, senml.Limits{})
			if err != nil {
				t.Fatalf("the hub's decoder refuses the pack: %v", err)
			}
			rj, err := pj.Resolve(now)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := pc.Resolve(now)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rj, rc) {
				t.Errorf("JSON says %+v\nCBOR says %+v", rj, rc)
			}
		})
	}
	for _, bad := range []any{nil, struct{}{}, "\xff"} {
		if _, err := EncodeSenMLCBOR("acme:m-1", now, Record{Name: "x", Value: bad}); err == nil {
			t.Errorf("value %#v encoded", bad)
		}
	}
}
