// Package value converts Starlark values to and from the JSON forms that
// starflow writes into journals, run inputs and run results.
//
// Journal form (Encode/Decode) is lossless for every value a builtin may
// return or take: plain JSON where JSON suffices, and one-key objects whose
// key starts with "$" for the rest:
//
//	{"$tuple": [...]}        tuple
//	{"$struct": {...}}       struct (fields sorted by name)
//	{"$dict": [[k, v], ...]} dict with a non-string key or a key starting with "$"
//	{"$set": [...]}          set
//	{"$bytes": "base64"}     bytes
//	{"$str": "base64"}       string that is not valid UTF-8
//	{"$float": "nan"}        NaN and infinities ("+inf", "-inf")
//	{"$time": "RFC 3339"}    time.time
//	{"$duration": "1h2m"}    time.duration
//	{"$secret": "NAME"}      secret reference (never its value)
//	{"$json": "FIELD"}       the JSON-decoded value of sibling field FIELD
//
// The last tag stores a value once where a builtin returns both a text and
// its parsed form (an http response's json beside its body): a JSONOf
// field (see ParseJSONOf) is written as {"$json": "body"} when it is a
// field of the same struct or string-keyed dict as "body", and that field
// holds the very text it was parsed from, as valid UTF-8. Decode gives
// the field FromJSON of its sibling's text: the same value the builtin
// made, which is what scripts see, live or replayed. Anywhere else (a
// list element, a sibling that differs) a JSONOf is written as its value.
// "$json" is only valid as a field of an object whose named sibling is a
// string; FromJSON must keep reading every text it once accepted, since
// journals hold texts that it parses again.
//
// Numbers keep their kind: an integer is written without a fraction or
// exponent (any size), a float always with one. Dicts keep their insertion
// order, except in canonical form (EncodeCanonical), which sorts keys so
// that equal arguments always produce equal bytes and digests.
//
// Plain form (ToJSON/FromJSON) is ordinary JSON for run inputs and results.
package value

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	gotime "time"
	"unicode/utf8"

	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Secret is a reference to a secret by name. It is resolved to its value
// only at the moment a builtin uses it, and only its name is ever written
// to a journal, a log or an error.
type Secret struct{ Name string }

var (
	_ starlark.Value    = Secret{}
	_ starlark.HasAttrs = Secret{}
)

func (s Secret) String() string        { return "<secret " + s.Name + ">" }
func (s Secret) Type() string          { return "secret" }
func (s Secret) Freeze()               {}
func (s Secret) Truth() starlark.Bool  { return true }
func (s Secret) Hash() (uint32, error) { return starlark.String(s.Name).Hash() }
func (s Secret) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		return starlark.String(s.Name), nil
	}
	return nil, nil
}
func (s Secret) AttrNames() []string { return []string{"name"} }

// Binary refuses concatenation so that a secret cannot leak into a plain
// string (which would be journaled).
func (s Secret) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	return nil, fmt.Errorf("%s cannot be combined with %s using %s: pass the secret itself where a builtin accepts it (for example as a header value)", s, y.Type(), op)
}

// JSONOf is the value of a field that holds the JSON-decoded form of a
// sibling string field (an http response's json, parsed from its body).
// It behaves as that value, which Value returns; Encode writes it as
// {"$json": "<field>"}, so that the journal holds the text once. Scripts
// never see a JSONOf: they see results decoded from the journal.
type JSONOf struct {
	field string
	text  string
	v     starlark.Value
}

var _ starlark.Value = JSONOf{}

// ParseJSONOf parses text with FromJSON, as the value of a field whose
// sibling field named field holds text.
func ParseJSONOf(field, text string) (JSONOf, error) {
	v, err := FromJSON([]byte(text))
	if err != nil {
		return JSONOf{}, err
	}
	return JSONOf{field: field, text: text, v: v}, nil
}

// Value returns the decoded value.
func (j JSONOf) Value() starlark.Value { return j.v }

func (j JSONOf) String() string        { return j.v.String() }
func (j JSONOf) Type() string          { return j.v.Type() }
func (j JSONOf) Freeze()               { j.v.Freeze() }
func (j JSONOf) Truth() starlark.Bool  { return j.v.Truth() }
func (j JSONOf) Hash() (uint32, error) { return j.v.Hash() }

// refers reports whether j may be written as a reference to the field
// named j.field of its object, whose value is sibling.
func (j JSONOf) refers(self string, sibling starlark.Value) bool {
	s, ok := sibling.(starlark.String)
	return ok && self != j.field && len(s) == len(j.text) && string(s) == j.text && utf8.ValidString(j.text)
}

// Encode writes v in journal form, preserving dict order.
func Encode(v starlark.Value) ([]byte, error) { return encode(v, false) }

// EncodeCanonical writes v in journal form with dict keys sorted.
func EncodeCanonical(v starlark.Value) ([]byte, error) { return encode(v, true) }

func encode(v starlark.Value, canonical bool) ([]byte, error) {
	e := encoder{canonical: canonical}
	if err := e.value(v, "value"); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

type encoder struct {
	buf       bytes.Buffer
	canonical bool
	depth     int
}

func (e *encoder) str(s string) {
	b, _ := json.Marshal(s)
	e.buf.Write(b)
}

func (e *encoder) tag(name string, fn func() error) error {
	e.buf.WriteString(`{"$` + name + `":`)
	if err := fn(); err != nil {
		return err
	}
	e.buf.WriteByte('}')
	return nil
}

func (e *encoder) value(v starlark.Value, path string) error {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > 1000 {
		return fmt.Errorf("%s: nested too deeply (more than 1000 levels)", path)
	}
	switch v := v.(type) {
	case starlark.NoneType:
		e.buf.WriteString("null")
	case starlark.Bool:
		if v {
			e.buf.WriteString("true")
		} else {
			e.buf.WriteString("false")
		}
	case starlark.Int:
		e.buf.WriteString(v.String())
	case starlark.Float:
		f := float64(v)
		switch {
		case math.IsNaN(f):
			e.buf.WriteString(`{"$float":"nan"}`)
		case math.IsInf(f, 1):
			e.buf.WriteString(`{"$float":"+inf"}`)
		case math.IsInf(f, -1):
			e.buf.WriteString(`{"$float":"-inf"}`)
		default:
			e.buf.WriteString(formatFloat(f))
		}
	case starlark.String:
		if utf8.ValidString(string(v)) {
			e.str(string(v))
		} else {
			e.buf.WriteString(`{"$str":"` + base64.StdEncoding.EncodeToString([]byte(v)) + `"}`)
		}
	case starlark.Bytes:
		e.buf.WriteString(`{"$bytes":"` + base64.StdEncoding.EncodeToString([]byte(v)) + `"}`)
	case *starlark.List:
		return e.seq(v, v.Len(), path)
	case starlark.Tuple:
		return e.tag("tuple", func() error { return e.seq(v, v.Len(), path) })
	case *starlark.Set:
		return e.tag("set", func() error { return e.seq(v, v.Len(), path) })
	case *starlark.Dict:
		return e.dict(v, path)
	case *starlarkstruct.Struct:
		return e.tag("struct", func() error {
			sd := make(starlark.StringDict)
			v.ToStringDict(sd)
			return e.object(sd.Keys(), func(k string) starlark.Value { return sd[k] }, path)
		})
	case time.Time:
		e.buf.WriteString(`{"$time":"` + gotime.Time(v).UTC().Format(gotime.RFC3339Nano) + `"}`)
	case time.Duration:
		e.buf.WriteString(`{"$duration":"` + gotime.Duration(v).String() + `"}`)
	case Secret:
		e.buf.WriteString(`{"$secret":`)
		e.str(v.Name)
		e.buf.WriteByte('}')
	case JSONOf:
		// Not a field beside its text (see object): the value itself.
		return e.value(v.v, path)
	default:
		return fmt.Errorf("%s: a %s cannot be journaled (only None, bool, int, float, string, bytes, list, tuple, dict, set, struct, time, duration and secret values can)", path, v.Type())
	}
	return nil
}

func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

func (e *encoder) seq(it starlark.Iterable, n int, path string) error {
	e.buf.WriteByte('[')
	iter := it.Iterate()
	defer iter.Done()
	var x starlark.Value
	for i := 0; iter.Next(&x); i++ {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		if err := e.value(x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	e.buf.WriteByte(']')
	return nil
}

func (e *encoder) dict(d *starlark.Dict, path string) error {
	items := d.Items()
	plain := true
	keys := make([]string, 0, len(items))
	for _, kv := range items {
		s, ok := kv[0].(starlark.String)
		if !ok || strings.HasPrefix(string(s), "$") || !utf8.ValidString(string(s)) {
			plain = false
			break
		}
		keys = append(keys, string(s))
	}
	if plain {
		return e.object(keys, func(k string) starlark.Value {
			v, _, _ := d.Get(starlark.String(k))
			return v
		}, path)
	}
	if e.canonical {
		// Sort pairs by the encoding of their keys.
		type pair struct {
			k   []byte
			val starlark.Value
		}
		pairs := make([]pair, len(items))
		for i, kv := range items {
			kb, err := encode(kv[0], true)
			if err != nil {
				return err
			}
			pairs[i] = pair{kb, kv[1]}
		}
		sort.Slice(pairs, func(i, j int) bool { return bytes.Compare(pairs[i].k, pairs[j].k) < 0 })
		return e.tag("dict", func() error {
			e.buf.WriteByte('[')
			for i, p := range pairs {
				if i > 0 {
					e.buf.WriteByte(',')
				}
				e.buf.WriteByte('[')
				e.buf.Write(p.k)
				e.buf.WriteByte(',')
				if err := e.value(p.val, fmt.Sprintf("%s[%s]", path, p.k)); err != nil {
					return err
				}
				e.buf.WriteByte(']')
			}
			e.buf.WriteByte(']')
			return nil
		})
	}
	return e.tag("dict", func() error {
		e.buf.WriteByte('[')
		for i, kv := range items {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			e.buf.WriteByte('[')
			if err := e.value(kv[0], path+".key"); err != nil {
				return err
			}
			e.buf.WriteByte(',')
			if err := e.value(kv[1], fmt.Sprintf("%s[%s]", path, kv[0])); err != nil {
				return err
			}
			e.buf.WriteByte(']')
		}
		e.buf.WriteByte(']')
		return nil
	})
}

func (e *encoder) object(keys []string, get func(string) starlark.Value, path string) error {
	if e.canonical {
		keys = append([]string(nil), keys...)
		sort.Strings(keys)
	}
	e.buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.str(k)
		e.buf.WriteByte(':')
		v := get(k)
		if j, ok := v.(JSONOf); ok && j.refers(k, get(j.field)) {
			e.buf.WriteString(`{"$json":`)
			e.str(j.field)
			e.buf.WriteByte('}')
			continue
		}
		if err := e.value(v, fmt.Sprintf("%s[%q]", path, k)); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

// Decode reads a value in journal form.
func Decode(data []byte) (starlark.Value, error) {
	d := decoder{data: data, tagged: true}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	if r, ok := v.(jsonRef); ok {
		return nil, r.misplaced()
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the value")
	}
	return v, nil
}

// FromJSON converts ordinary JSON (a run's input) to Starlark values:
// objects become dicts in their order, arrays lists, numbers ints when
// written without fraction or exponent and floats otherwise. Text that is
// not UTF-8, and \u escapes of half a surrogate pair, are errors naming
// their offset (encoding/json would replace them with U+FFFD).
func FromJSON(data []byte) (starlark.Value, error) {
	d := decoder{data: data}
	d.space()
	if d.pos == len(d.data) {
		return nil, fmt.Errorf("empty JSON document")
	}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// ToJSON converts a Starlark value to ordinary JSON (a run's result):
// tuples and sets become arrays, structs objects, times RFC 3339 strings,
// durations strings such as "1h30m0s", secrets "<secret NAME>". Dicts must
// have string keys. Other values (functions, bytes) and strings that are
// not UTF-8 are an error naming where in the value they are.
func ToJSON(v starlark.Value) ([]byte, error) {
	var buf bytes.Buffer
	if err := toJSON(&buf, v, "result", 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func toJSON(buf *bytes.Buffer, v starlark.Value, path string, depth int) error {
	if depth > 1000 {
		return fmt.Errorf("%s: nested too deeply (more than 1000 levels)", path)
	}
	writeStr := func(s string) {
		b, _ := json.Marshal(s)
		buf.Write(b)
	}
	seq := func(it starlark.Iterable) error {
		buf.WriteByte('[')
		iter := it.Iterate()
		defer iter.Done()
		var x starlark.Value
		for i := 0; iter.Next(&x); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := toJSON(buf, x, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	switch v := v.(type) {
	case starlark.NoneType:
		buf.WriteString("null")
	case starlark.Bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case starlark.Int:
		buf.WriteString(v.String())
	case starlark.Float:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%s: %v cannot be represented in JSON", path, v)
		}
		buf.WriteString(formatFloat(f))
	case starlark.String:
		if !utf8.ValidString(string(v)) {
			return textError(path, "the string", string(v))
		}
		writeStr(string(v))
	case *starlark.List:
		return seq(v)
	case starlark.Tuple:
		return seq(v)
	case *starlark.Set:
		return seq(v)
	case *starlark.Dict:
		buf.WriteByte('{')
		for i, kv := range v.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return fmt.Errorf("%s: dict key %s is a %s; JSON object keys must be strings", path, kv[0], kv[0].Type())
			}
			if !utf8.ValidString(string(k)) {
				return textError(path, fmt.Sprintf("the dict key %q", string(k)), string(k))
			}
			if i > 0 {
				buf.WriteByte(',')
			}
			writeStr(string(k))
			buf.WriteByte(':')
			if err := toJSON(buf, kv[1], fmt.Sprintf("%s[%q]", path, string(k)), depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case *starlarkstruct.Struct:
		sd := make(starlark.StringDict)
		v.ToStringDict(sd)
		buf.WriteByte('{')
		for i, k := range sd.Keys() {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeStr(k)
			buf.WriteByte(':')
			if err := toJSON(buf, sd[k], path+"."+k, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case time.Time:
		writeStr(gotime.Time(v).UTC().Format(gotime.RFC3339Nano))
	case time.Duration:
		writeStr(gotime.Duration(v).String())
	case Secret:
		writeStr(v.String())
	case JSONOf:
		return toJSON(buf, v.v, path, depth)
	default:
		return fmt.Errorf("%s: a %s cannot be represented in JSON", path, v.Type())
	}
	return nil
}

// decoder is a small order-preserving JSON reader. encoding/json decodes
// objects into Go maps, which lose the order Starlark dicts keep.
type decoder struct {
	data   []byte
	pos    int
	tagged bool
	depth  int
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (starlark.Value, error) {
	d.space()
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input")
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > 1000 {
		return nil, d.errorf("nested too deeply")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		elems, err := d.array()
		if err != nil {
			return nil, err
		}
		return starlark.NewList(elems), nil
	case c == '"':
		s, err := d.string()
		if err != nil {
			return nil, err
		}
		return starlark.String(s), nil
	case c == 't':
		return d.literal("true", starlark.True)
	case c == 'f':
		return d.literal("false", starlark.False)
	case c == 'n':
		return d.literal("null", starlark.None)
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	default:
		return nil, d.errorf("unexpected character %q", c)
	}
}

func (d *decoder) literal(word string, v starlark.Value) (starlark.Value, error) {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(word)) {
		return nil, d.errorf("invalid literal")
	}
	d.pos += len(word)
	return v, nil
}

// jsonNumber is the grammar of a JSON number (RFC 8259, section 6);
// strconv alone also takes "1.", ".5" and "01.5".
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func (d *decoder) number() (starlark.Value, error) {
	start := d.pos
	isFloat := false
	if d.data[d.pos] == '-' {
		d.pos++
	}
	digits := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c >= '0' && c <= '9':
		case c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-':
			isFloat = true
		default:
			goto done
		}
		d.pos++
	}
done:
	lit := string(d.data[start:d.pos])
	if d.pos == digits || !jsonNumber.MatchString(lit) {
		return nil, d.errorf("invalid number %q", lit)
	}
	if isFloat {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return nil, d.errorf("number %s is out of the range of a float", lit)
		}
		return starlark.Float(f), nil
	}
	if len(lit) > 1 && (lit[0] == '0' || (lit[0] == '-' && len(lit) > 2 && lit[1] == '0')) {
		return nil, d.errorf("invalid number %q (leading zero)", lit)
	}
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return starlark.MakeInt64(i), nil
	}
	b, ok := new(big.Int).SetString(lit, 10)
	if !ok {
		return nil, d.errorf("invalid number %q", lit)
	}
	return starlark.MakeBigInt(b), nil
}

func (d *decoder) string() (string, error) {
	// Find the closing quote, then let encoding/json handle escapes.
	start := d.pos
	d.pos++
	simple := true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '\\' {
			simple = false
			d.pos += 2
			continue
		}
		if c < 0x20 {
			return "", d.errorf("control character in string")
		}
		if c == '"' {
			d.pos++
			raw := d.data[start+1 : d.pos-1]
			if simple && utf8.Valid(raw) {
				return string(raw), nil
			}
			if !d.tagged {
				// Plain JSON (inputs, answers, what builtins parse) must be
				// text: refuse what encoding/json would turn into U+FFFD.
				if err := checkText(raw, start+1); err != nil {
					return "", err
				}
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
				return "", fmt.Errorf("invalid JSON string at offset %d: %v", start, err)
			}
			return s, nil
		}
		d.pos++
	}
	return "", d.errorf("unterminated string")
}

// checkText reports, at its offset in the document, the first byte of a
// JSON string's raw contents that is not UTF-8, or the first \u escape of
// half a UTF-16 surrogate pair: neither encodes a character, and decoders
// silently turn both into U+FFFD.
func checkText(raw []byte, offset int) error {
	if i := InvalidUTF8(raw); i >= 0 {
		return fmt.Errorf("invalid JSON at offset %d: byte 0x%02x is not UTF-8 (JSON text must be UTF-8)", offset+i, raw[i])
	}
	for i := 0; i+1 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // an escaped character, perhaps a backslash
			continue
		}
		r, ok := hex4(raw[i+2:])
		if !ok || r < 0xd800 || r > 0xdfff {
			i += 5
			continue
		}
		if r <= 0xdbff && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
			if lo, ok := hex4(raw[i+8:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
				i += 11
				continue
			}
		}
		return fmt.Errorf("invalid JSON at offset %d: \\u%04x is half of a UTF-16 surrogate pair and encodes no character", offset+i, r)
	}
	return nil
}

// hex4 reads four hex digits.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// InvalidUTF8 returns the index of the first byte of b that is not part
// of valid UTF-8, or -1.
func InvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// textError explains a string in a result that is not UTF-8.
func textError(path, what, s string) error {
	i := InvalidUTF8([]byte(s))
	return fmt.Errorf("%s: %s is not valid UTF-8 (byte 0x%02x at offset %d of %d) and JSON text must be; decode or clean binary data before returning it", path, what, s[i], i, len(s))
}

func (d *decoder) array() ([]starlark.Value, error) {
	d.pos++ // [
	var elems []starlark.Value
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return elems, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		if r, ok := v.(jsonRef); ok {
			return nil, r.misplaced()
		}
		elems = append(elems, v)
		d.space()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unterminated array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return elems, nil
		default:
			return nil, d.errorf("expected , or ] in array")
		}
	}
}

func (d *decoder) object() (starlark.Value, error) {
	d.pos++ // {
	dict := starlark.NewDict(4)
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return dict, nil
	}
	first := true
	var refs []string // keys whose value is a $json reference
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a string key in object")
		}
		k, err := d.string()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected : after object key")
		}
		d.pos++
		if first && d.tagged && strings.HasPrefix(k, "$") {
			return d.tagged1(k)
		}
		first = false
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		if _, ok := v.(jsonRef); ok {
			refs = append(refs, k)
		}
		if err := dict.SetKey(starlark.String(k), v); err != nil {
			return nil, err
		}
		d.space()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unterminated object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			if err := resolveJSONRefs(dict, refs); err != nil {
				return nil, d.errorf("%v", err)
			}
			return dict, nil
		default:
			return nil, d.errorf("expected , or } in object")
		}
	}
}

// tagged1 decodes the body of a one-key tagged object; the key has been read.
func (d *decoder) tagged1(tag string) (starlark.Value, error) {
	var v starlark.Value
	var err error
	strBody := func() (string, error) {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return "", d.errorf("%s wants a string", tag)
		}
		return d.string()
	}
	switch tag {
	case "$tuple", "$set":
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '[' {
			return nil, d.errorf("%s wants an array", tag)
		}
		var elems []starlark.Value
		elems, err = d.array()
		if err == nil {
			if tag == "$tuple" {
				v = starlark.Tuple(elems)
			} else {
				set := starlark.NewSet(len(elems))
				for _, x := range elems {
					if err = set.Insert(x); err != nil {
						break
					}
				}
				v = set
			}
		}
	case "$struct":
		var fields starlark.Value
		fields, err = d.value()
		if err == nil {
			fd, ok := fields.(*starlark.Dict)
			if !ok {
				return nil, d.errorf("$struct wants an object")
			}
			kwargs := make(starlark.StringDict, fd.Len())
			for _, kv := range fd.Items() {
				kwargs[string(kv[0].(starlark.String))] = kv[1]
			}
			v = starlarkstruct.FromStringDict(starlarkstruct.Default, kwargs)
		}
	case "$dict":
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '[' {
			return nil, d.errorf("$dict wants an array of pairs")
		}
		var pairs []starlark.Value
		pairs, err = d.array()
		if err == nil {
			dict := starlark.NewDict(len(pairs))
			for _, p := range pairs {
				pl, ok := p.(*starlark.List)
				if !ok || pl.Len() != 2 {
					return nil, d.errorf("$dict entries must be [key, value] pairs")
				}
				if err = dict.SetKey(pl.Index(0), pl.Index(1)); err != nil {
					break
				}
			}
			v = dict
		}
	case "$bytes", "$str":
		var s string
		s, err = strBody()
		if err == nil {
			var b []byte
			b, err = base64.StdEncoding.DecodeString(s)
			if tag == "$bytes" {
				v = starlark.Bytes(b)
			} else {
				v = starlark.String(b)
			}
		}
	case "$float":
		var s string
		s, err = strBody()
		switch s {
		case "nan":
			v = starlark.Float(math.NaN())
		case "+inf":
			v = starlark.Float(math.Inf(1))
		case "-inf":
			v = starlark.Float(math.Inf(-1))
		default:
			if err == nil {
				err = d.errorf("unknown $float %q", s)
			}
		}
	case "$time":
		var s string
		s, err = strBody()
		if err == nil {
			var t gotime.Time
			t, err = gotime.Parse(gotime.RFC3339Nano, s)
			v = time.Time(t)
		}
	case "$duration":
		var s string
		s, err = strBody()
		if err == nil {
			var dur gotime.Duration
			dur, err = gotime.ParseDuration(s)
			v = time.Duration(dur)
		}
	case "$secret":
		var s string
		s, err = strBody()
		v = Secret{Name: s}
	case "$json":
		var s string
		s, err = strBody()
		v = jsonRef{field: s}
	default:
		return nil, d.errorf("unknown tag %q", tag)
	}
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != '}' {
		return nil, d.errorf("a tagged %s object must have exactly one key", tag)
	}
	d.pos++
	return v, nil
}

// jsonRef is a decoded {"$json": field}, until the object holding it is
// complete and it is replaced by the value it refers to.
type jsonRef struct{ field string }

func (r jsonRef) String() string        { return `{"$json": ` + strconv.Quote(r.field) + `}` }
func (r jsonRef) Type() string          { return "$json" }
func (r jsonRef) Freeze()               {}
func (r jsonRef) Truth() starlark.Bool  { return false }
func (r jsonRef) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: $json") }

func (r jsonRef) misplaced() error {
	return fmt.Errorf("invalid journal value: %s is only valid as a field of an object", r)
}

// resolveJSONRefs replaces the $json references among dict's values (at
// keys) by FromJSON of the sibling fields they name.
func resolveJSONRefs(dict *starlark.Dict, keys []string) error {
	for _, k := range keys {
		v, _, _ := dict.Get(starlark.String(k))
		ref := v.(jsonRef)
		sib, found, _ := dict.Get(starlark.String(ref.field))
		text, ok := sib.(starlark.String)
		if !found || !ok {
			return fmt.Errorf("field %q is %s, but the object has no string field %q", k, ref, ref.field)
		}
		dec, err := FromJSON([]byte(text))
		if err != nil {
			return fmt.Errorf("field %q is %s, but field %q does not hold JSON: %v", k, ref, ref.field, err)
		}
		if err := dict.SetKey(starlark.String(k), dec); err != nil {
			return err
		}
	}
	return nil
}

// SameJSON reports whether a and b are the same JSON value, as a run sees
// them: object key order and insignificant space aside, integers compared
// exactly (-0 is 0), other numbers as the float64 they become. Invalid
// JSON is never the same.
func SameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, error) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		if d.More() {
			return nil, fmt.Errorf("more than one value")
		}
		return v, nil
	}
	x, errx := decode(a)
	y, erry := decode(b)
	return errx == nil && erry == nil && sameJSONValue(x, y)
}

func sameJSONValue(x, y any) bool {
	switch x := x.(type) {
	case []any:
		y, ok := y.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSONValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := y.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameJSONValue(v, w) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := y.(json.Number)
		if !ok {
			return false
		}
		if !strings.ContainsAny(string(x), ".eE") && !strings.ContainsAny(string(y), ".eE") {
			i, _ := new(big.Int).SetString(string(x), 10)
			j, _ := new(big.Int).SetString(string(y), 10)
			return i != nil && j != nil && i.Cmp(j) == 0
		}
		f, err1 := strconv.ParseFloat(string(x), 64)
		g, err2 := strconv.ParseFloat(string(y), 64)
		return err1 == nil && err2 == nil && f == g
	}
	return x == y
}
