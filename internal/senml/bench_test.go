package senml

import (
	"encoding/hex"
	"encoding/json"
	"testing"
)

// benchJSON is a typical small device report: 101 bytes, 3 records.
const benchJSON = `[{"bn":"pump-1:","bt":1.7e9,"n":"temp","u":"Cel","v":23.1},{"n":"rpm","v":1450},{"n":"on","vb":true}]`

// benchCBOR is the same pack in CBOR (55 bytes).
const benchCBOR = "83a5216770756d702d313a221a6553f100006474656d70016343656c02fb403719999999999a" +
	"a2006372706d021905aaa200626f6e04f5"

func BenchmarkDecodeJSON(b *testing.B) {
	in := []byte(benchJSON)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJSONStdlib is the yardstick for BenchmarkDecodeJSON:
// encoding/json into a struct with pointer fields, checking nothing
// (no labels ending in "_", no duplicates, case-insensitive labels).
func BenchmarkDecodeJSONStdlib(b *testing.B) {
	type rec struct {
		BaseName    string   `json:"bn"`
		BaseTime    float64  `json:"bt"`
		BaseUnit    string   `json:"bu"`
		BaseValue   *float64 `json:"bv"`
		BaseSum     *float64 `json:"bs"`
		BaseVersion *int     `json:"bver"`
		Name        string   `json:"n"`
		Unit        string   `json:"u"`
		Value       *float64 `json:"v"`
		StringValue *string  `json:"vs"`
		BoolValue   *bool    `json:"vb"`
		DataValue   *string  `json:"vd"`
		Sum         *float64 `json:"s"`
		Time        float64  `json:"t"`
		UpdateTime  *float64 `json:"ut"`
	}
	in := []byte(benchJSON)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var p []rec
		if err := json.Unmarshal(in, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCBOR(b *testing.B) {
	in, _ := hex.DecodeString(benchCBOR)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCBOR(in, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	p, err := DecodeJSON([]byte(benchJSON), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Resolve(now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	rs := benchResolved(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeJSON(rs, "pump-1:"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeCBOR(b *testing.B) {
	rs := benchResolved(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeCBOR(rs, "pump-1:"); err != nil {
			b.Fatal(err)
		}
	}
}

func benchResolved(b *testing.B) []Resolved {
	p, err := DecodeJSON([]byte(benchJSON), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	rs, err := p.Resolve(now)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}
