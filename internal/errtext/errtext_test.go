package errtext

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanDropsHexDumps(t *testing.T) {
	value := []byte(`{"status":"completed","result":"my-private-data` + strings.Repeat("x", 5000) + `"}`)
	// Badger's message for a value over its limit.
	err := fmt.Errorf("journal write failed: write journal: %w", fmt.Errorf("Value with size %d exceeded %d limit. Value:\n%s", len(value), 16<<20, hex.Dump(value[:1<<10])))
	got := Of(err)
	if got != fmt.Sprintf("journal write failed: write journal: Value with size %d exceeded 16777216 limit (the data is not shown)", len(value)) {
		t.Fatalf("cleaned: %q", got)
	}
	for _, msg := range []string{"plain error", "file.yaml:3: bad\nfile.yaml:4: worse", "0000 not a dump"} {
		if Clean(msg) != msg {
			t.Errorf("Clean(%q) = %q", msg, Clean(msg))
		}
	}
}

func TestCleanBoundsLength(t *testing.T) {
	long := strings.Repeat("é", 3000) + "\xff"
	got := Clean(long)
	if len(got) > MaxLen+100 || !strings.HasSuffix(got, "more bytes not shown)") || !utf8.ValidString(got) {
		t.Fatalf("%d bytes: %q", len(got), got[len(got)-60:])
	}
}
