package badgerstore

import (
	"os"
	"path/filepath"
	"testing"
)

// A damaged store: flips and truncations anywhere in its files. Opening
// it and reading everything back never panics, and either fails with an
// error or gives exactly the original content: never something else.
//
// Two stores are damaged: one closed cleanly (its data in tables and the
// value log, the log empty), and a copy taken while it was open, as a
// crash leaves it (its data in a memtable file and the log). The seed
// corpus (flips at the start, middle and end of each file, and a
// truncation to half) runs in every go test; go test -fuzz explores more.
func FuzzStoreFiles(f *testing.F) {
	if raceDetector {
		f.Skip("a damage matrix: .ci/run runs it without -race in its own step")
	}
	fx := fuzzFixtures(f)
	for v, tmpl := range fx.dirs {
		for i, name := range fx.files[v] {
			st, err := os.Stat(filepath.Join(tmpl, name))
			if err != nil {
				f.Fatal(err)
			}
			size := uint32(st.Size())
			for _, pos := range []uint32{0, 9, size / 3, size / 2, size - 1} {
				f.Add(v == 1, uint8(i), pos, byte(0x41), false)
			}
			f.Add(v == 1, uint8(i), size/2, byte(0), true)
		}
	}
	f.Fuzz(func(t *testing.T, crashed bool, which uint8, pos uint32, x byte, truncate bool) {
		v := 0
		if crashed {
			v = 1
		}
		files := fx.files[v]
		name := files[int(which)%len(files)]
		st, err := os.Stat(filepath.Join(fx.dirs[v], name))
		if err != nil {
			t.Fatal(err)
		}
		off := int64(pos) % st.Size()
		got, err := openAndDump(t, fx.dirs[v], name, off, x, truncate, fx.ids, fx.blobs)
		if testing.Verbose() {
			t.Logf("%s (crashed %v) byte %d ^ %#x (truncate %v): %v", name, crashed, off, x, truncate, err)
		}
		if err == nil && got != fx.want {
			t.Fatalf("%s (crashed %v): byte %d ^ %#x (truncate %v): opened and read back different content without an error:\n%s", name, crashed, off, x, truncate, diff(fx.want, got))
		}
	})
}

type fixtures struct {
	dirs       [2]string   // closed cleanly, copied while open
	files      [2][]string // the files damaged in each
	ids, blobs []string
	want       string
}

// fuzzFixtures builds the two stores.
func fuzzFixtures(f *testing.F) *fixtures {
	var fx fixtures
	clean := filepath.Join(f.TempDir(), "clean")
	s, err := Open(clean, Options{})
	if err != nil {
		f.Fatal(err)
	}
	fx.ids, fx.blobs = fixture(f, s, defaultChunkSize+4096)
	fx.dirs[1] = copyDir(f, clean)
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	fx.dirs[0] = copyDir(f, clean)
	s, err = Open(copyDir(f, clean), Options{})
	if err != nil {
		f.Fatal(err)
	}
	fx.want, err = dump(s, fx.ids, fx.blobs)
	s.Close()
	if err != nil {
		f.Fatal(err)
	}
	for v := range fx.dirs {
		fx.files[v] = filesWith(f, fx.dirs[v], ".sst", ".vlog", ".mem", "MANIFEST", walFile)
	}
	return &fx
}
