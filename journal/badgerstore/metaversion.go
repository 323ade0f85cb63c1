package badgerstore

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// Run metadata is the one value the store replaces, so it carries the LSN
// of the batch that wrote it: re-applying the write-ahead log after a crash
// never puts an older version over a newer one Badger already holds (after
// a power loss, Badger can hold a batch the log lost: a page of its
// memtable log that the system happened to write).
//
// Stored value: metaVersioned | LSN (8 bytes, big-endian) | the
// journal.EncodeRun envelope. Values written before this version have no
// prefix (LSN 0).
const metaVersioned byte = 0xfe

func metaValue(lsn uint64, envelope []byte) []byte {
	v := make([]byte, 0, 9+len(envelope))
	v = append(v, metaVersioned)
	v = binary.BigEndian.AppendUint64(v, lsn)
	return append(v, envelope...)
}

// metaEnvelope strips the LSN from a stored metadata value.
func metaEnvelope(v []byte) []byte {
	if len(v) >= 9 && v[0] == metaVersioned {
		return v[9:]
	}
	return v
}

// storedMetaLSN is the LSN of the metadata Badger holds under key (0 if
// none, or written before versions).
func storedMetaLSN(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if item.UserMeta()&userMetaChunked != 0 {
		ref, err := item.ValueCopy(nil)
		if err != nil {
			return 0, err
		}
		r, err := parseRef(ref)
		if err != nil {
			return 0, nil // damaged: the batch being re-applied replaces it
		}
		return r.lsn, nil
	}
	var lsn uint64
	err = item.Value(func(v []byte) error {
		if len(v) >= 9 && v[0] == metaVersioned {
			lsn = binary.BigEndian.Uint64(v[1:9])
		}
		return nil
	})
	return lsn, err
}

// withoutNewerMeta drops from a batch being re-applied the metadata that
// Badger holds a newer version of.
func (s *Store) withoutNewerMeta(sets []kv, lsn uint64) ([]kv, error) {
	out := sets[:0:0]
	dropped := false
	err := s.db.View(func(txn *badger.Txn) error {
		for _, e := range sets {
			if !e.del && bytes.HasPrefix(e.k, []byte("m/")) {
				cur, err := storedMetaLSN(txn, e.k)
				if err != nil {
					return err
				}
				if cur > lsn {
					dropped = true
					continue
				}
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil || !dropped {
		return sets, err
	}
	return out, nil
}
