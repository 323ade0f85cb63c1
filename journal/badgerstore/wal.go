package badgerstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// wal is the store's own write-ahead log, starflow.wal. Every batch the
// committer writes is first appended here (one pwrite), then committed to
// Badger without syncing; a batch that asks for durability is made durable
// by one fdatasync of this file, issued while Badger applies the batch (so
// the two overlap). At a checkpoint Badger's files are synced (see
// Store.checkpoint) and the log starts a new generation. On Open, the
// batches of the current generation are applied again, in order.
//
// Every batch has a log sequence number (LSN): 1, 2, 3, ... for the life of
// the store. Badger stores the LSN of the last batch it applied under the
// key s/lsn, in the same commit as the batch, and run metadata carries the
// LSN that wrote it. Open re-applies every batch of the generation, not
// only those above s/lsn: after a power loss Badger may hold a later batch
// without an earlier one (pages of different memtable files are written
// back in any order). Re-applying is idempotent but for keys a later batch
// also wrote, which it writes again; metadata is never put back over a
// version with a higher LSN (a crash can leave Badger ahead of the log:
// its commit reached the OS while the log's unsynced write was lost with
// the power).
//
// The file is preallocated (written with zeros) and overwritten in place,
// so that a durable append changes no file metadata.
//
// # Format, version 2 (all integers big-endian)
//
// Header, 64 bytes at offset 0, written (and fdatasynced) at each
// checkpoint:
//
//	0-3    magic "\x89SFW"
//	4-5    format version (2)
//	6-7    zero
//	8-11   generation
//	12-15  zero
//	16-23  base LSN: every batch up to it is durable in Badger's files
//	24-31  the highest table ID Badger's MANIFEST listed when the header was written
//	32-35  CRC-32C of bytes 0-31
//	36-63  zero
//
// Records follow from offset 64, each starting at a multiple of 8:
//
//	0-3    payload length n
//	4-7    generation (a record of another generation ends the log)
//	8-15   LSN (base+1 for the first record of a generation, then +1)
//	16-23  synced: the log offset up to which the file was known to be on
//	       stable storage when the record was written
//	24-27  CRC-32C of bytes 0-23 followed by the payload
//	28-31  zero
//	32-    payload (n bytes), then zeros up to a multiple of 8
//
// The payload is the batch's Badger writes in order, each
// 0x01 | uvarint key length | key | uvarint value length | value (a set),
// 0x03 | the same (a set of a chunk reference, see chunk.go), or
// 0x02 | uvarint key length | key (a delete).
//
// Reading stops at the first record that is not a valid record of the
// current generation: that is the end of the log, or a torn write from a
// crash (nothing after it was acknowledged as durable). It is damage
// instead if a later valid record of the generation says the log was
// synced past it: the bytes were on stable storage and changed since.
// Open refuses such a log with a *journal.CorruptError naming the file and
// the offset.
//
// Version 1 (starflow before LSNs) had no header and 12-byte record headers
// (length, generation, CRC); Open still reads it once, re-applies all of
// its batches as version 1 did, and the checkpoint that follows writes
// version 2.
type wal struct {
	f        *os.File
	path     string
	gen      uint32
	base     uint64 // LSN in the header
	maxTable uint64 // table ID in the header
	off      int64  // where the next record goes
	synced   int64  // the file is durable up to here
	size     int64  // preallocated length
	buf      []byte
	fsync    func(f *os.File, dataOnly bool) error
}

// walSize is the log's preallocated size. A checkpoint costs about six
// fsyncs and the write-back of what Badger accumulated since the last one,
// and the call that triggers it waits for it; Open after a crash re-applies
// up to a whole log. Measured with BenchmarkAppend and BenchmarkRecover
// (two-record calls, 2 vCPU, ext4 on virtio): at 1 MiB an async call pays
// about 2.8 µs for checkpoints (6-9 ms each, every 2,700 calls), 8% of the
// call; at 4 MiB about 1 µs (11-13 ms every 11,000 calls); 16 MiB would
// save 0.7 µs more, but recovering a full log takes 250 ms instead of 140
// ms (60 ms at 1 MiB), and every new store writes 16 MiB of zeros. (A
// variable for the benchmarks.)
var walSize int64 = 4 << 20

// A batch larger than this does not go through the log: it is committed to
// Badger and made durable by a checkpoint (Store.write).
func walMaxBatch() int64 { return walSize / 2 }

const (
	walFile       = "starflow.wal"
	walHeaderSize = 64
	walRecHeader  = 32
	walVersion    = 2
	walEntrySet   = 1
	walEntryDel   = 2
	walEntryChunk = 3
	walEntryLimit = 1 << 30

	walV1Header = 12
)

var walMagic = [4]byte{0x89, 'S', 'F', 'W'}

// walBatch is a batch read back from the log.
type walBatch struct {
	lsn  uint64 // 0 in a version 1 log
	off  int64
	sets []kv
}

// walState is what the log's header says, without its records.
type walState struct {
	exists   bool
	legacy   bool // version 1: no LSNs
	gen      uint32
	base     uint64
	maxTable uint64
}

// openWAL opens (creating) the log in dir and returns it with the batches
// its current generation holds, oldest first.
func openWAL(dir string, fsync func(*os.File, bool) error) (*wal, []walBatch, walState, error) {
	path := filepath.Join(dir, walFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, walState{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, walState{}, err
	}
	w := &wal{f: f, path: path, size: st.Size(), fsync: fsync}
	data := make([]byte, w.size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, w.size), data); err != nil {
		f.Close()
		return nil, nil, walState{}, fmt.Errorf("read %s: %w", walFile, err)
	}
	state, batches, err := parseWAL(data)
	if err != nil {
		f.Close()
		return nil, nil, walState{}, err
	}
	w.gen, w.base, w.maxTable = state.gen, state.base, state.maxTable
	if w.size < walSize {
		if err := preallocate(f, walSize, fsync); err != nil {
			f.Close()
			return nil, nil, walState{}, err
		}
		w.size = walSize
	}
	return w, batches, state, nil
}

// readWALState reads only the log's header (before Badger is opened).
func readWALState(dir string) (walState, error) {
	f, err := os.Open(filepath.Join(dir, walFile))
	if errors.Is(err, os.ErrNotExist) {
		return walState{}, nil
	}
	if err != nil {
		return walState{}, err
	}
	defer f.Close()
	var h [walHeaderSize]byte
	n, _ := io.ReadFull(f, h[:])
	if n < len(walMagic) || !bytes.Equal(h[:4], walMagic[:]) {
		return walState{exists: n > 0, legacy: true}, nil
	}
	return parseWALHeader(h[:n])
}

func parseWALHeader(h []byte) (walState, error) {
	if len(h) < walHeaderSize {
		return walState{}, fmt.Errorf("%s: header is %d bytes, want %d", walFile, len(h), walHeaderSize)
	}
	if crc32.Checksum(h[:32], castagnoli) != binary.BigEndian.Uint32(h[32:36]) {
		return walState{}, fmt.Errorf("%s: header checksum mismatch at offset 0", walFile)
	}
	if v := binary.BigEndian.Uint16(h[4:6]); v != walVersion {
		return walState{}, fmt.Errorf("%s: format version %d (this starflow reads versions 1 and 2)", walFile, v)
	}
	return walState{
		exists:   true,
		gen:      binary.BigEndian.Uint32(h[8:12]),
		base:     binary.BigEndian.Uint64(h[16:24]),
		maxTable: binary.BigEndian.Uint64(h[24:32]),
	}, nil
}

// walDamage is damage found in the log; Open reports it as corruption.
type walDamage struct {
	off    int64
	reason string
}

func (e *walDamage) Error() string {
	return fmt.Sprintf("%s is damaged at offset %d: %s", walFile, e.off, e.reason)
}

func parseWAL(data []byte) (walState, []walBatch, error) {
	if len(data) == 0 {
		return walState{}, nil, nil
	}
	if len(data) < 4 || !bytes.Equal(data[:4], walMagic[:]) {
		if looksLikeV2(data) {
			return walState{}, nil, &walDamage{0, "the file header's magic number is damaged"}
		}
		st, batches := parseWALv1(data)
		return st, batches, nil
	}
	st, err := parseWALHeader(data[:min(len(data), walHeaderSize)])
	if err != nil {
		return walState{}, nil, &walDamage{0, err.Error()}
	}
	size := int64(len(data))
	var batches []walBatch
	lsn := st.base
	off := int64(walHeaderSize)
	for off+walRecHeader <= size {
		n, ok := validRecord(data, off, st.gen)
		if !ok {
			break
		}
		h := data[off : off+walRecHeader]
		if got := binary.BigEndian.Uint64(h[8:16]); got != lsn+1 {
			return walState{}, nil, &walDamage{off, fmt.Sprintf("record has LSN %d, want %d", got, lsn+1)}
		}
		if synced := int64(binary.BigEndian.Uint64(h[16:24])); synced > off {
			return walState{}, nil, &walDamage{off, fmt.Sprintf("record says the log was synced up to %d, past its own offset", synced)}
		}
		sets, err := decodeBatch(data[off+walRecHeader : off+walRecHeader+n])
		if err != nil {
			return walState{}, nil, &walDamage{off, "undecodable batch with a valid checksum: " + err.Error()}
		}
		lsn++
		batches = append(batches, walBatch{lsn: lsn, off: off, sets: sets})
		off += align8(walRecHeader + n)
	}
	// The log ends at off: its end, or a torn write. It is damage if a
	// later record of this generation says the file was synced past it.
	for p := off + 8; p+walRecHeader <= size; p += 8 {
		if binary.BigEndian.Uint32(data[p+4:p+8]) != st.gen {
			continue
		}
		if _, ok := validRecord(data, p, st.gen); !ok {
			continue
		}
		if synced := int64(binary.BigEndian.Uint64(data[p+16 : p+24])); synced > off {
			return walState{}, nil, &walDamage{off, fmt.Sprintf("the record there is invalid, but the record at offset %d says the log was synced up to %d: data that was on stable storage has changed", p, synced)}
		}
	}
	return st, batches, nil
}

// validRecord reports whether a valid record of generation gen starts at
// off, and its payload length.
func validRecord(data []byte, off int64, gen uint32) (int64, bool) {
	size := int64(len(data))
	h := data[off : off+walRecHeader]
	n := int64(binary.BigEndian.Uint32(h[0:4]))
	if n == 0 || binary.BigEndian.Uint32(h[4:8]) != gen || off+walRecHeader+n > size {
		return 0, false
	}
	crc := crc32.Update(crc32.Checksum(h[:24], castagnoli), castagnoli, data[off+walRecHeader:off+walRecHeader+n])
	return n, crc == binary.BigEndian.Uint32(h[24:28])
}

// looksLikeV2 tells a version 2 header with a damaged magic number from a
// version 1 file (whose first bytes are a record length).
func looksLikeV2(data []byte) bool {
	if len(data) < walHeaderSize {
		return false
	}
	match := 0
	for i := range walMagic {
		if data[i] == walMagic[i] {
			match++
		}
	}
	return match >= 2 || (binary.BigEndian.Uint16(data[4:6]) == walVersion && crc32.Checksum(data[:32], castagnoli) == binary.BigEndian.Uint32(data[32:36]))
}

// parseWALv1 reads a version 1 log: record = length u32 | generation u32 |
// CRC-32C(payload) u32 | payload, from offset 0, the generation of the
// first record being current. It stops at the first invalid record, as
// version 1 did.
func parseWALv1(data []byte) (walState, []walBatch) {
	st := walState{exists: true, legacy: true}
	size := int64(len(data))
	if size < walV1Header {
		return st, nil
	}
	st.gen = binary.BigEndian.Uint32(data[4:8])
	var batches []walBatch
	for off := int64(0); off+walV1Header <= size; {
		n := int64(binary.BigEndian.Uint32(data[off : off+4]))
		gen := binary.BigEndian.Uint32(data[off+4 : off+8])
		if n == 0 || gen != st.gen || off+walV1Header+n > size {
			break
		}
		payload := data[off+walV1Header : off+walV1Header+n]
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(data[off+8:off+12]) {
			break
		}
		sets, err := decodeBatch(payload)
		if err != nil {
			break
		}
		batches = append(batches, walBatch{off: off, sets: sets})
		off += walV1Header + n
	}
	return st, batches
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// kv is one Badger write of a batch: a set, or a delete when del is set.
// chunked marks a value that is a chunk reference (chunk.go).
type kv struct {
	k, v    []byte
	del     bool
	chunked bool
}

func decodeBatch(p []byte) ([]kv, error) {
	var out []kv
	for len(p) > 0 {
		op := p[0]
		if op != walEntrySet && op != walEntryDel && op != walEntryChunk {
			return nil, fmt.Errorf("unknown entry type %d", op)
		}
		p = p[1:]
		kl, n := binary.Uvarint(p)
		if n <= 0 || kl > walEntryLimit || uint64(len(p)-n) < kl {
			return nil, errors.New("bad key")
		}
		k := p[n : n+int(kl)]
		p = p[n+int(kl):]
		if op == walEntryDel {
			out = append(out, kv{k: k, del: true})
			continue
		}
		vl, n := binary.Uvarint(p)
		if n <= 0 || vl > walEntryLimit || uint64(len(p)-n) < vl {
			return nil, errors.New("bad value")
		}
		v := p[n : n+int(vl)]
		p = p[n+int(vl):]
		out = append(out, kv{k: k, v: v, chunked: op == walEntryChunk})
	}
	return out, nil
}

func align8(n int64) int64 { return (n + 7) &^ 7 }

// recordSize is the space a batch takes in the log.
func recordSize(sets []kv) int64 {
	n := int64(walRecHeader)
	for _, e := range sets {
		n += 1 + int64(len(e.k)+len(e.v)) + 2*binary.MaxVarintLen32
	}
	return align8(n)
}

// fits reports whether a record of size n fits before the end of the file.
func (w *wal) fits(n int64) bool { return w.off+n <= w.size }

// append writes a batch as one record with the given LSN; it does not
// sync. The caller has checked that it fits.
func (w *wal) append(lsn uint64, sets []kv) error {
	w.buf = append(w.buf[:0], make([]byte, walRecHeader)...)
	for _, e := range sets {
		switch {
		case e.del:
			w.buf = append(w.buf, walEntryDel)
		case e.chunked:
			w.buf = append(w.buf, walEntryChunk)
		default:
			w.buf = append(w.buf, walEntrySet)
		}
		w.buf = binary.AppendUvarint(w.buf, uint64(len(e.k)))
		w.buf = append(w.buf, e.k...)
		if !e.del {
			w.buf = binary.AppendUvarint(w.buf, uint64(len(e.v)))
			w.buf = append(w.buf, e.v...)
		}
	}
	n := len(w.buf) - walRecHeader
	for len(w.buf)%8 != 0 {
		w.buf = append(w.buf, 0)
	}
	if w.off+int64(len(w.buf)) > w.size {
		return fmt.Errorf("a batch of %d bytes does not fit the rest of the write-ahead log", len(w.buf))
	}
	h := w.buf[:walRecHeader]
	binary.BigEndian.PutUint32(h[0:4], uint32(n))
	binary.BigEndian.PutUint32(h[4:8], w.gen)
	binary.BigEndian.PutUint64(h[8:16], lsn)
	binary.BigEndian.PutUint64(h[16:24], uint64(w.synced))
	crc := crc32.Update(crc32.Checksum(h[:24], castagnoli), castagnoli, w.buf[walRecHeader:walRecHeader+n])
	binary.BigEndian.PutUint32(h[24:28], crc)
	if _, err := w.f.WriteAt(w.buf, w.off); err != nil {
		return err
	}
	w.off += int64(len(w.buf))
	return nil
}

// sync makes every appended record durable (fdatasync). The committer
// calls it while another goroutine commits the batch to Badger; nothing
// else touches the log meanwhile.
func (w *wal) sync() error {
	target := w.off
	if err := w.fsync(w.f, true); err != nil {
		return err
	}
	w.synced = target
	return nil
}

// reset starts a new generation, after a checkpoint made every batch up to
// base durable in Badger's files: the header, naming the next generation,
// base and maxTable, is written at offset 0 and fdatasynced. Records of
// older generations that follow it are never read again.
func (w *wal) reset(base, maxTable uint64) error {
	w.gen++
	w.base, w.maxTable = base, maxTable
	if err := w.writeHeader(); err != nil {
		return err
	}
	w.off, w.synced = walHeaderSize, walHeaderSize
	return nil
}

// setMaxTable rewrites the header with a new table ID (at Close, after
// Badger flushed its memtable to a new table).
func (w *wal) setMaxTable(maxTable uint64) error {
	w.maxTable = maxTable
	return w.writeHeader()
}

func (w *wal) writeHeader() error {
	var h [walHeaderSize]byte
	copy(h[:4], walMagic[:])
	binary.BigEndian.PutUint16(h[4:6], walVersion)
	binary.BigEndian.PutUint32(h[8:12], w.gen)
	binary.BigEndian.PutUint64(h[16:24], w.base)
	binary.BigEndian.PutUint64(h[24:32], w.maxTable)
	binary.BigEndian.PutUint32(h[32:36], crc32.Checksum(h[:32], castagnoli))
	if _, err := w.f.WriteAt(h[:], 0); err != nil {
		return err
	}
	return w.fsync(w.f, true)
}

func (w *wal) close() error { return w.f.Close() }

// preallocate grows the file to size by writing zeros, and syncs it. Zeros
// rather than fallocate: writing into fallocated (unwritten) extents makes
// each fdatasync commit the extents' conversion, as an append would.
func preallocate(f *os.File, size int64, fsync func(*os.File, bool) error) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 256<<10)
	for off := st.Size(); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return fsync(f, false)
}
