package loop

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// evalBool runs a condition.
func evalBool(prg cel.Program, vars map[string]any) (bool, error) {
	if prg == nil {
		return false, errors.New("no expression")
	}
	out, _, err := prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("gave %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// evalValue runs an expression and returns its value as JSON would hold
// it: float64 (numbers), bool, string, maps and lists of those.
func evalValue(prg cel.Program, vars map[string]any) (any, error) {
	if prg == nil {
		return nil, errors.New("no expression")
	}
	out, _, err := prg.Eval(vars)
	if err != nil {
		return nil, err
	}
	return native(out)
}

func native(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, errors.New("gave a number that is not finite")
		}
		return f, nil
	case types.Int:
		return float64(x), nil
	case types.Uint:
		return float64(x), nil
	case types.Bool:
		return bool(x), nil
	case types.String:
		return string(x), nil
	case types.Null:
		return nil, nil
	}
	// Maps, lists, timestamps: through JSON.
	nv, err := v.ConvertToNative(reflect.TypeFor[any]())
	if err != nil {
		return nil, fmt.Errorf("gave %s, which has no JSON form", v.Type())
	}
	b, err := json.Marshal(nv)
	if err != nil {
		return nil, fmt.Errorf("gave %s, which has no JSON form", v.Type())
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
