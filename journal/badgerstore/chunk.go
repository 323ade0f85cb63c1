package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dgraph-io/badger/v4"
)

// Large values. Badger keeps a value of ValueThreshold bytes or more in
// its value log, and a memtable flushed to a table (which Badger syncs)
// may then point into value log bytes that were never synced: after a
// power loss the table survives and the value does not. So the store keeps
// every value it writes under ValueThreshold, inline in the LSM tree,
// where a flushed table holds the value itself: a value (record envelope,
// inbox message, blob, or run metadata) larger than the store's chunk size
// (Store.chunkSize: 512 KiB, or less when ValueThreshold is smaller) is
// stored in chunks of that size under their own keys, and the value's own
// key holds a small chunk reference instead, marked with Badger user-meta
// bit userMetaChunked:
//
//	c/<value key><LSN:8><index:4>   chunk (bytes index*size onwards)
//
// Chunk reference (all integers big-endian):
//
//	0      version (1)
//	1-3    chunk size, in KiB
//	4-7    number of chunks
//	8-15   value length
//	16-23  LSN of the batch that wrote the value (part of the chunk keys)
//	24-27  CRC-32C of the whole value
//	28-41  the value's first 14 bytes (for a record, its envelope header)
//	42-43  zero
//	44-47  CRC-32C of bytes 0-43
//
// Readers reassemble the value and verify its length and CRC; a missing or
// damaged chunk is corruption. The chunks of a batch are committed to
// Badger, and Badger's files synced (Store.syncBadger), before the batch's
// other writes go to the write-ahead log, so that a logged reference never
// outlives its chunks; chunks never go through the log. Chunk keys carry
// the LSN, so a new version of a value (run metadata) never overwrites the
// chunks an older reference points to; the older chunks are deleted in the
// same commit as the new reference.
const (
	defaultChunkSize      = 512 << 10
	userMetaChunked  byte = 1
	chunkRefSize          = 48
	chunkRefVersion       = 1
	chunkHeadSize         = 14
)

func chunkKey(main []byte, lsn uint64, i uint32) []byte {
	k := make([]byte, 0, 2+len(main)+12)
	k = append(k, "c/"...)
	k = append(k, main...)
	k = binary.BigEndian.AppendUint64(k, lsn)
	return binary.BigEndian.AppendUint32(k, i)
}

// chunkSizeFor is the chunk size for a Badger value threshold: a chunk,
// like any value the store writes, stays below it (a multiple of 1 KiB).
func chunkSizeFor(valueThreshold int64) int {
	c := min(defaultChunkSize, (valueThreshold-1)&^1023)
	return int(max(c, 1024))
}

// splitValue returns the chunk reference for v and its chunks of
// chunkSize bytes (a multiple of 1 KiB).
func splitValue(main, v []byte, lsn uint64, chunkSize int) (ref []byte, chunks []kv) {
	n := uint32((len(v) + chunkSize - 1) / chunkSize)
	ref = make([]byte, chunkRefSize)
	ref[0] = chunkRefVersion
	kib := chunkSize >> 10
	ref[1], ref[2], ref[3] = byte(kib>>16), byte(kib>>8), byte(kib)
	binary.BigEndian.PutUint32(ref[4:8], n)
	binary.BigEndian.PutUint64(ref[8:16], uint64(len(v)))
	binary.BigEndian.PutUint64(ref[16:24], lsn)
	binary.BigEndian.PutUint32(ref[24:28], crc32.Checksum(v, castagnoli))
	copy(ref[28:28+chunkHeadSize], v)
	binary.BigEndian.PutUint32(ref[44:48], crc32.Checksum(ref[:44], castagnoli))
	for i := uint32(0); i < n; i++ {
		end := min(len(v), int(i+1)*chunkSize)
		chunks = append(chunks, kv{k: chunkKey(main, lsn, i), v: v[int(i)*chunkSize : end]})
	}
	return ref, chunks
}

type chunkRef struct {
	n    uint32
	each uint64 // chunk size
	size uint64
	lsn  uint64
	crc  uint32
	head []byte
}

// parseRef verifies a chunk reference; the error is a reason for a
// CorruptError.
func parseRef(ref []byte) (chunkRef, error) {
	if len(ref) != chunkRefSize {
		return chunkRef{}, fmt.Errorf("chunk reference is %d bytes, want %d", len(ref), chunkRefSize)
	}
	if crc32.Checksum(ref[:44], castagnoli) != binary.BigEndian.Uint32(ref[44:48]) {
		return chunkRef{}, errors.New("chunk reference checksum mismatch")
	}
	if ref[0] != chunkRefVersion {
		return chunkRef{}, fmt.Errorf("unknown chunk reference version %d", ref[0])
	}
	r := chunkRef{
		each: (uint64(ref[1])<<16 | uint64(ref[2])<<8 | uint64(ref[3])) << 10,
		n:    binary.BigEndian.Uint32(ref[4:8]),
		size: binary.BigEndian.Uint64(ref[8:16]),
		lsn:  binary.BigEndian.Uint64(ref[16:24]),
		crc:  binary.BigEndian.Uint32(ref[24:28]),
		head: ref[28 : 28+chunkHeadSize],
	}
	if r.each == 0 || r.size > maxValueBytes || uint64(r.n) != (r.size+r.each-1)/r.each {
		return chunkRef{}, fmt.Errorf("chunk reference says %d bytes in %d chunks", r.size, r.n)
	}
	if r.size < chunkHeadSize {
		r.head = r.head[:r.size]
	}
	return r, nil
}

// chunkKeys lists the keys of a reference's chunks.
func (r chunkRef) keys(main []byte) [][]byte {
	out := make([][]byte, r.n)
	for i := range out {
		out[i] = chunkKey(main, r.lsn, uint32(i))
	}
	return out
}

// errChunk wraps what is wrong with a chunked value; readers turn it into
// a CorruptError naming what the value is.
type errChunk struct{ reason string }

func (e *errChunk) Error() string { return e.reason }

// readChunked reassembles and verifies the value whose reference is ref.
func readChunked(txn *badger.Txn, main, ref []byte) ([]byte, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, &errChunk{err.Error()}
	}
	out := make([]byte, 0, r.size)
	for i, k := range r.keys(main) {
		item, err := txn.Get(k)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, &errChunk{fmt.Sprintf("chunk %d of %d is missing", i+1, r.n)}
		}
		if err != nil {
			return nil, &errChunk{fmt.Sprintf("chunk %d of %d: %s", i+1, r.n, sanitize(err))}
		}
		err = item.Value(func(v []byte) error {
			if len(v) == 0 {
				// Badger returns no value, and no error, when it cannot
				// read one from its value log.
				return errors.New("unreadable (a damaged or truncated .vlog file)")
			}
			if uint64(len(out)+len(v)) > r.size {
				return fmt.Errorf("chunks hold more than the %d bytes of the value", r.size)
			}
			out = append(out, v...)
			return nil
		})
		if err != nil {
			return nil, &errChunk{fmt.Sprintf("chunk %d of %d: %s", i+1, r.n, sanitize(err))}
		}
	}
	if uint64(len(out)) != r.size {
		return nil, &errChunk{fmt.Sprintf("chunks hold %d bytes, the value has %d", len(out), r.size)}
	}
	if got := crc32.Checksum(out, castagnoli); got != r.crc {
		return nil, &errChunk{fmt.Sprintf("chunked value checksum mismatch (stored %08x, computed %08x)", r.crc, got)}
	}
	return out, nil
}
