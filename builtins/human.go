package builtins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.starlark.net/starlark"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/runtime"
)

// Human returns the builtins that wait for the outside world: ask_human
// and wait_signal.
func Human() []*runtime.Builtin { return []*runtime.Builtin{AskHuman(), WaitSignal()} }

// question is what ask_human records with its wait, and what `starflow
// show` and the API display.
type question struct {
	Prompt     string          `json:"prompt"`
	Choices    []any           `json:"choices,omitempty"`
	Schema     json.RawMessage `json:"schema,omitempty"`
	Deadline   *time.Time      `json:"deadline,omitempty"`
	HasDefault bool            `json:"has_default,omitempty"`
	Default    json.RawMessage `json:"default,omitempty"`
}

// validate checks an answer against the question's choices and schema.
func (q *question) validate(answer json.RawMessage) error {
	if len(q.Choices) > 0 {
		var got any
		if err := json.Unmarshal(answer, &got); err != nil {
			return err
		}
		gb, _ := json.Marshal(got)
		for _, c := range q.Choices {
			cb, _ := json.Marshal(c)
			if bytes.Equal(cb, gb) {
				return nil
			}
		}
		want, _ := json.Marshal(q.Choices)
		return fmt.Errorf("answer %s is not one of the choices %s", answer, want)
	}
	if len(q.Schema) > 0 {
		sch, err := compileSchema(q.Schema)
		if err != nil {
			return err
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(answer))
		if err != nil {
			return err
		}
		if err := sch.Validate(inst); err != nil {
			var ve *jsonschema.ValidationError
			if errors.As(err, &ve) {
				return fmt.Errorf("answer %s does not match the schema: %s", answer, strings.ReplaceAll(strings.TrimSpace(ve.Error()), "\n", "; "))
			}
			return err
		}
	}
	return nil
}

func compileSchema(schema json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("answer.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("answer.json")
}

// AskHuman is ask_human(prompt, choices=None, schema=None, timeout=None,
// default=<none>): it suspends the run until someone answers (starflow
// answer, or the API), and returns the answer as a JSON value.
func AskHuman() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "ask_human",
		Doc:  "ask_human(prompt, choices=None, schema=None, timeout=None, default=None) -> answer: wait for a person's answer",
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			q, err := questionOf(c)
			if err != nil {
				return nil, err
			}
			answers, err := c.Messages(ctx, journal.MessageAnswer, "")
			if err != nil {
				return nil, err
			}
			for _, m := range answers {
				c.Consume(m)
				if verr := q.validate(m.Value); verr != nil {
					// Send validates before storing, so this only happens
					// if the question changed under a stored answer.
					c.Log.Warn().Uint64("message", m.Seq).Err(verr).Msg("ignoring invalid answer")
					continue
				}
				v, err := value.FromJSON(m.Value)
				if err != nil {
					return nil, err
				}
				c.SetDetail(map[string]any{"answered_by": m.From, "answered_at": m.Time})
				return v, nil
			}
			if q.Deadline != nil && !c.Now().Before(*q.Deadline) {
				if q.HasDefault {
					c.SetDetail(map[string]any{"timed_out": true, "used_default": true})
					return value.FromJSON(q.Default)
				}
				return nil, runtime.Permanent("timeout", fmt.Errorf("ask_human: no answer to %q by %s", q.Prompt, q.Deadline.Format(time.RFC3339)))
			}
			s := &runtime.Suspend{Reason: "question: " + q.Prompt, Data: q}
			if q.Deadline != nil {
				s.Until = *q.Deadline
			}
			return nil, s
		},
		Accept: func(w *journal.Waiting, m *journal.Message) (bool, error) {
			if m.Kind != journal.MessageAnswer {
				return false, nil
			}
			var q question
			if err := json.Unmarshal(w.Data, &q); err != nil {
				return false, err
			}
			if err := q.validate(m.Value); err != nil {
				return false, err
			}
			return true, nil
		},
	}
}

// questionOf reads the question from the call's arguments on its first
// execution, and from its recorded wait afterwards (so the deadline stays
// fixed).
func questionOf(c *runtime.Call) (*question, error) {
	var q question
	if c.Wait != nil {
		if err := json.Unmarshal(c.Wait.Data, &q); err != nil {
			return nil, fmt.Errorf("ask_human: recorded question: %w", err)
		}
		return &q, nil
	}
	var (
		prompt  string
		choices *starlark.List
		schema  starlark.Value = starlark.None
		timeout starlark.Value = starlark.None
		def     starlark.Value
	)
	if err := c.Unpack("prompt", &prompt, "choices?", &choices, "schema?", &schema, "timeout?", &timeout, "default?", &def); err != nil {
		return nil, err
	}
	if strings.TrimSpace(prompt) == "" {
		return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: prompt is empty"))
	}
	q.Prompt = prompt
	if choices != nil {
		if choices.Len() == 0 {
			return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: choices is empty"))
		}
		for i := 0; i < choices.Len(); i++ {
			b, err := value.ToJSON(choices.Index(i))
			if err != nil {
				return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: choices: %w", err))
			}
			var x any
			json.Unmarshal(b, &x)
			q.Choices = append(q.Choices, x)
		}
	}
	if schema != starlark.None {
		b, err := value.ToJSON(schema)
		if err != nil {
			return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: schema: %w", err))
		}
		if _, err := compileSchema(b); err != nil {
			return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: schema: %w", err))
		}
		q.Schema = b
	}
	if timeout != starlark.None {
		d, err := ParseDuration(timeout)
		if err != nil {
			return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: timeout: %w", err))
		}
		dl := c.Now().Add(d).UTC()
		q.Deadline = &dl
	}
	if def != nil {
		b, err := value.ToJSON(def)
		if err != nil {
			return nil, runtime.Permanent("invalid_argument", fmt.Errorf("ask_human: default: %w", err))
		}
		q.HasDefault, q.Default = true, b
	}
	return &q, nil
}

// signalWait is what wait_signal records with its wait.
type signalWait struct {
	Name       string          `json:"name"`
	Deadline   *time.Time      `json:"deadline,omitempty"`
	HasDefault bool            `json:"has_default,omitempty"`
	Default    json.RawMessage `json:"default,omitempty"`
}

// WaitSignal is wait_signal(name, timeout=None, default=<none>): it returns
// the value of the oldest unconsumed signal of that name, waiting for one if
// none has arrived. Signals sent before the script waits are kept, in order.
func WaitSignal() *runtime.Builtin {
	return &runtime.Builtin{
		Name: "wait_signal",
		Doc:  "wait_signal(name, timeout=None, default=None) -> value: wait for a named signal sent to the run",
		Fn: func(ctx context.Context, c *runtime.Call) (starlark.Value, error) {
			var sw signalWait
			if c.Wait != nil {
				if err := json.Unmarshal(c.Wait.Data, &sw); err != nil {
					return nil, fmt.Errorf("wait_signal: recorded wait: %w", err)
				}
			} else {
				var timeout starlark.Value = starlark.None
				var def starlark.Value
				if err := c.Unpack("name", &sw.Name, "timeout?", &timeout, "default?", &def); err != nil {
					return nil, err
				}
				if sw.Name == "" {
					return nil, runtime.Permanent("invalid_argument", fmt.Errorf("wait_signal: name is empty"))
				}
				if timeout != starlark.None {
					d, err := ParseDuration(timeout)
					if err != nil {
						return nil, runtime.Permanent("invalid_argument", fmt.Errorf("wait_signal: timeout: %w", err))
					}
					dl := c.Now().Add(d).UTC()
					sw.Deadline = &dl
				}
				if def != nil {
					b, err := value.ToJSON(def)
					if err != nil {
						return nil, runtime.Permanent("invalid_argument", fmt.Errorf("wait_signal: default: %w", err))
					}
					sw.HasDefault, sw.Default = true, b
				}
			}
			msgs, err := c.Messages(ctx, journal.MessageSignal, sw.Name)
			if err != nil {
				return nil, err
			}
			if len(msgs) > 0 {
				c.Consume(msgs[0])
				c.SetDetail(map[string]any{"signal": msgs[0].Seq, "from": msgs[0].From, "sent_at": msgs[0].Time})
				return value.FromJSON(msgs[0].Value)
			}
			if sw.Deadline != nil && !c.Now().Before(*sw.Deadline) {
				if sw.HasDefault {
					return value.FromJSON(sw.Default)
				}
				return nil, runtime.Permanent("timeout", fmt.Errorf("wait_signal: no %q signal by %s", sw.Name, sw.Deadline.Format(time.RFC3339)))
			}
			s := &runtime.Suspend{Reason: "signal " + sw.Name, Data: sw}
			if sw.Deadline != nil {
				s.Until = *sw.Deadline
			}
			return nil, s
		},
		Accept: func(w *journal.Waiting, m *journal.Message) (bool, error) {
			if m.Kind != journal.MessageSignal {
				return false, nil
			}
			var sw signalWait
			if err := json.Unmarshal(w.Data, &sw); err != nil {
				return false, err
			}
			return m.Name == sw.Name, nil
		},
	}
}

// progress(value) publishes the run's current state, readable from outside
// (starflow show, the API) at any time.
func progressFn(thread *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs("progress", args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	if err := runtime.SetProgress(thread, v); err != nil {
		return nil, err
	}
	return starlark.None, nil
}
