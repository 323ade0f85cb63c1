package badgerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/starflow/starflow/journal"
)

// Checks before Badger opens the directory. Badger treats some damage as
// an empty or shorter database and "repairs" it by deleting files, and
// panics on other damage in goroutines of its own, where nothing can
// recover: so what can be checked is checked first, holding the directory
// lock, and refused with a clear error that changes nothing.

// lockDir takes the directory lock Badger uses (flock on the directory),
// for the checks that run before Badger opens it.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

var errLocked = errors.New("locked")

// preOpen checks the directory before Badger opens it:
//
//   - Data files (.sst; .vlog or .mem holding entries; a write-ahead log
//     holding batches) without a MANIFEST: refused (Badger would open an
//     empty database and delete the tables).
//   - Zero-length .mem and .vlog files (created by Badger, then the process
//     was killed): removed, they hold nothing (Badger refuses to open
//     them).
//   - The MANIFEST lists fewer tables than it did at the last checkpoint
//     (the log's header says which): refused (it was truncated; Badger
//     would delete the tables it no longer lists).
//   - Every table the MANIFEST lists is verified: its index and every
//     block against their checksums, with Badger's own reader, here where
//     a panic on damaged bytes can be recovered.
func preOpen(dir string, ws walState, log zerolog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	hasManifest := false
	var data []string
	for _, e := range ents {
		name := e.Name()
		if name == "MANIFEST" {
			hasManifest = true
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		ext := filepath.Ext(name)
		if ext != ".sst" && ext != ".vlog" && ext != ".mem" && name != walFile {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() == 0 && (ext == ".mem" || ext == ".vlog") {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("remove empty %s: %w", name, err)
			}
			log.Warn().Str("file", filepath.Join(dir, name)).Msg("removed an empty Badger file left by an interrupted process")
			continue
		}
		if holdsData(dir, name, ext, info.Size()) {
			data = append(data, name)
		}
	}
	if !hasManifest {
		if len(data) > 0 {
			sort.Strings(data)
			return &journal.CorruptError{Store: dir, Reason: fmt.Sprintf(
				"its MANIFEST file is missing, but it holds data (%s); opening it would discard that data, so nothing was changed: restore the MANIFEST (or the whole directory) from a backup, or move the directory aside and start a new store",
				fileList(data))}
		}
		return nil
	}
	mf, err := os.Open(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		return err
	}
	defer mf.Close()
	m, _, err := replayManifest(mf)
	if err != nil {
		return &journal.CorruptError{Store: dir, Reason: fmt.Sprintf("its MANIFEST cannot be read (%s); nothing was changed: restore the store from a backup", sanitize(err))}
	}
	var maxTable uint64
	for id := range m.Tables {
		maxTable = max(maxTable, id)
	}
	if maxTable < ws.maxTable {
		return &journal.CorruptError{Store: dir, Reason: fmt.Sprintf(
			"its MANIFEST lists tables up to %s, but it listed %s at the last checkpoint: the MANIFEST was truncated or replaced, and opening the store would delete tables; nothing was changed: restore the store from a backup",
			table.IDToFilename(maxTable), table.IDToFilename(ws.maxTable))}
	}
	ids := make([]uint64, 0, len(m.Tables))
	for id := range m.Tables {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if err := verifyTable(dir, id, m.Tables[id]); err != nil {
			return err
		}
	}
	return nil
}

// holdsData reports whether a file holds entries.
func holdsData(dir, name, ext string, size int64) bool {
	switch ext {
	case ".sst":
		return true
	case ".vlog", ".mem":
		// Both start with a 20-byte header; the first entry follows, and
		// an entry header is never all zeros. Preallocated space is.
		const header = 20
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return true
		}
		defer f.Close()
		buf := make([]byte, 64)
		n, _ := f.ReadAt(buf, header)
		for _, b := range buf[:n] {
			if b != 0 {
				return true
			}
		}
		return false
	}
	st, err := readWALState(dir)
	if err != nil || !st.exists {
		return err != nil
	}
	f, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return true
	}
	_, batches, err := parseWAL(f)
	return err != nil || len(batches) > 0
}

func fileList(names []string) string {
	if len(names) > 6 {
		return strings.Join(names[:6], ", ") + fmt.Sprintf(" and %d more files", len(names)-6)
	}
	return strings.Join(names, ", ")
}

// replayManifest reads a MANIFEST the way Badger does, without changing it.
func replayManifest(f *os.File) (m badger.Manifest, off int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading it panicked: %s", firstLine(fmt.Sprint(r)))
		}
	}()
	return badger.ReplayManifestFile(f, 0, badger.DefaultOptions(""))
}

// verifyTable checks a table's index and every block against their
// checksums, with Badger's own table reader.
func verifyTable(dir string, id uint64, tm badger.TableManifest) (err error) {
	name := table.NewFilename(id, dir)
	corrupt := func(reason string) error {
		return &journal.CorruptError{Store: dir, Reason: fmt.Sprintf("table %s: %s; restore the store from a backup", filepath.Base(name), reason)}
	}
	if tm.KeyID != 0 {
		return corrupt("it is encrypted, and this store never encrypts")
	}
	st, err := os.Stat(name)
	if errors.Is(err, os.ErrNotExist) {
		return corrupt("the MANIFEST lists it, but the file is missing")
	}
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return corrupt("the file is empty")
	}
	mf, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if err != nil && !errors.Is(err, z.NewFile) {
		return fmt.Errorf("open %s: %w", name, err)
	}
	var t *table.Table
	defer func() {
		if r := recover(); r != nil {
			err = corrupt("its index or a block is damaged (reading it panicked: " + firstLine(fmt.Sprint(r)) + ")")
		}
		if t != nil {
			// Close, not DecrRef: the last DecrRef deletes the file.
			t.Close(-1)
		} else {
			mf.Close(-1)
		}
	}()
	// OnBlockRead, and VerifyChecksum here rather than OnTableRead: on a
	// failed verification OpenTable closes the file itself, on other
	// failures it does not.
	topt := table.Options{
		ChkMode:     options.OnBlockRead,
		Compression: tm.Compression,
		BlockSize:   4 << 10,
	}
	t, err = table.OpenTable(mf, topt)
	if err != nil {
		t = nil
		return corrupt(sanitize(err))
	}
	return verifyBlocks(t, corrupt)
}

// verifyBlocks runs Table.VerifyChecksum. On a block that fails
// verification it dereferences a nil block (badger v4.9.6 table.go:711)
// instead of returning the error: the panic means exactly that.
func verifyBlocks(t *table.Table, corrupt func(string) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = corrupt("a block fails verification (checksum, or a damaged block header)")
		}
	}()
	if err := t.VerifyChecksum(); err != nil {
		return corrupt(sanitize(err))
	}
	return nil
}

// tablesInManifest returns the highest table ID the directory's MANIFEST
// lists (0 if none or unreadable).
func tablesInManifest(dir string) uint64 {
	f, err := os.Open(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		return 0
	}
	defer f.Close()
	m, _, err := replayManifest(f)
	if err != nil {
		return 0
	}
	var maxID uint64
	for id := range m.Tables {
		maxID = max(maxID, id)
	}
	return maxID
}

// firstLine returns the first line of s, at most 200 bytes.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// sanitize returns an error's message fit for callers: Badger's messages
// may carry a hexdump of a value (user data) after "Value:" or on later
// lines.
func sanitize(err error) string {
	s := err.Error()
	if i := strings.Index(s, " Value:"); i >= 0 {
		s = s[:i]
	}
	return firstLine(s)
}

// Files the checkpoint syncs.
func badgerLogFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".mem") || strings.HasSuffix(n, ".vlog") {
			if _, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSuffix(n, ".mem"), ".vlog"), 10, 64); err == nil {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

var _ = io.EOF
