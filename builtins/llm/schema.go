package llm

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compiledSchema is a JSON Schema ready to validate answers.
type compiledSchema struct {
	doc map[string]any // as given, sent to providers
	raw string         // doc as JSON, for request digests
	sch *jsonschema.Schema
}

// schema compiles (and caches) a JSON Schema given to llm(schema=...).
func (m *Module) schema(doc map[string]any) (*compiledSchema, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, permanent("invalid_argument", "llm: schema is not JSON: %v", err)
	}
	sum := sha256.Sum256(raw)
	k := string(sum[:])
	m.schemaMu.Lock()
	c := m.schemas[k]
	m.schemaMu.Unlock()
	if c != nil {
		return c, nil
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, permanent("invalid_argument", "llm: schema is not JSON: %v", err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("llm-schema.json", parsed); err != nil {
		return nil, permanent("invalid_argument", "llm: invalid schema: %v", err)
	}
	s, err := comp.Compile("llm-schema.json")
	if err != nil {
		return nil, permanent("invalid_argument", "llm: invalid schema: %s", oneLine(err.Error()))
	}
	c = &compiledSchema{doc: doc, raw: string(raw), sch: s}
	m.schemaMu.Lock()
	if len(m.schemas) < 256 {
		m.schemas[k] = c
	}
	m.schemaMu.Unlock()
	return c, nil
}

// check parses an answer as JSON (tolerating a Markdown code fence around
// it) and validates it. It returns the value re-encoded compactly.
func (c *compiledSchema) check(text string) (json.RawMessage, error) {
	t := strings.TrimSpace(text)
	if strings.HasPrefix(t, "```") {
		t = strings.TrimPrefix(t, "```")
		if i := strings.IndexByte(t, '\n'); i >= 0 {
			t = t[i+1:] // drop the fence's language tag
		}
		t = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(t), "```"))
	}
	if t == "" {
		return nil, errors.New("the answer is empty, not JSON")
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(t))
	if err != nil {
		return nil, fmt.Errorf("the answer is not JSON (%v)", err)
	}
	if err := c.sch.Validate(v); err != nil {
		return nil, fmt.Errorf("the JSON does not match the schema: %s", oneLine(err.Error()))
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(t)); err != nil {
		return nil, fmt.Errorf("the answer is not JSON (%v)", err)
	}
	return buf.Bytes(), nil
}

// oneLine flattens the validator's indented multi-line messages.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	out := strings.Join(lines, " ")
	if len(out) > 600 {
		out = out[:600] + "…"
	}
	return out
}
