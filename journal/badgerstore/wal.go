package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// wal is the store's own write-ahead log. Every batch the committer writes
// to Badger is also appended here; a batch that asks for durability is
// made durable by one fdatasync of this file, issued while Badger applies
// the batch without syncing (so the two overlap). At a checkpoint Badger is
// synced and the log starts over. On Open, batches still in the log are
// applied to Badger again, in order; re-applying a batch Badger already has
// changes nothing.
//
// The file is preallocated (written with zeros) and overwritten in place,
// so a durable append changes no file metadata. Each record carries the log's generation, and a
// checkpoint writes an empty record of the next generation at offset 0, so
// stale records from earlier generations are never replayed.
//
// Record layout: length u32 | generation u32 | CRC-32C of payload u32 |
// payload (length bytes). A record of length 0 ends the log.
type wal struct {
	f    *os.File
	gen  uint32
	off  int64 // where the next record goes
	size int64 // preallocated length
	buf  []byte
}

const (
	walFile       = "starflow.wal"
	walHeader     = 12
	walMinSize    = 1 << 20
	walEntrySet   = 1
	walEntryLimit = 1 << 30
)

// openWAL opens (creating) the log in dir and returns it with the batches
// it holds from its current generation, oldest first.
func openWAL(dir string) (*wal, [][]kv, error) {
	f, err := os.OpenFile(dir+"/"+walFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	w := &wal{f: f, size: st.Size()}
	var batches [][]kv
	if w.size >= walHeader {
		data := make([]byte, w.size)
		if _, err := io.ReadFull(io.NewSectionReader(f, 0, w.size), data); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("read %s: %w", walFile, err)
		}
		w.gen = binary.BigEndian.Uint32(data[4:8])
		for off := int64(0); off+walHeader <= w.size; {
			n := int64(binary.BigEndian.Uint32(data[off : off+4]))
			gen := binary.BigEndian.Uint32(data[off+4 : off+8])
			if n == 0 || gen != w.gen || off+walHeader+n > w.size {
				break // the end, a stale record, or a torn one
			}
			payload := data[off+walHeader : off+walHeader+n]
			if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(data[off+8:off+12]) {
				break // torn write: nothing after it was acknowledged
			}
			sets, err := decodeBatch(payload)
			if err != nil {
				break
			}
			batches = append(batches, sets)
			off += walHeader + n
		}
	}
	if w.size < walMinSize {
		if err := preallocate(f, walMinSize); err != nil {
			f.Close()
			return nil, nil, err
		}
		w.size = walMinSize
	}
	return w, batches, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type kv struct{ k, v []byte }

func decodeBatch(p []byte) ([]kv, error) {
	var out []kv
	for len(p) > 0 {
		if p[0] != walEntrySet {
			return nil, errors.New("unknown entry")
		}
		p = p[1:]
		kl, n := binary.Uvarint(p)
		if n <= 0 || kl > walEntryLimit || uint64(len(p)-n) < kl {
			return nil, errors.New("bad key")
		}
		k := p[n : n+int(kl)]
		p = p[n+int(kl):]
		vl, n := binary.Uvarint(p)
		if n <= 0 || vl > walEntryLimit || uint64(len(p)-n) < vl {
			return nil, errors.New("bad value")
		}
		v := p[n : n+int(vl)]
		p = p[n+int(vl):]
		out = append(out, kv{k, v})
	}
	return out, nil
}

// append writes a batch as one record; it does not sync. It reports false
// if the batch does not fit before the end of the file (checkpoint first).
func (w *wal) append(sets []kv) (bool, error) {
	w.buf = w.buf[:0]
	w.buf = append(w.buf, make([]byte, walHeader)...)
	for _, e := range sets {
		w.buf = append(w.buf, walEntrySet)
		w.buf = binary.AppendUvarint(w.buf, uint64(len(e.k)))
		w.buf = append(w.buf, e.k...)
		w.buf = binary.AppendUvarint(w.buf, uint64(len(e.v)))
		w.buf = append(w.buf, e.v...)
	}
	n := int64(len(w.buf) - walHeader)
	// Keep room for the end marker after the record.
	if w.off+int64(len(w.buf))+walHeader > w.size {
		return false, nil
	}
	binary.BigEndian.PutUint32(w.buf[0:4], uint32(n))
	binary.BigEndian.PutUint32(w.buf[4:8], w.gen)
	binary.BigEndian.PutUint32(w.buf[8:12], crc32.Checksum(w.buf[walHeader:], castagnoli))
	if _, err := w.f.WriteAt(w.buf, w.off); err != nil {
		return false, err
	}
	w.off += int64(len(w.buf))
	return true, nil
}

// sync makes appended records durable.
func (w *wal) sync() error { return datasync(w.f) }

// reset starts a new generation (call it after Badger is synced): an empty
// record of the next generation at offset 0, made durable, hides every
// older record. need is the size of a batch that must fit afterwards.
func (w *wal) reset(need int64) error {
	if need+2*walHeader > w.size {
		size := 2 * (need + 2*walHeader)
		if err := preallocate(w.f, size); err != nil {
			return err
		}
		w.size = size
	}
	w.gen++
	var marker [walHeader]byte
	binary.BigEndian.PutUint32(marker[4:8], w.gen)
	if _, err := w.f.WriteAt(marker[:], 0); err != nil {
		return err
	}
	w.off = 0
	return datasync(w.f)
}

func (w *wal) close() error { return w.f.Close() }

// preallocate grows the file to size by writing zeros, and syncs it. Zeros
// rather than fallocate: writing into fallocated (unwritten) extents makes
// each fdatasync commit the extents' conversion, as an append would.
func preallocate(f *os.File, size int64) error {
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
	return f.Sync()
}
