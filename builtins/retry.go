package builtins

import (
	"fmt"
	gotime "time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/runtime"
)

// retry_policy(max_attempts=4, initial="1s", coefficient=2.0,
// max_interval="30s", jitter=0.2, non_retryable=[]) returns a policy value
// for builtins that take retry=. It is a plain struct, so it journals as
// part of the call's arguments.
func retryPolicyFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	d := runtime.DefaultRetryPolicy()
	var (
		maxAttempts                 = d.MaxAttempts
		initial      starlark.Value = starlark.String(d.InitialInterval.String())
		coefficient  starlark.Value = starlark.Float(d.BackoffCoefficient)
		maxInterval  starlark.Value = starlark.String(d.MaxInterval.String())
		jitter       starlark.Value = starlark.Float(d.Jitter)
		nonRetryable *starlark.List
	)
	if err := starlark.UnpackArgs("retry_policy", args, kwargs,
		"max_attempts?", &maxAttempts, "initial?", &initial, "coefficient?", &coefficient,
		"max_interval?", &maxInterval, "jitter?", &jitter, "non_retryable?", &nonRetryable); err != nil {
		return nil, err
	}
	if nonRetryable == nil {
		nonRetryable = starlark.NewList(nil)
	}
	v := starlarkstruct.FromStringDict(starlark.String("retry_policy"), starlark.StringDict{
		"max_attempts":  starlark.MakeInt(maxAttempts),
		"initial":       initial,
		"coefficient":   coefficient,
		"max_interval":  maxInterval,
		"jitter":        jitter,
		"non_retryable": nonRetryable,
	})
	if _, err := RetryPolicyFrom(v); err != nil {
		return nil, err
	}
	return v, nil
}

// RetryPolicyFrom reads a retry policy from a script value: the struct
// retry_policy() returns, a dict with the same keys, or None (the zero
// policy, which means "defaults"). An int is shorthand for max_attempts.
func RetryPolicyFrom(v starlark.Value) (runtime.RetryPolicy, error) {
	var p runtime.RetryPolicy
	get := func(name string) (starlark.Value, error) { return nil, nil }
	switch v := v.(type) {
	case nil, starlark.NoneType:
		return p, nil
	case starlark.Int:
		n, ok := v.Int64()
		if !ok || n < 1 || n > 100 {
			return p, fmt.Errorf("retry: max attempts %s out of range 1..100", v)
		}
		p.MaxAttempts = int(n)
		return p, nil
	case *starlarkstruct.Struct:
		get = func(name string) (starlark.Value, error) {
			x, err := v.Attr(name)
			if err != nil || x == nil || x == starlark.None {
				return nil, nil
			}
			return x, nil
		}
	case *starlark.Dict:
		for _, k := range v.Keys() {
			switch s, _ := starlark.AsString(k); s {
			case "max_attempts", "initial", "coefficient", "max_interval", "jitter", "non_retryable":
			default:
				return p, fmt.Errorf("retry: unknown policy field %s", k)
			}
		}
		get = func(name string) (starlark.Value, error) {
			x, found, err := v.Get(starlark.String(name))
			if !found || x == starlark.None {
				return nil, err
			}
			return x, err
		}
	default:
		return p, fmt.Errorf("retry: want retry_policy(...), a dict, an int or None, got %s", v.Type())
	}
	if x, _ := get("max_attempts"); x != nil {
		n, err := starlark.AsInt32(x)
		if err != nil || n < 1 || n > 100 {
			return p, fmt.Errorf("retry: max_attempts must be an int in 1..100, got %s", x)
		}
		p.MaxAttempts = n
	}
	dur := func(name string, dst *gotime.Duration) error {
		x, _ := get(name)
		if x == nil {
			return nil
		}
		d, err := ParseDuration(x)
		if err != nil {
			return fmt.Errorf("retry: %s: %w", name, err)
		}
		*dst = d
		return nil
	}
	if err := dur("initial", &p.InitialInterval); err != nil {
		return p, err
	}
	if err := dur("max_interval", &p.MaxInterval); err != nil {
		return p, err
	}
	num := func(name string, dst *float64) error {
		x, _ := get(name)
		if x == nil {
			return nil
		}
		f, ok := starlark.AsFloat(x)
		if !ok {
			return fmt.Errorf("retry: %s must be a number, got %s", name, x.Type())
		}
		*dst = f
		return nil
	}
	if err := num("coefficient", &p.BackoffCoefficient); err != nil {
		return p, err
	}
	if err := num("jitter", &p.Jitter); err != nil {
		return p, err
	}
	if x, _ := get("jitter"); x != nil && p.Jitter == 0 {
		p.Jitter = -1 // an explicit 0 means no jitter, not "default"
	}
	if x, _ := get("non_retryable"); x != nil {
		it, ok := x.(starlark.Iterable)
		if !ok {
			return p, fmt.Errorf("retry: non_retryable must be a list of error kinds")
		}
		iter := it.Iterate()
		var k starlark.Value
		for iter.Next(&k) {
			s, ok := starlark.AsString(k)
			if !ok {
				iter.Done()
				return p, fmt.Errorf("retry: non_retryable entries must be strings, got %s", k.Type())
			}
			p.NonRetryable = append(p.NonRetryable, s)
		}
		iter.Done()
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	return p, nil
}
