package journal

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Replay decodes two record types for every call of a run, so they have a
// decoder that avoids encoding/json's reflection: it walks the object's
// top-level fields once and keeps nested values as raw bytes.

// DecodeCallStarted decodes a TypeCallStarted record.
func (r Record) DecodeCallStarted() (CallStarted, error) {
	var cs CallStarted
	err := eachField(r.Data, func(key string, val []byte) error {
		var err error
		switch key {
		case "step":
			cs.Step, err = jsonString(val)
		case "builtin":
			cs.Builtin, err = jsonString(val)
		case "args":
			cs.Args = json.RawMessage(val)
		case "digest":
			cs.Digest, err = jsonString(val)
		case "key":
			cs.Key, err = jsonString(val)
		case "pos":
			cs.Pos, err = jsonString(val)
		}
		return err
	})
	if err != nil {
		return cs, fmt.Errorf("journal: record %d (%s): decode payload: %w", r.Seq, r.Type, err)
	}
	return cs, nil
}

// DecodeCallCompleted decodes a TypeCallCompleted record.
func (r Record) DecodeCallCompleted() (CallCompleted, error) {
	var cc CallCompleted
	err := eachField(r.Data, func(key string, val []byte) error {
		var err error
		switch key {
		case "step":
			cc.Step, err = jsonString(val)
		case "result":
			cc.Result = json.RawMessage(val)
		case "error":
			if string(val) != "null" {
				cc.Error = new(CallError)
				err = json.Unmarshal(val, cc.Error)
			}
		case "attempts":
			err = json.Unmarshal(val, &cc.Attempts)
		case "detail":
			cc.Detail = json.RawMessage(val)
		case "consumed":
			err = json.Unmarshal(val, &cc.Consumed)
		case "duration_ns":
			var n int64
			n, err = strconv.ParseInt(string(val), 10, 64)
			cc.Duration = time.Duration(n)
		}
		return err
	})
	if err != nil {
		return cc, fmt.Errorf("journal: record %d (%s): decode payload: %w", r.Seq, r.Type, err)
	}
	return cc, nil
}

// eachField calls fn with each top-level key of a JSON object and the raw
// bytes of its value. Keys are expected to be plain (no escapes), as the
// journal's own payload keys are.
func eachField(data []byte, fn func(key string, val []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return fmt.Errorf("expected a key at offset %d", i)
		}
		end, err := skipString(data, i)
		if err != nil {
			return err
		}
		key := string(data[i+1 : end-1])
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return fmt.Errorf("expected : at offset %d", i)
		}
		i = skipSpace(data, i+1)
		vend, err := skipValue(data, i)
		if err != nil {
			return err
		}
		if err := fn(key, data[i:vend]); err != nil {
			return err
		}
		i = skipSpace(data, vend)
		if i >= len(data) {
			return fmt.Errorf("unterminated object")
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return nil
		default:
			return fmt.Errorf("expected , or } at offset %d", i)
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the offset just past the string starting at i.
func skipString(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d", i)
}

// skipValue returns the offset just past the JSON value starting at i.
func skipValue(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, fmt.Errorf("missing value")
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := skipString(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unterminated value at offset %d", i)
	default:
		j := i
		for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("missing value at offset %d", i)
		}
		return j, nil
	}
}

// jsonString decodes a JSON string value, quickly when it has no escapes.
func jsonString(val []byte) (string, error) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", fmt.Errorf("want a string, got %.20s", val)
	}
	inner := val[1 : len(val)-1]
	for _, c := range inner {
		if c == '\\' || c < 0x20 {
			var s string
			err := json.Unmarshal(val, &s)
			return s, err
		}
	}
	if !utf8.Valid(inner) {
		var s string
		err := json.Unmarshal(val, &s)
		return s, err
	}
	return string(inner), nil
}
