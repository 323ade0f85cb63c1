package builtins

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	gotime "time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/runtime"
)

// Standard returns the standard journaled builtins: now, uuid, random,
// sleep, ask_human and wait_signal.
func Standard() []*runtime.Builtin {
	return append([]*runtime.Builtin{Now(), UUID(), Random(), Sleep()}, Human()...)
}

// Globals returns the standard deterministic helpers: log, attempt, secret,
// retry_policy and progress.
func Globals() starlark.StringDict {
	return starlark.StringDict{
		"log":          starlark.NewBuiltin("log", logFn),
		"attempt":      starlark.NewBuiltin("attempt", attemptFn),
		"secret":       starlark.NewBuiltin("secret", secretFn),
		"retry_policy": starlark.NewBuiltin("retry_policy", retryPolicyFn),
		"progress":     starlark.NewBuiltin("progress", progressFn),
	}
}

var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// secret("NAME") returns an opaque reference to a secret. Builtins that
// accept secrets (http headers, params and bodies; llm credentials) resolve
// it at the moment of use; the journal, logs and errors only ever hold the
// name. It prints as <secret NAME> and refuses to be concatenated.
func secretFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	if err := starlark.UnpackPositionalArgs("secret", args, kwargs, 1, &name); err != nil {
		return nil, err
	}
	if !secretName.MatchString(name) {
		return nil, fmt.Errorf("secret: %q is not a valid secret name (letters, digits and _, not starting with a digit)", name)
	}
	return runtime.Secret{Name: name}, nil
}

// Now is now(): the current time as a time.time value, journaled so that
// a replay sees the same instant.
func Now() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "now",
		Doc:  "now() -> time: the current time (UTC)",
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			if err := c.Unpack(); err != nil {
				return nil, err
			}
			return time.Time(c.Now().UTC()), nil
		},
	}
}

// UUID is uuid(): a random (version 4) UUID string.
func UUID() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "uuid",
		Doc:  "uuid() -> str: a random version-4 UUID",
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			if err := c.Unpack(); err != nil {
				return nil, err
			}
			id, err := uuid.NewRandom()
			if err != nil {
				return nil, err
			}
			return starlark.String(id.String()), nil
		},
	}
}

// Random is random(): a float in [0, 1).
func Random() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "random",
		Doc:  "random() -> float: a random number in [0, 1)",
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			if err := c.Unpack(); err != nil {
				return nil, err
			}
			return starlark.Float(rand.Float64()), nil
		},
	}
}

// Sleep is sleep(duration): a durable timer. The wake-up time is journaled
// when the sleep starts; a run resumed after a crash waits only for what is
// left. Long sleeps suspend the run (see runtime.Options.MaxInlineWait).
func Sleep() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "sleep",
		Doc:  `sleep(duration) -> None: wait durably; duration is seconds (int or float), a string such as "1h30m", or a time.duration`,
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			now := c.Now()
			if c.Wait != nil && c.Wait.Until != nil {
				if !now.Before(*c.Wait.Until) {
					return starlark.None, nil
				}
				return nil, &runtime.Suspend{Reason: c.Wait.Reason, Until: *c.Wait.Until}
			}
			var d starlark.Value
			if err := c.Unpack("duration", &d); err != nil {
				return nil, err
			}
			dur, err := ParseDuration(d)
			if err != nil {
				return nil, runtime.Permanent("invalid_argument", fmt.Errorf("sleep: %w", err))
			}
			if dur <= 0 {
				return starlark.None, nil
			}
			until := now.Add(dur).UTC()
			return nil, &runtime.Suspend{Reason: fmt.Sprintf("sleep %s (until %s)", dur, until.Format(gotime.RFC3339)), Until: until}
		},
	}
}

// ParseDuration reads a duration argument: a number of seconds (int or
// float), a Go duration string ("90s", "1h30m", "1.5h"; also "2d" for
// days), or a time.duration value.
func ParseDuration(v starlark.Value) (gotime.Duration, error) {
	switch v := v.(type) {
	case starlark.Int:
		i, ok := v.Int64()
		if !ok || i > int64(gotime.Duration(1<<63-1)/gotime.Second) {
			return 0, fmt.Errorf("%s seconds is too long", v)
		}
		if i < 0 {
			return 0, fmt.Errorf("negative duration %s", v)
		}
		return gotime.Duration(i) * gotime.Second, nil
	case starlark.Float:
		if v < 0 || v != v {
			return 0, fmt.Errorf("invalid duration %s seconds", v)
		}
		if float64(v) > float64(1<<62)/float64(gotime.Second) {
			return 0, fmt.Errorf("%s seconds is too long", v)
		}
		return gotime.Duration(float64(v) * float64(gotime.Second)), nil
	case starlark.String:
		s := strings.TrimSpace(string(v))
		if strings.HasSuffix(s, "d") {
			var days float64
			if _, err := fmt.Sscanf(s, "%gd", &days); err == nil && days >= 0 {
				return gotime.Duration(days * 24 * float64(gotime.Hour)), nil
			}
		}
		d, err := gotime.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q (use seconds, or a string such as \"90s\", \"1h30m\" or \"2d\")", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		return d, nil
	case time.Duration:
		if v < 0 {
			return 0, fmt.Errorf("negative duration %s", v)
		}
		return gotime.Duration(v), nil
	}
	return 0, fmt.Errorf("want seconds (int or float), a duration string or a time.duration, got %s", v.Type())
}

// log(msg, level="info", **fields) writes a structured log line. It is not
// journaled as a call and is not repeated while a run replays.
func logFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("log: want one positional argument (the message), got %d", len(args))
	}
	msg, ok := starlark.AsString(args[0])
	if !ok {
		msg = args[0].String()
	}
	level := zerolog.InfoLevel
	fields := starlark.NewDict(len(kwargs))
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		if k == "level" {
			s, _ := starlark.AsString(kv[1])
			l, err := zerolog.ParseLevel(s)
			if err != nil || s == "" || l > zerolog.ErrorLevel {
				return nil, fmt.Errorf("log: level must be debug, info, warn or error, not %s", kv[1])
			}
			level = l
			continue
		}
		fields.SetKey(kv[0], kv[1])
	}
	if err := runtime.EmitLog(thread, level, msg, fields); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

// attempt(fn, *args, **kwargs) calls fn and returns
// struct(ok, value, error, kind) instead of failing: Starlark has no
// try/except. Conditions that end a run (suspension, cancellation, limits,
// divergence) pass through.
func attemptFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) < 1 {
		return nil, fmt.Errorf("attempt: want a function to call as the first argument")
	}
	f, ok := args[0].(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("attempt: first argument must be callable, not %s", args[0].Type())
	}
	v, err := starlark.Call(thread, f, args[1:], kwargs)
	if err == nil {
		return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
			"ok": starlark.True, "value": v, "error": starlark.None, "kind": starlark.None,
		}), nil
	}
	if !runtime.Recoverable(thread, err) {
		return nil, err
	}
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"ok":    starlark.False,
		"value": starlark.None,
		"error": starlark.String(runtime.ErrorMessage(err)),
		"kind":  starlark.String(runtime.ErrorKind(err)),
	}), nil
}
