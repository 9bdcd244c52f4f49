package loop

import (
	"encoding/json"
	"errors"
	"io/fs"
	"testing"

	"github.com/wanwu-iot/wanwu/examples/loops"
	"github.com/wanwu-iot/wanwu/examples/models"
	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// FuzzDefinition: any document is parsed and compiled against the CNC
// model without a panic; what is refused is refused with problems that
// each have a path, and what is accepted compiles again the same.
func FuzzDefinition(f *testing.F) {
	files, _ := fs.Glob(loops.FS, "*.yaml")
	for _, name := range files {
		b, _ := loops.FS.ReadFile(name)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"x","on":{"model":"demo:cnc-spindle"},"perceive":{"a":{"property":"vibRms","fn":"last"}},"decide":{"when":"a > 1.0"},"act":{"alarm":{"name":"n","severity":"low"}}}`))
	f.Add([]byte("id: x\non: {model: demo:cnc-spindle}\nperceive: {a: {property: vibRms, fn: last}, b: {property: vibPeak, fn: last, optional: true}}\ndecide: {when: \"score.?anomaly.orValue(0.0) == 1.0\", model: {id: pca8, version: 2, features: {x: a, y: b}}}\nact: {alarm: {name: n, severity: low}}\n"))
	f.Add([]byte("id: x\non: {model: demo:cnc-spindle}\nperceive: {a: {property: vibRms, fn: last}}\ndecide: {when: a > 1.0, model: {id: '', version: -1, features: {}}}\nact: {alarm: {name: n, severity: low}}\n"))
	f.Add([]byte("id: x\nperceive: [1, 2]\n"))
	f.Add([]byte("id: &a [*a]\n"))
	f.Add([]byte("guard: {bounds: {feedRate: [1]}}\n"))
	doc, _ := models.FS.ReadFile("cnc-spindle.model.json")
	m, err := thingmodel.Parse(doc)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			var p Problems
			if !errors.As(err, &p) || len(p) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal without problems: %v", err)
			}
			for _, q := range p {
				if q.Path == "" || q.Path[0] != '$' {
					t.Fatalf("problem without a path: %+v", q)
				}
			}
			return
		}
		c, err := Compile(d, m, nil)
		if err != nil {
			var p Problems
			if !errors.As(err, &p) || len(p) == 0 {
				t.Fatalf("compile refusal without problems: %v", err)
			}
			return
		}
		b, err := json.Marshal(c.Def)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Parse(b)
		if err != nil {
			t.Fatalf("an accepted definition does not parse again: %v\n%s", err, b)
		}
		if _, err := Compile(d2, m, nil); err != nil {
			t.Fatalf("an accepted definition does not compile again: %v\n%s", err, b)
		}
	})
}

// FuzzBundle: any bytes given to the edge as a bundle are decoded or
// refused with ErrInvalid, never a panic.
func FuzzBundle(f *testing.F) {
	f.Add([]byte(`{"format":"wanwu.loops/v1","edge":"acme:edge-1","loops":[],"kills":{"loops":{},"sites":{}},"bypasses":[],"digest":"x"}`))
	f.Add([]byte(`{"format":"wanwu.loops/v1","edge":"acme:edge-1","loops":[{"key":"acme:a","tenant":"acme","mode":"active","definition":{"id":"a","tenant":"acme"}}]}`))
	f.Add([]byte(`{"format":"wanwu.loops/v1","edge":"acme:edge-1","loops":[null]}`))
	f.Add([]byte(`{"format":"other"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBundle(data, "acme:edge-1")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal not ErrInvalid: %v", err)
			}
			return
		}
		if b.Edge != "acme:edge-1" || b.Kills.Loops == nil || b.Kills.Sites == nil {
			t.Fatalf("accepted %+v", b)
		}
		for _, info := range b.Loops {
			if info == nil || info.Def == nil || info.Key != Key(info.Tenant, info.Def.ID) {
				t.Fatalf("accepted a loop that does not match its key: %+v", info)
			}
		}
	})
}
