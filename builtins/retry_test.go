package builtins

import (
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

func evalPolicy(t *testing.T, expr string) (starlark.Value, error) {
	t.Helper()
	return starlark.EvalOptions(&syntax.FileOptions{}, &starlark.Thread{}, "p", expr, Globals())
}

func TestRetryPolicyFrom(t *testing.T) {
	for expr, want := range map[string]string{
		`retry_policy()`:           "4 1s 2 30s 0.2 []",
		`retry_policy(jitter = 0)`: "4 1s 2 30s 0 []",
		`retry_policy(coefficient = 3, max_attempts = 2, initial = 0.5)`: "2 500ms 3 30s 0.2 []",
		`{"max_attempts": 2}`:                 "2 1s 2 30s 0.2 []",
		`{"initial": "10ms", "jitter": None}`: "4 10ms 2 30s 0.2 []",
		`7`:                                   "7 1s 2 30s 0.2 []",
		`None`:                                "4 1s 2 30s 0.2 []",
		`retry_policy(non_retryable = ["a"])`: "4 1s 2 30s 0.2 [a]",
	} {
		v, err := evalPolicy(t, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		p, err := RetryPolicyFrom(v)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		p = p.WithDefaults()
		got := strings.Join([]string{
			starlark.MakeInt(p.MaxAttempts).String(), p.InitialInterval.String(), starlark.Float(p.BackoffCoefficient).String(),
			p.MaxInterval.String(), starlark.Float(p.Jitter).String(), "[" + strings.Join(p.NonRetryable, " ") + "]",
		}, " ")
		got = strings.ReplaceAll(got, ".0 ", " ")
		if got != want {
			t.Errorf("%s: policy %s, want %s", expr, got, want)
		}
	}
	for _, bad := range []string{`retry_policy(max_attempts = 0)`, `retry_policy(jitter = 2)`, `retry_policy(coefficient = 0.5)`, `retry_policy(initial = "soon")`} {
		if _, err := evalPolicy(t, bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	for _, bad := range []string{`{"tries": 3}`, `"often"`, `0`} {
		v, _ := evalPolicy(t, bad)
		if _, err := RetryPolicyFrom(v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for expr, want := range map[string]time.Duration{`5`: 5 * time.Second, `0.25`: 250 * time.Millisecond, `"90s"`: 90 * time.Second, `"1h30m"`: 90 * time.Minute, `"2d"`: 48 * time.Hour, `"0.5d"`: 12 * time.Hour} {
		v, _ := starlark.Eval(&starlark.Thread{}, "d", expr, nil)
		got, err := ParseDuration(v)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{`-1`, `-0.5`, `"-3s"`, `"soon"`, `"xd"`, `[1]`} {
		v, _ := starlark.Eval(&starlark.Thread{}, "d", bad, nil)
		if _, err := ParseDuration(v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
