package value

import (
	"math"
	"strings"
	"testing"

	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

func eval(t *testing.T, expr string) starlark.Value {
	t.Helper()
	v, err := starlark.EvalOptions(&syntax.FileOptions{Set: true}, &starlark.Thread{}, "expr", expr, starlark.StringDict{
		"struct": starlark.NewBuiltin("struct", starlarkstruct.Make),
		"time":   time.Module,
	})
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

func TestRoundTrip(t *testing.T) {
	for _, expr := range []string{
		`None`, `True`, `False`, `0`, `-17`, `123456789012345678901234567890`, `-1 << 70`,
		`1.0`, `-0.5`, `1e300`, `float("nan")`, `float("+inf")`, `float("-inf")`,
		`""`, `"héllo \"quoted\"\n\t"`, `b"\xff\xfe".elems() and "x"`, `b"\x00\x01bytes"`,
		`[]`, `[1, "a", [2.5, None]]`, `()`, `(1,)`, `(1, (2, 3))`,
		`{}`, `{"b": 1, "a": 2}`, `{1: "int key", "s": 2}`, `{"$weird": 1}`, `{(1, 2): [3]}`,
		`set([3, 1, 2])`, `struct(name="x", n=1, inner=struct(ok=True))`,
		`time.parse_duration("1h2m3.5s")`, `time.from_timestamp(1700000000, 123)`,
		`{"list": [{"k": (1, b"x")}], "t": struct(d={"$": None})}`,
	} {
		v := eval(t, expr)
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode(%s): %v", expr, err)
		}
		dec, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%s) of %s: %v", expr, enc, err)
		}
		if f, ok := v.(starlark.Float); ok && math.IsNaN(float64(f)) {
			if g, ok := dec.(starlark.Float); !ok || !math.IsNaN(float64(g)) {
				t.Fatalf("%s: NaN decoded as %v", expr, dec)
			}
			continue
		}
		if dec.Type() != v.Type() {
			t.Fatalf("%s: type %s decoded as %s (%s)", expr, v.Type(), dec.Type(), enc)
		}
		eq, err := starlark.Equal(v, dec)
		if err != nil && v.Type() != "struct" {
			t.Fatalf("%s: compare: %v", expr, err)
		}
		if !eq && dec.String() != v.String() {
			t.Fatalf("%s: decoded %s, want %s (journal %s)", expr, dec, v, enc)
		}
		// Decoding is deterministic: re-encoding gives the same bytes.
		enc2, _ := Encode(dec)
		if string(enc2) != string(enc) {
			t.Fatalf("%s: re-encode %s != %s", expr, enc2, enc)
		}
	}
}

func TestDictOrder(t *testing.T) {
	v := eval(t, `{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}`)
	enc, _ := Encode(v)
	if string(enc) != `{"z":1,"a":2,"m":{"y":1,"b":2}}` {
		t.Fatalf("Encode kept no order: %s", enc)
	}
	dec, _ := Decode(enc)
	if dec.String() != v.String() {
		t.Fatalf("Decode lost order: %s", dec)
	}
	canon, _ := EncodeCanonical(v)
	if string(canon) != `{"a":2,"m":{"b":2,"y":1},"z":1}` {
		t.Fatalf("canonical: %s", canon)
	}
	other, _ := EncodeCanonical(eval(t, `{"m": {"b": 2, "y": 1}, "a": 2, "z": 1}`))
	if string(other) != string(canon) {
		t.Fatalf("canonical differs by insertion order: %s vs %s", other, canon)
	}
}

func TestIntsAndFloatsKeepTheirKind(t *testing.T) {
	enc, _ := Encode(eval(t, `[1, 1.0, 2e20, 100000000000000000000]`))
	if string(enc) != `[1,1.0,2e+20,100000000000000000000]` {
		t.Fatalf("got %s", enc)
	}
	dec, _ := Decode(enc)
	l := dec.(*starlark.List)
	for i, want := range []string{"int", "float", "float", "int"} {
		if l.Index(i).Type() != want {
			t.Fatalf("element %d is %s, want %s", i, l.Index(i).Type(), want)
		}
	}
}

func TestUnjournalable(t *testing.T) {
	_, err := Encode(starlark.NewList([]starlark.Value{starlark.NewBuiltin("f", nil)}))
	if err == nil || !strings.Contains(err.Error(), "value[0]") || !strings.Contains(err.Error(), "builtin_function_or_method") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretNeverLeaks(t *testing.T) {
	s := Secret{Name: "API_KEY"}
	enc, _ := Encode(starlark.NewList([]starlark.Value{s}))
	if string(enc) != `[{"$secret":"API_KEY"}]` {
		t.Fatalf("enc = %s", enc)
	}
	dec, _ := Decode(enc)
	if dec.(*starlark.List).Index(0) != s {
		t.Fatalf("dec = %v", dec)
	}
	_, err := starlark.Binary(syntax.PLUS, starlark.String("Bearer "), s)
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("concatenation allowed: %v", err)
	}
	if s.String() != "<secret API_KEY>" {
		t.Fatal(s.String())
	}
}

func TestJSON(t *testing.T) {
	in := `{"name": "ada", "n": 3, "x": 1.5, "tags": ["a", "b"], "nested": {"ok": true, "none": null}, "big": 12345678901234567890}`
	v, err := FromJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ToJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"name":"ada","n":3,"x":1.5,"tags":["a","b"],"nested":{"ok":true,"none":null},"big":12345678901234567890}` {
		t.Fatalf("out = %s", out)
	}
	// Input is plain JSON: "$" keys are data, not tags.
	v, err = FromJSON([]byte(`{"$struct": 1}`))
	if err != nil || v.Type() != "dict" {
		t.Fatalf("FromJSON tag: %v %v", v, err)
	}
	for _, bad := range []string{``, `{`, `{"a" 1}`, `[1,]`, `01`, `"x" y`, `tru`, `{"a":1,}`} {
		if _, err := FromJSON([]byte(bad)); err == nil {
			t.Errorf("FromJSON(%q) succeeded", bad)
		}
	}
	_, err = ToJSON(eval(t, `{"f": [len]}`))
	if err == nil || !strings.Contains(err.Error(), `result["f"][0]`) {
		t.Fatalf("ToJSON err = %v", err)
	}
	_, err = ToJSON(eval(t, `{1: 2}`))
	if err == nil || !strings.Contains(err.Error(), "must be strings") {
		t.Fatalf("ToJSON int key err = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"$tuple":[1,{"$bytes":"AA=="}]}`))
	f.Add([]byte(`{"a":[1,2.5,"x",null,true]}`))
	f.Add([]byte(`{"$struct":{"body":"[1,{\"a\":2}]","json":{"$json":"body"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("decoded %q to %v which does not encode: %v", data, v, err)
		}
		v2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		enc2, _ := Encode(v2)
		if string(enc2) != string(enc) {
			t.Fatalf("unstable: %s then %s", enc, enc2)
		}
	})
}

func TestInvalidUTF8String(t *testing.T) {
	v := starlark.String("ok\xff\xfe")
	enc, err := Encode(v)
	if err != nil || !strings.HasPrefix(string(enc), `{"$str":`) {
		t.Fatalf("enc = %s, %v", enc, err)
	}
	dec, err := Decode(enc)
	if err != nil || dec != v {
		t.Fatalf("dec = %q, %v", dec, err)
	}
}

func TestJSONOfIsJournaledAsAReference(t *testing.T) {
	body := `{"items": [1, 2.5, "x"], "ok": true}`
	js, err := ParseJSONOf("body", body)
	if err != nil {
		t.Fatal(err)
	}
	resp := starlarkstruct.FromStringDict(starlark.String("response"), starlark.StringDict{
		"status": starlark.MakeInt(200), "body": starlark.String(body), "json": js,
	})
	enc, err := Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"$struct":{"body":"{\"items\": [1, 2.5, \"x\"], \"ok\": true}","json":{"$json":"body"},"status":200}}`
	if string(enc) != want {
		t.Fatalf("enc %s\nwant %s", enc, want)
	}
	dec, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := dec.(*starlarkstruct.Struct).Attr("json")
	direct, _ := FromJSON([]byte(body))
	if eq, err := starlark.Equal(got, direct); err != nil || !eq || got.Type() != "dict" {
		t.Fatalf("json decoded as %s %v, want %s", got.Type(), got, direct)
	}
	// A dict with the field before its text, in insertion order.
	d := starlark.NewDict(2)
	d.SetKey(starlark.String("parsed"), mustJSONOf(t, "text", `[1, {"a": null}]`))
	d.SetKey(starlark.String("text"), starlark.String(`[1, {"a": null}]`))
	enc, _ = Encode(d)
	if string(enc) != `{"parsed":{"$json":"text"},"text":"[1, {\"a\": null}]"}` {
		t.Fatalf("dict enc %s", enc)
	}
	dec, err = Decode(enc)
	if err != nil || dec.String() != `{"parsed": [1, {"a": None}], "text": "[1, {\"a\": null}]"}` {
		t.Fatalf("dict dec %v, %v", dec, err)
	}
	// Plain JSON (a run's result) has the value.
	if out, _ := ToJSON(resp); !strings.Contains(string(out), `"json":{"items":[1,2.5,"x"],"ok":true}`) {
		t.Fatalf("ToJSON %s", out)
	}
}

func mustJSONOf(t *testing.T, field, text string) JSONOf {
	t.Helper()
	j, err := ParseJSONOf(field, text)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// Where the reference could not be resolved to the same text, the value
// is written instead.
func TestJSONOfWithoutItsTextIsWrittenAsItsValue(t *testing.T) {
	j := mustJSONOf(t, "body", `{"a": 1}`)
	for name, v := range map[string]starlark.Value{
		"in a list":       starlark.NewList([]starlark.Value{starlark.String(`{"a": 1}`), j}),
		"no sibling":      starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"json": j}),
		"other text":      starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"body": starlark.String(`{"a": 2}`), "json": j}),
		"sibling a bytes": starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{"body": starlark.Bytes(`{"a": 1}`), "json": j}),
	} {
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(string(enc), "$json") || !strings.Contains(string(enc), `{"a":1}`) {
			t.Fatalf("%s: %s", name, enc)
		}
	}
	// Text that is not UTF-8 is not JSON: there is nothing to refer to.
	if _, err := ParseJSONOf("body", "[\"\xff\"]"); err == nil {
		t.Fatal("ParseJSONOf accepted text that is not UTF-8")
	}
}

func TestMisplacedJSONReferenceIsAnError(t *testing.T) {
	for _, bad := range []string{
		`{"$json":"body"}`,
		`[{"$json":"body"}]`,
		`{"json":{"$json":"body"}}`,
		`{"body":1,"json":{"$json":"body"}}`,
		`{"body":"{not json","json":{"$json":"body"}}`,
		`{"a":{"$json":"b"},"b":{"$json":"a"}}`,
		`{"$tuple":[{"$json":"body"}]}`,
		`{"$dict":[["k",{"$json":"body"}]]}`,
	} {
		if v, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%s) = %v", bad, v)
		}
	}
}
