package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wanwu-iot/wanwu/internal/thingmodel"
)

// patchFactor is how much larger than a section a patch may be as sent.
const patchFactor = 4

// parsePatch decodes a merge patch: one JSON object, no duplicate member
// names, valid UTF-8, member names non-empty and free of ".", at most
// patchFactor × MaxDocBytes bytes and MaxDepth levels. Numbers become float64.
func parsePatch(data []byte, lim Limits) (map[string]any, error) {
	if max := patchFactor * lim.MaxDocBytes; len(data) > max {
		return nil, fmt.Errorf("%w: patch is %d bytes, the limit is %d (%d × the %d-byte section limit)",
			ErrTooLarge, len(data), max, patchFactor, lim.MaxDocBytes)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: patch is not valid UTF-8", ErrInvalid)
	}
	if d := nesting(data); d > lim.MaxDepth {
		return nil, fmt.Errorf("%w: patch nests %d levels deep, the limit is %d", ErrInvalid, d, lim.MaxDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	p := &parser{dec: dec}
	v, err := p.value("")
	if err != nil {
		return nil, fmt.Errorf("%w: patch: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: patch: data after the JSON object", ErrInvalid)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: patch must be a JSON object, not %s", ErrInvalid, kind(v))
	}
	return obj, nil
}

// nesting returns the deepest nesting of objects and arrays in JSON text
// (valid or not; strings are skipped).
func nesting(data []byte) int {
	depth, max := 0, 0
	inString, escaped := false, false
	for _, b := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			depth++
			if depth > max {
				max = depth
			}
		case b == '}' || b == ']':
			depth--
		}
	}
	return max
}

// parser builds values from a json.Decoder's tokens, which lets it refuse
// duplicate member names (encoding/json would silently keep the last).
type parser struct {
	dec *json.Decoder
}

func (p *parser) value(path string) (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = errors.New("unexpected end of JSON input")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := make(map[string]any)
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("%s: member name is not a string", at(path))
				}
				kp := join(path, k)
				if err := checkKey(k); err != nil {
					return nil, fmt.Errorf("%s: %v", at(kp), err)
				}
				if _, dup := obj[k]; dup {
					return nil, fmt.Errorf("%s: duplicate member name", at(kp))
				}
				v, err := p.value(kp)
				if err != nil {
					return nil, err
				}
				obj[k] = v
			}
			if _, err := p.dec.Token(); err != nil { // '}'
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for i := 0; p.dec.More(); i++ {
				v, err := p.value(path + "[" + strconv.Itoa(i) + "]")
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := p.dec.Token(); err != nil { // ']'
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s: number %s is out of range", at(path), t)
		}
		return f, nil
	default: // string, bool, nil
		return t, nil
	}
}

func at(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// checkKey enforces the member-name rule that keeps metadata paths unambiguous.
func checkKey(k string) error {
	if k == "" {
		return errors.New("member name is empty")
	}
	if strings.Contains(k, ".") {
		return fmt.Errorf("member name %q contains \".\" (names form dotted metadata paths)", k)
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	if _, ok := thingmodel.Number(v); ok {
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// mergePatch applies an RFC 7386 merge patch to target and returns the
// result. target is not modified; the result shares unchanged sub-values with
// target and takes patch values without copying them.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, _ := target.(map[string]any)
	out := make(map[string]any, len(t)+len(p))
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}

// depth returns how deeply v nests objects and arrays (a scalar is 0, {} is 1).
func depth(v any) int {
	d := 0
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			d = max(d, depth(e))
		}
	case []any:
		for _, e := range t {
			d = max(d, depth(e))
		}
	default:
		return 0
	}
	return d + 1
}

// compact encodes v as compact JSON without HTML escaping; map members come
// out sorted, so equal documents encode to equal bytes.
func compact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkSection applies the limits to a merged section and returns its
// stored form.
func checkSection(section string, doc map[string]any, lim Limits) ([]byte, error) {
	if d := depth(doc); d > lim.MaxDepth {
		return nil, fmt.Errorf("%w: %s would nest %d levels deep, the limit is %d", ErrInvalid, section, d, lim.MaxDepth)
	}
	b, err := compact(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, section, err)
	}
	if len(b) > lim.MaxDocBytes {
		return nil, fmt.Errorf("%w: %s would be %d bytes as compact JSON, the limit is %d",
			ErrTooLarge, section, len(b), lim.MaxDocBytes)
	}
	return b, nil
}

// applyPatch parses patch and merges it into doc under the limits; it
// returns the merged section, the parsed patch and the stored form.
func applyPatch(section string, doc map[string]any, patch []byte, lim Limits) (merged, parsed map[string]any, stored []byte, err error) {
	parsed, err = parsePatch(patch, lim)
	if err != nil {
		return nil, nil, nil, err
	}
	merged = mergePatch(doc, parsed).(map[string]any)
	stored, err = checkSection(section, merged, lim)
	if err != nil {
		return nil, nil, nil, err
	}
	return merged, parsed, stored, nil
}

// leaves flattens doc into dotted paths: scalars, arrays and empty objects
// are leaves; non-empty objects are walked.
func leaves(doc map[string]any) map[string]any {
	out := make(map[string]any)
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := join(prefix, k)
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(p, sub)
				continue
			}
			out[p] = v
		}
	}
	walk("", doc)
	return out
}

// updateMeta returns the metadata of next: leaves whose value is unchanged
// from prev keep their entry, the others get (now, version).
func updateMeta(prev, next map[string]any, old map[string]FieldMeta, now time.Time, version int64) map[string]FieldMeta {
	before := leaves(prev)
	out := make(map[string]FieldMeta)
	for p, v := range leaves(next) {
		if ov, ok := before[p]; ok && equal(ov, v) {
			if m, ok := old[p]; ok {
				out[p] = m
				continue
			}
		}
		out[p] = FieldMeta{Updated: now, Version: version}
	}
	return out
}

// equal compares JSON values, numbers by value.
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	fa, ok := thingmodel.Number(a)
	if !ok {
		return false
	}
	fb, ok := thingmodel.Number(b)
	return ok && fa == fb
}

// delta returns the members of desired that reported does not match,
// recursing into objects present on both sides.
func delta(desired, reported map[string]any) map[string]any {
	out := make(map[string]any)
	for k, dv := range desired {
		rv, ok := reported[k]
		if dm, isObj := dv.(map[string]any); isObj {
			if rm, ok := rv.(map[string]any); ok {
				if sub := delta(dm, rm); len(sub) > 0 {
					out[k] = sub
				}
				continue
			}
			out[k] = clone(dv)
			continue
		}
		if !ok || !equal(dv, rv) {
			out[k] = clone(dv)
		}
	}
	return out
}

// clone deep-copies a JSON value.
func clone(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = clone(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = clone(e)
		}
		return out
	}
	return v
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
