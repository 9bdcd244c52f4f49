package api

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func TestMLParseUpload(t *testing.T) {
	for _, tc := range []struct {
		name, body, field string
	}{
		{"ok", `{"meta": {"id": "m"}, "onnx": "AQID"}`, ""},
		{"empty", ``, "body"},
		{"not an object", `[1]`, ""},
		{"no meta", `{"onnx": "AQID"}`, "meta"},
		{"meta null", `{"meta": null, "onnx": "AQID"}`, "meta"},
		{"meta a string", `{"meta": "x", "onnx": "AQID"}`, "meta"},
		{"no onnx", `{"meta": {}}`, "onnx"},
		{"onnx not base64", `{"meta": {}, "onnx": "%%%"}`, "onnx"},
		{"onnx a number", `{"meta": {}, "onnx": 3}`, "onnx"},
		{"unknown field", `{"meta": {}, "onnx": "AQID", "colour": 1}`, "colour"},
		{"trailing", `{"meta": {}, "onnx": "AQID"} {}`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta, onnx, err := parseMLUpload([]byte(tc.body))
			if tc.name == "ok" {
				if err != nil || string(meta) != `{"id": "m"}` || !bytes.Equal(onnx, []byte{1, 2, 3}) {
					t.Fatalf("meta %s onnx %v, %v", meta, onnx, err)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("err = %v, want a 400", err)
			}
			if tc.field != "" && ae.Field != tc.field {
				t.Fatalf("field %q (%v), want %q", ae.Field, err, tc.field)
			}
		})
	}
}

// FuzzMLParseUpload: any body is either refused with a 400 that names a
// field, or gives a Meta that is a JSON object and some ONNX bytes.
func FuzzMLParseUpload(f *testing.F) {
	for _, s := range []string{
		`{"meta": {"id": "m"}, "onnx": "AQID"}`, `{"meta": {}, "onnx": ""}`, `{"meta": null}`, `{"onnx": "===="}`,
		`{"meta": {"a": [1, {"b": null}]}, "onnx": "` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 40)) + `"}`,
		`{"meta": {}, "onnx": "AQID"}x`, `{"meta": 1e999}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		meta, onnx, err := parseMLUpload(body)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Field == "" {
				t.Fatalf("err = %#v, want a 400 naming a field", err)
			}
			return
		}
		if len(onnx) == 0 || len(meta) == 0 || bytes.TrimSpace(meta)[0] != '{' {
			t.Fatalf("accepted meta %q onnx %d bytes", meta, len(onnx))
		}
	})
}
