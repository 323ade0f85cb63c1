package llm

import (
	"context"
	"fmt"
	gotime "time"

	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/builtins"
	"github.com/starflow/starflow/builtins/llm/provider"
	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/runtime"
)

// Doc is the llm builtin's one-line description.
const Doc = `llm(prompt=None, messages=None, system=None, model="default", max_tokens=None, temperature=None, schema=None, timeout=None, deadline=None) -> struct(text, json, model, provider, deployment, usage, latency_ms, attempts, tier, cached, degraded, refused)`

// Builtins returns the journaled llm builtin. Routing, fallbacks and the
// retries of a call are one journaled step: the journal records the
// answer (or the final error) and, as the call's detail, every attempt,
// skip and wait. Each execution of the builtin's Fn runs one round of the
// fallback chain; when another round is due after a wait (a backoff, or
// until a deployment's cooldown or rate-limit window ends), Fn returns a
// runtime.Retry and the runtime waits, in process or with the run
// suspended, on its own clock. Replay never calls a provider.
func (m *Module) Builtins() []*runtime.Builtin {
	return []*runtime.Builtin{{Name: "llm", Doc: Doc, Fn: m.fn, Effect: true}}
}

func (m *Module) fn(ctx context.Context, c *runtime.Call) (_ starlark.Value, err error) {
	var st routeState
	resumed, serr := c.State(&st)
	if serr != nil {
		// Not a state this version wrote: start the rounds over.
		c.Log.Warn().Err(serr).Msg("llm: cannot continue from the previous round; starting over")
		resumed, st = false, routeState{}
	}
	req, err := requestFromArgs(c)
	if err != nil {
		return nil, err
	}
	req.Key = c.Key
	env := &callEnv{log: c.Log, secret: c.Secret}
	// The call's clock is the runtime's; its deadline counts from the
	// call's first attempt, also across the run's suspensions.
	cc, err := m.newCall(ctx, req, env, c.Now, c.Started)
	if err != nil {
		return nil, err
	}
	defer func() {
		err = cc.end(err)
		_ = c.SetDetail(&cc.st.Trace)
	}()
	if resumed {
		cc.resume(m, &st)
	} else if r := cc.idempotent(m); r != nil {
		return r.Value()
	}
	res, fail, wait := m.rounds(cc)
	if wait != nil {
		return nil, &runtime.Retry{Err: wait.err, After: wait.d, State: &cc.st}
	}
	r, err := m.finish(cc, res, fail)
	if err != nil {
		return nil, err
	}
	return r.Value()
}

func isNone(v starlark.Value) bool { return v == nil || v == starlark.None }

func argErr(format string, args ...any) error {
	return &runtime.Error{Kind: "invalid_argument", Message: "llm: " + fmt.Sprintf(format, args...)}
}

// requestFromArgs reads llm()'s arguments.
func requestFromArgs(c *runtime.Call) (*Request, error) {
	var prompt, messages, system, maxTokens, temperature, schema, timeout, deadline starlark.Value
	model := "default"
	if err := c.Unpack("prompt?", &prompt, "messages?", &messages, "system?", &system, "model?", &model,
		"max_tokens?", &maxTokens, "temperature?", &temperature, "schema?", &schema, "timeout?", &timeout, "deadline?", &deadline); err != nil {
		return nil, err
	}
	req := &Request{Model: model}
	str := func(v starlark.Value, what string) (string, error) {
		if isNone(v) {
			return "", nil
		}
		s, ok := v.(starlark.String)
		if !ok {
			if _, secret := v.(value.Secret); secret {
				return "", argErr("%s: secrets cannot be sent to a model", what)
			}
			return "", argErr("%s must be a string, not %s", what, v.Type())
		}
		return string(s), nil
	}
	var err error
	if req.Prompt, err = str(prompt, "prompt"); err != nil {
		return nil, err
	}
	if req.System, err = str(system, "system"); err != nil {
		return nil, err
	}
	if !isNone(messages) {
		it, ok := messages.(starlark.Indexable)
		if !ok {
			return nil, argErr("messages must be a list of {\"role\": ..., \"content\": ...} dicts, not %s", messages.Type())
		}
		for i := 0; i < it.Len(); i++ {
			var role, content starlark.Value
			switch m := it.Index(i).(type) {
			case *starlark.Dict:
				for _, k := range m.Keys() {
					if ks, _ := starlark.AsString(k); ks != "role" && ks != "content" {
						return nil, argErr("messages[%d]: unknown key %s (want role and content)", i, k)
					}
				}
				role, _, _ = m.Get(starlark.String("role"))
				content, _, _ = m.Get(starlark.String("content"))
			case *starlarkstruct.Struct:
				role, _ = m.Attr("role")
				content, _ = m.Attr("content")
			default:
				return nil, argErr("messages[%d] must be a dict with role and content, not %s", i, m.Type())
			}
			r, err := str(role, fmt.Sprintf("messages[%d].role", i))
			if err != nil {
				return nil, err
			}
			ct, err := str(content, fmt.Sprintf("messages[%d].content", i))
			if err != nil {
				return nil, err
			}
			if r == "" {
				return nil, argErr("messages[%d] has no role", i)
			}
			req.Messages = append(req.Messages, provider.Message{Role: r, Content: ct})
		}
	}
	if req.Prompt == "" && len(req.Messages) == 0 {
		return nil, argErr("give a prompt or messages")
	}
	if !isNone(maxTokens) {
		n, err := starlark.AsInt32(maxTokens)
		if err != nil || n < 1 || n > 1_000_000 {
			return nil, argErr("max_tokens must be an int between 1 and 1000000, got %s", maxTokens)
		}
		req.MaxTokens = n
	}
	if !isNone(temperature) {
		f, ok := starlark.AsFloat(temperature)
		if !ok || f < 0 || f > 2 {
			return nil, argErr("temperature must be a number between 0 and 2, got %s", temperature)
		}
		req.Temperature = &f
	}
	if !isNone(schema) {
		g, err := value.ToGo(schema)
		if err != nil {
			return nil, argErr("schema: %v", err)
		}
		doc, ok := g.(map[string]any)
		if !ok {
			return nil, argErr("schema must be a dict (a JSON Schema), not %s", schema.Type())
		}
		if hasSecret(doc) {
			return nil, argErr("schema: secrets cannot be sent to a model")
		}
		req.Schema = doc
	}
	if !isNone(timeout) {
		d, err := builtins.ParseDuration(timeout)
		if err != nil || d <= 0 {
			return nil, argErr("timeout must be a positive duration (seconds, \"30s\" or a time.duration), got %s", timeout)
		}
		req.Timeout = d
	}
	if !isNone(deadline) {
		if t, ok := deadline.(time.Time); ok {
			req.Deadline = gotime.Time(t)
		} else {
			d, err := builtins.ParseDuration(deadline)
			if err != nil || d <= 0 {
				return nil, argErr("deadline must be a positive duration from now or a time.time, got %s", deadline)
			}
			req.Deadline = c.Started.Add(d)
		}
	}
	return req, nil
}

func hasSecret(v any) bool {
	switch v := v.(type) {
	case value.Secret:
		return true
	case map[string]any:
		for _, x := range v {
			if hasSecret(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if hasSecret(x) {
				return true
			}
		}
	}
	return false
}

// Value returns the result as the struct scripts receive.
func (r *Result) Value() (starlark.Value, error) {
	var js starlark.Value = starlark.None
	if len(r.JSON) > 0 {
		v, err := value.FromJSON(r.JSON)
		if err != nil {
			return nil, &runtime.Error{Kind: "invalid_output", Message: "llm: the answer's JSON cannot be converted: " + err.Error()}
		}
		js = v
	}
	usage := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"input_tokens":  starlark.MakeInt(r.Usage.InputTokens),
		"output_tokens": starlark.MakeInt(r.Usage.OutputTokens),
		"cost_usd":      starlark.Float(r.CostUSD),
	})
	return starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"text":       starlark.String(r.Text),
		"json":       js,
		"model":      starlark.String(r.Model),
		"provider":   starlark.String(r.Provider),
		"deployment": starlark.String(r.Deployment),
		"usage":      usage,
		"latency_ms": starlark.MakeInt64(r.LatencyMS),
		"attempts":   starlark.MakeInt(r.Attempts),
		"tier":       starlark.MakeInt(r.Tier),
		"cached":     starlark.Bool(r.Cached),
		"degraded":   starlark.Bool(r.Degraded),
		"refused":    starlark.Bool(r.Refused),
	}), nil
}
