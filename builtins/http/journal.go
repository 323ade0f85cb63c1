package http

import (
	"fmt"
	"slices"
	"unicode/utf8"

	"go.starlark.net/lib/time"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/starflow/starflow/internal/value"
	"github.com/starflow/starflow/journal"
	sfrt "github.com/starflow/starflow/runtime"
)

// A call's arguments are journaled in its call.started record, and its
// response in its call.completed record; a record holds at most
// journal.MaxRecordBytes. A value that cannot be journaled must fail the
// call before the request is sent where that can be known (the
// arguments), and as soon as the response is in where it cannot: a
// journal write that fails leaves the run running, and every resume would
// send the request again.

const (
	kindJournal = "too_large_for_journal"

	// recordSlack is what a record holds besides the arguments or the
	// result: step, key, position, digest, detail, attempts.
	recordSlack = 64 << 10

	// maxJournaled is the largest journal form of arguments or a result.
	maxJournaled = journal.MaxRecordBytes - recordSlack
)

// argsJournalSize returns the size of the journal form of a call's
// (redacted) arguments when it is more than a record holds, and 0 when
// they fit. It encodes them only when a bound computed without encoding
// says they might not fit.
func argsJournalSize(args starlark.Tuple, kwargs []starlark.Tuple) int {
	total := 64
	for _, a := range args {
		total += sizeBound(a, 0) + 1
	}
	for _, kv := range kwargs {
		total += sizeBound(kv[0], 0) + sizeBound(kv[1], 0) + 2
	}
	if total <= maxJournaled {
		return 0
	}
	all := slices.Clone(args)
	kw := starlark.NewDict(len(kwargs))
	for _, kv := range kwargs {
		kw.SetKey(kv[0], kv[1])
	}
	all = append(all, kw)
	enc, err := value.EncodeCanonical(starlark.NewList(all))
	if err != nil {
		return 0 // the runtime reports arguments it cannot journal
	}
	if len(enc) <= maxJournaled {
		return 0
	}
	return len(enc)
}

// summarizeArgs replaces the largest arguments by a summary ("<body: N
// bytes in journal form, too large to journal>") until the rest fits in a
// record: the journal form of a call that fails because its arguments are
// too large. The summary names the size, so that a changed argument still
// changes the call's digest.
func summarizeArgs(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Tuple, []starlark.Tuple) {
	type arg struct {
		name string
		pos  int // index in args, or -1 - index in kwargs
		size int
	}
	var list []arg
	total := 64
	for i, a := range args {
		s := exactSize(a)
		list = append(list, arg{fmt.Sprintf("argument %d", i+1), i, s})
		total += s + 1
	}
	for i, kv := range kwargs {
		name, _ := starlark.AsString(kv[0])
		s := exactSize(kv[1])
		list = append(list, arg{name, -1 - i, s})
		total += len(name) + s + 4
	}
	slices.SortStableFunc(list, func(a, b arg) int { return b.size - a.size })
	args, kwargs = slices.Clone(args), slices.Clone(kwargs)
	for _, a := range list {
		if total <= maxJournaled {
			break
		}
		sum := starlark.String(fmt.Sprintf("<%s: %d bytes in journal form, too large to journal>", a.name, a.size))
		if a.pos >= 0 {
			args[a.pos] = sum
		} else {
			kwargs[-1-a.pos] = starlark.Tuple{kwargs[-1-a.pos][0], sum}
		}
		total -= a.size - len(sum) - 2
	}
	return args, kwargs
}

// exactSize returns the size of v's canonical journal form, or its bound
// when it is small or cannot be encoded.
func exactSize(v starlark.Value) int {
	b := sizeBound(v, 0)
	if b < 64<<10 {
		return b
	}
	enc, err := value.EncodeCanonical(v)
	if err != nil {
		return b
	}
	return len(enc)
}

// responseJournalSize returns the size of the journal form of a response
// when it is more than a record holds, and 0 when it fits. resp holds
// body; its json field refers to the body when the body is valid UTF-8
// (value.JSONOf).
func responseJournalSize(resp starlark.Value, body string, headers *starlark.Dict, js starlark.Value) int {
	bound := 1024 + sizeBound(starlark.String(body), 0) + sizeBound(headers, 0)
	if j, ok := js.(value.JSONOf); ok && !utf8.ValidString(body) {
		bound += sizeBound(j.Value(), 0)
	}
	if bound <= maxJournaled {
		return 0
	}
	enc, err := value.Encode(resp)
	if err != nil || len(enc) <= maxJournaled {
		return 0 // the runtime reports results it cannot journal
	}
	return len(enc)
}

// tooLarge is more than any journal form may take: sizeBound returns it
// for values it cannot bound, so that they are encoded to be measured.
const tooLarge = journal.MaxRecordBytes + 1

// sizeBound returns an upper bound on the size of v's journal form
// (value.Encode and value.EncodeCanonical), without encoding it.
func sizeBound(v starlark.Value, depth int) int {
	if depth > 100 {
		return tooLarge
	}
	add := func(n *int, x int) {
		if *n += x; *n > tooLarge {
			*n = tooLarge
		}
	}
	switch x := v.(type) {
	case starlark.NoneType, starlark.Bool:
		return 5
	case starlark.Int:
		return len(x.String())
	case starlark.Float:
		return 32
	case starlark.String:
		return stringBound(string(x))
	case starlark.Bytes:
		return 12 + (len(x)+2)/3*4
	case value.Secret:
		return 16 + stringBound(x.Name)
	case time.Time, time.Duration:
		return 64
	case value.JSONOf:
		return sizeBound(x.Value(), depth+1)
	case *starlark.List, starlark.Tuple, *starlark.Set:
		n := 16
		iter := x.(starlark.Iterable).Iterate()
		defer iter.Done()
		var e starlark.Value
		for iter.Next(&e) && n < tooLarge {
			add(&n, sizeBound(e, depth+1)+1)
		}
		return n
	case *starlark.Dict:
		n := 16
		for _, kv := range x.Items() {
			add(&n, sizeBound(kv[0], depth+1)+sizeBound(kv[1], depth+1)+6)
		}
		return n
	case *starlarkstruct.Struct:
		n := 16
		for _, name := range x.AttrNames() {
			f, _ := x.Attr(name)
			add(&n, stringBound(name)+sizeBound(f, depth+1)+2)
		}
		return n
	}
	return tooLarge
}

// stringBound returns an upper bound on the size of a string's journal
// form: JSON with Go's escapes, or base64 when it is not UTF-8.
func stringBound(s string) int {
	if !utf8.ValidString(s) {
		return 12 + (len(s)+2)/3*4
	}
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			n += 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		case c == 0xe2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9):
			n += 6 // U+2028, U+2029
			i += 2
		default:
			n++
		}
	}
	return n
}

// tooLargeToSend is the failure of a call whose arguments cannot be
// journaled.
func tooLargeToSend(size int) *sfrt.Error {
	return &sfrt.Error{Kind: kindJournal, Message: fmt.Sprintf("the request was not sent: its arguments take %d bytes in journal form, more than a journal record holds (journal.MaxRecordBytes: %d bytes, with the call's other fields)", size, journal.MaxRecordBytes)}
}

// tooLargeToJournal is the failure of a call whose response cannot be
// journaled.
func tooLargeToJournal(size, body int) *sfrt.Error {
	return &sfrt.Error{Kind: kindJournal, Message: fmt.Sprintf("the response (a %d-byte body) takes %d bytes in journal form, more than a journal record holds (journal.MaxRecordBytes: %d bytes, with the call's other fields); it was received but cannot be recorded", body, size, journal.MaxRecordBytes)}
}
