package value

import (
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	gotime "time"

	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// FromGo converts a Go value returned by a host function to Starlark:
// nil, bool, integers, floats, string, []byte, time.Time, time.Duration,
// []any, map[string]any and starlark.Value directly; anything else (structs
// with json tags, typed slices and maps) through encoding/json.
func FromGo(x any) (starlark.Value, error) {
	switch x := x.(type) {
	case nil:
		return starlark.None, nil
	case starlark.Value:
		return x, nil
	case bool:
		return starlark.Bool(x), nil
	case int:
		return starlark.MakeInt(x), nil
	case int8:
		return starlark.MakeInt64(int64(x)), nil
	case int16:
		return starlark.MakeInt64(int64(x)), nil
	case int32:
		return starlark.MakeInt64(int64(x)), nil
	case int64:
		return starlark.MakeInt64(x), nil
	case uint:
		return starlark.MakeUint(x), nil
	case uint8:
		return starlark.MakeUint64(uint64(x)), nil
	case uint16:
		return starlark.MakeUint64(uint64(x)), nil
	case uint32:
		return starlark.MakeUint64(uint64(x)), nil
	case uint64:
		return starlark.MakeUint64(x), nil
	case *big.Int:
		return starlark.MakeBigInt(x), nil
	case float32:
		return starlark.Float(x), nil
	case float64:
		return starlark.Float(x), nil
	case string:
		return starlark.String(x), nil
	case []byte:
		return starlark.Bytes(x), nil
	case gotime.Time:
		return time.Time(x), nil
	case gotime.Duration:
		return time.Duration(x), nil
	case json.RawMessage:
		return FromJSON(x)
	case []any:
		elems := make([]starlark.Value, len(x))
		for i, e := range x {
			v, err := FromGo(e)
			if err != nil {
				return nil, err
			}
			elems[i] = v
		}
		return starlark.NewList(elems), nil
	case []string:
		elems := make([]starlark.Value, len(x))
		for i, e := range x {
			elems[i] = starlark.String(e)
		}
		return starlark.NewList(elems), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // Go maps have no order; sorted is deterministic
		d := starlark.NewDict(len(x))
		for _, k := range keys {
			v, err := FromGo(x[k])
			if err != nil {
				return nil, err
			}
			d.SetKey(starlark.String(k), v)
		}
		return d, nil
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := starlark.NewDict(len(x))
		for _, k := range keys {
			d.SetKey(starlark.String(k), starlark.String(x[k]))
		}
		return d, nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return nil, fmt.Errorf("cannot convert %T to a Starlark value: %w", x, err)
	}
	return FromJSON(b)
}

// ToGo converts a Starlark value to plain Go: nil, bool, int64 (or
// *big.Int), float64, string, []byte, []any (lists, tuples, sets),
// map[string]any (dicts with string keys, structs), time.Time,
// time.Duration and Secret.
func ToGo(v starlark.Value) (any, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		if i, ok := v.Int64(); ok {
			return i, nil
		}
		return v.BigInt(), nil
	case starlark.Float:
		return float64(v), nil
	case starlark.String:
		return string(v), nil
	case starlark.Bytes:
		return []byte(v), nil
	case time.Time:
		return gotime.Time(v), nil
	case time.Duration:
		return gotime.Duration(v), nil
	case Secret:
		return v, nil
	case JSONOf:
		return ToGo(v.v)
	case *starlark.Dict:
		m := make(map[string]any, v.Len())
		for _, kv := range v.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("dict key %s is a %s, not a string", kv[0], kv[0].Type())
			}
			x, err := ToGo(kv[1])
			if err != nil {
				return nil, err
			}
			m[string(k)] = x
		}
		return m, nil
	case *starlarkstruct.Struct:
		sd := make(starlark.StringDict)
		v.ToStringDict(sd)
		m := make(map[string]any, len(sd))
		for k, fv := range sd {
			x, err := ToGo(fv)
			if err != nil {
				return nil, err
			}
			m[k] = x
		}
		return m, nil
	case starlark.Iterable:
		var out []any
		iter := v.Iterate()
		defer iter.Done()
		var x starlark.Value
		for iter.Next(&x) {
			g, err := ToGo(x)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %s has no Go equivalent", v.Type())
}
