// Package errtext makes error messages fit to print: no dumps of data,
// bounded length. Libraries under starflow (Badger among them) put a hex
// dump of the value they refused into some errors; a journal value is a
// run's input, a result or an answer, and must not reach a terminal, a log
// or an API client that way. Errors name what failed and how big it was.
package errtext

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxLen bounds a cleaned message.
const MaxLen = 2000

// hexdumpLine is the first line of an encoding/hex Dump: an offset of 8
// hex digits, two spaces, bytes in hex.
var hexdumpLine = regexp.MustCompile(`(?m)^[0-9a-f]{8}  [0-9a-f]{2} `)

// Clean returns msg without any hex dump (and the label that introduces
// it), shortened to MaxLen bytes, as valid UTF-8.
func Clean(msg string) string {
	if loc := hexdumpLine.FindStringIndex(msg); loc != nil {
		head := strings.TrimRight(msg[:loc[0]], " \t\r\n")
		head = strings.TrimSuffix(head, ":")
		for _, label := range []string{" Value", " Key"} {
			head = strings.TrimSuffix(head, label)
		}
		head = strings.TrimRight(head, " .:")
		msg = head + " (the data is not shown)"
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > MaxLen {
		cut := MaxLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = fmt.Sprintf("%s... (%d more bytes not shown)", msg[:cut], len(msg)-cut)
	}
	return msg
}

// Of returns err's message, cleaned.
func Of(err error) string {
	if err == nil {
		return ""
	}
	return Clean(err.Error())
}
