package netprofile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// A profile file is YAML: a mapping whose one key, profiles, lists
// profiles with the field names of Profile's yaml tags, durations as Go
// duration strings ("1.5s", "250ms", "24h"):
//
//	profiles:
//	  - name: nb-iot-rural
//	    base: nb-iot          # start from a built-in profile, or one above
//	    title: NB-IoT at the edge of coverage
//	    latency: {base: 3s}   # only jitter_median and jitter_max inherited
//	    loss: {good: 0.05}
//	    price_per_mb: 0.6
//
// docs/NETWORKS.md describes each field.

// Parse reads a profile file and returns its profiles in the file's order,
// each validated. It refuses the whole file at the first problem, with a
// *FieldError that names the line and the field's path
// ("profiles[2].loss.good: must be in [0,1]"): a YAML syntax error, a key
// the format does not have, a value of the wrong type, a duplicate key or
// profile name, a base that is neither built in nor defined above, a
// profile that Validate refuses once its base is applied.
//
// A profile with a base starts as a copy of it and takes each field the
// file gives, nested ones one by one (loss: {good: 0.05} keeps the base's
// other loss fields). Bases are looked up among the file's profiles above
// first, then among the built-in ones, so a file may redefine a built-in
// name and build on its own definition.
func Parse(data []byte) ([]Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Field: "profiles", Reason: "missing: the file is empty"}
		}
		return nil, fmt.Errorf("netprofile: %w", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("netprofile: %w", err)
		}
		return nil, &FieldError{Line: more.Line, Reason: "a second YAML document: a profile file has one"}
	}
	root := deref(&doc)
	if len(root.Content) == 1 && root.Kind == yaml.DocumentNode {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{Line: root.Line, Reason: "must be a mapping with the key profiles"}
	}
	keys, err := mapping(root, "")
	if err != nil {
		return nil, err
	}
	var list *yaml.Node
	for _, kv := range keys {
		if kv.key != "profiles" {
			return nil, &FieldError{Line: kv.line, Field: kv.key, Reason: "unknown key: a profile file has only profiles"}
		}
		list = kv.value
	}
	if list == nil {
		return nil, &FieldError{Line: root.Line, Field: "profiles", Reason: "missing"}
	}
	if list.Kind != yaml.SequenceNode {
		return nil, &FieldError{Line: list.Line, Field: "profiles", Reason: "must be a list of profiles"}
	}
	var out []Profile
	defined := map[string]int{} // name → index in out
	for i, item := range list.Content {
		at := fmt.Sprintf("profiles[%d]", i)
		p, err := parseProfile(deref(item), at, out, defined)
		if err != nil {
			return nil, err
		}
		defined[p.Name] = len(out)
		out = append(out, p)
	}
	return out, nil
}

// parseProfile reads one entry of profiles; at is its path.
func parseProfile(n *yaml.Node, at string, above []Profile, defined map[string]int) (Profile, error) {
	keys, err := mapping(n, at)
	if err != nil {
		return Profile{}, err
	}
	var p Profile
	lines := map[string]int{"": n.Line} // field path → line, for Validate's errors
	for _, kv := range keys {
		if kv.key != "base" {
			continue
		}
		base, err := str(kv.value, at+".base")
		if err != nil {
			return Profile{}, err
		}
		if i, ok := defined[base]; ok {
			p = above[i]
		} else if b, ok := Lookup(base); ok {
			p = b
		} else {
			return Profile{}, &FieldError{Line: kv.line, Field: at + ".base",
				Reason: fmt.Sprintf("%q is neither a built-in profile (%s) nor one defined above", base, strings.Join(Names(), ", "))}
		}
	}
	d := decoder{lines: lines}
	for _, kv := range keys {
		if kv.key == "base" {
			continue
		}
		if err := d.field(reflect.ValueOf(&p).Elem(), kv, at, ""); err != nil {
			return Profile{}, err
		}
	}
	if _, ok := lines["name"]; !ok {
		return Profile{}, &FieldError{Line: n.Line, Field: at + ".name", Reason: "missing"}
	}
	if i, ok := defined[p.Name]; ok {
		return Profile{}, &FieldError{Line: lines["name"], Field: at + ".name",
			Reason: fmt.Sprintf("%q is already defined by profiles[%d]", p.Name, i)}
	}
	if err := p.Validate(); err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return Profile{}, fmt.Errorf("netprofile: %s: %w", at, err)
		}
		line, ok := lines[fe.Field]
		if !ok {
			line = lines[""]
		}
		return Profile{}, &FieldError{Line: line, Field: at + "." + fe.Field, Reason: fe.Reason}
	}
	return p, nil
}

// keyValue is one entry of a YAML mapping.
type keyValue struct {
	key   string
	line  int
	value *yaml.Node
}

// mapping returns n's entries in order, refusing anything but a mapping
// with distinct string keys; at is n's path.
func mapping(n *yaml.Node, at string) ([]keyValue, error) {
	if n.Kind != yaml.MappingNode {
		return nil, &FieldError{Line: n.Line, Field: at, Reason: "must be a mapping"}
	}
	out := make([]keyValue, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, &FieldError{Line: k.Line, Field: at, Reason: "keys must be strings"}
		}
		for _, seen := range out {
			if seen.key == k.Value {
				return nil, &FieldError{Line: k.Line, Field: join(at, k.Value), Reason: fmt.Sprintf("given twice (first on line %d)", seen.line)}
			}
		}
		out = append(out, keyValue{key: k.Value, line: k.Line, value: deref(n.Content[i+1])})
	}
	return out, nil
}

// decoder sets a profile's fields from YAML nodes by their yaml tags.
type decoder struct {
	lines map[string]int // field path within the profile → line
}

var durationType = reflect.TypeFor[time.Duration]()

// field sets the field of struct v that kv names; at is the profile's path,
// prefix the struct's path within the profile ("" or "loss").
func (d decoder) field(v reflect.Value, kv keyValue, at, prefix string) error {
	t := v.Type()
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != kv.key {
			names = append(names, name)
			continue
		}
		path := join(prefix, name)
		full := at + "." + path
		d.lines[path] = kv.line
		f, n := v.Field(i), kv.value
		switch {
		case f.Kind() == reflect.Struct:
			keys, err := mapping(n, full)
			if err != nil {
				return err
			}
			for _, kv := range keys {
				if err := d.field(f, kv, at, path); err != nil {
					return err
				}
			}
		case f.Type() == durationType:
			s, err := str(n, full)
			if err != nil {
				return &FieldError{Line: n.Line, Field: full, Reason: "must be a duration such as 1.5s or 250ms"}
			}
			dur, err := time.ParseDuration(s)
			if err != nil {
				return &FieldError{Line: n.Line, Field: full, Reason: fmt.Sprintf("%q: must be a duration such as 1.5s or 250ms", s)}
			}
			f.SetInt(int64(dur))
		case f.Kind() == reflect.String:
			s, err := str(n, full)
			if err != nil {
				return err
			}
			f.SetString(s)
		case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
			x, err := integer(n, full)
			if err != nil {
				return err
			}
			if f.OverflowInt(x) {
				return &FieldError{Line: n.Line, Field: full, Reason: "too large"}
			}
			f.SetInt(x)
		case f.Kind() == reflect.Float64:
			var x float64
			if tag := n.ShortTag(); n.Kind != yaml.ScalarNode || (tag != "!!float" && tag != "!!int") || n.Decode(&x) != nil {
				return &FieldError{Line: n.Line, Field: full, Reason: "must be a number"}
			}
			f.SetFloat(x)
		case f.Kind() == reflect.Bool:
			var x bool
			if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&x) != nil {
				return &FieldError{Line: n.Line, Field: full, Reason: "must be true or false"}
			}
			f.SetBool(x)
		default:
			panic("netprofile: no decoding for field " + full) // a new field type needs a case above
		}
		return nil
	}
	if prefix == "" {
		names = append(names, "base")
	}
	return &FieldError{Line: kv.line, Field: at + "." + join(prefix, kv.key), Reason: "unknown field (known: " + strings.Join(names, ", ") + ")"}
}

// str reads a string scalar.
func str(n *yaml.Node, path string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", &FieldError{Line: n.Line, Field: path, Reason: "must be a string"}
	}
	return n.Value, nil
}

// integer reads an integer scalar, or a float with an integral value
// ("1e6" for a rate).
func integer(n *yaml.Node, path string) (int64, error) {
	bad := &FieldError{Line: n.Line, Field: path, Reason: "must be an integer"}
	if n.Kind != yaml.ScalarNode {
		return 0, bad
	}
	switch n.ShortTag() {
	case "!!int":
		var x int64
		if err := n.Decode(&x); err != nil {
			return 0, bad
		}
		return x, nil
	case "!!float":
		var x float64
		if err := n.Decode(&x); err != nil || x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, bad
		}
		return int64(x), nil
	}
	return 0, bad
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
