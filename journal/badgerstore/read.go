package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/starflow/starflow/journal"
)

// Reads. Every read runs in view, which turns a panic inside Badger (on
// damaged bytes) into a CorruptError, and every value read goes through
// itemValue, which reassembles chunked values and turns a value Badger
// cannot read (a value log entry failing its checksum, say) into
// corruption too.

// view runs fn in a read transaction. id names the run it reads, if any.
func (s *Store) view(id string, fn func(txn *badger.Txn) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &journal.CorruptError{RunID: id, Store: s.dir, Reason: "reading it panicked inside Badger (" + firstLine(fmt.Sprint(r)) + ")"}
		}
	}()
	return s.db.View(fn)
}

// unreadableReason is what Badger's silence means: Item.Value returns no
// value, and no error, when it cannot read one from its value log (it
// logs the error).
const unreadableReason = "value unreadable: Badger could not read it from its value log (see its log for why: a damaged or truncated .vlog file)"

// itemValue calls fn with an item's value (valid only during the call);
// a failure to read it is returned as a reason for a CorruptError.
func itemValue(txn *badger.Txn, item *badger.Item, fn func(v []byte) error) (reason string, err error) {
	if item.UserMeta()&userMetaChunked != 0 {
		ref, err := item.ValueCopy(nil)
		if err != nil {
			return "value unreadable: " + sanitize(err), nil
		}
		v, err := readChunked(txn, item.KeyCopy(nil), ref)
		if err != nil {
			return err.Error(), nil
		}
		return "", fn(v)
	}
	var ferr error
	unreadable := false
	err = item.Value(func(v []byte) error {
		if len(v) == 0 && item.ValueSize() > 0 {
			unreadable = true
			return nil
		}
		ferr = fn(v)
		return ferr
	})
	if unreadable {
		return unreadableReason, nil
	}
	if err != nil && ferr == nil {
		return "value unreadable: " + sanitize(err), nil
	}
	return "", ferr
}

// readValue is itemValue for a value the caller keeps.
func readValue(txn *badger.Txn, item *badger.Item) (v []byte, reason string) {
	reason, _ = itemValue(txn, item, func(b []byte) error {
		v = append([]byte(nil), b...)
		return nil
	})
	return v, reason
}

// Run implements journal.Store.
func (s *Store) Run(ctx context.Context, id string) (*journal.Run, error) {
	var run *journal.Run
	err := s.view(id, func(txn *badger.Txn) error {
		var err error
		run, err = s.readRun(txn, id, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return run, nil
}

// readRun reads a run's metadata (from item, if the caller has it) and
// checks that its journal starts with a valid run.started record.
func (s *Store) readRun(txn *badger.Txn, id string, item *badger.Item) (*journal.Run, error) {
	if item == nil {
		var err error
		item, err = txn.Get(metaKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("run %s: %w", id, journal.ErrNotFound)
		}
		if err != nil {
			return nil, &badgerError{"read run " + id, err}
		}
	}
	var run *journal.Run
	reason, err := itemValue(txn, item, func(v []byte) error {
		var err error
		run, err = journal.DecodeRun(id, metaEnvelope(v))
		return err
	})
	if reason != "" {
		return nil, &journal.CorruptError{RunID: id, Reason: "metadata: " + reason}
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkStart(txn, id); err != nil {
		return nil, err
	}
	return run, nil
}

// checkStart verifies that a run's journal begins with a run.started
// record: its envelope, or for a chunked one the reference and its header.
func (s *Store) checkStart(txn *badger.Txn, id string) error {
	corrupt := func(reason string) error {
		return &journal.CorruptError{RunID: id, Seq: 1, Reason: reason}
	}
	item, err := txn.Get(journalKey(id, 1))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return corrupt("record missing: a journal starts with run.started")
	}
	if err != nil {
		return &badgerError{"read run " + id, err}
	}
	var t journal.Type
	var why string
	if item.UserMeta()&userMetaChunked != 0 {
		ref, err := item.ValueCopy(nil)
		if err != nil {
			return corrupt("value unreadable: " + sanitize(err))
		}
		r, err := parseRef(ref)
		if err != nil {
			return corrupt(err.Error())
		}
		t, why = journal.CheckHeader(r.head)
	} else {
		err = item.Value(func(v []byte) error {
			rec, err := journal.DecodeRecord(id, 1, v)
			if err != nil {
				return err
			}
			t = rec.Type
			return nil
		})
		var ce *journal.CorruptError
		if errors.As(err, &ce) {
			return err
		}
		if err != nil {
			return corrupt("value unreadable: " + sanitize(err))
		}
	}
	if why != "" {
		return corrupt(why)
	}
	if t != journal.TypeRunStarted {
		return corrupt(fmt.Sprintf("it is %s; a journal starts with run.started", t))
	}
	return nil
}

// Records implements journal.Store.
func (s *Store) Records(ctx context.Context, id string, from uint64) ([]journal.Record, error) {
	if from == 0 {
		from = 1
	}
	var out []journal.Record
	err := s.view(id, func(txn *badger.Txn) error {
		prefix := journalPrefix(id)
		// No value prefetch: records are small and stored inline in the
		// LSM tree, and Badger prefetches with a goroutine per item.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		want := from
		for it.Seek(journalKey(id, from)); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+8 {
				return &journal.CorruptError{RunID: id, Seq: want, Reason: fmt.Sprintf("malformed key %q", k)}
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			if seq != want {
				return &journal.CorruptError{RunID: id, Seq: want, Reason: fmt.Sprintf("record missing (next stored record is %d)", seq)}
			}
			var rec journal.Record
			var reason string
			var err error
			if item.UserMeta()&userMetaChunked == 0 {
				// The common case, inline: itemValue without its closures
				// (replay reads every record of a run).
				var derr error
				err = item.Value(func(v []byte) error {
					if len(v) == 0 && item.ValueSize() > 0 {
						reason = unreadableReason
						return nil
					}
					rec, derr = journal.DecodeRecord(id, seq, v)
					return derr
				})
				if err != nil && derr == nil {
					reason = "value unreadable: " + sanitize(err)
				}
			} else {
				reason, err = itemValue(txn, item, func(v []byte) error {
					var derr error
					rec, derr = journal.DecodeRecord(id, seq, v)
					return derr
				})
			}
			if reason != "" {
				return &journal.CorruptError{RunID: id, Seq: seq, Reason: reason}
			}
			if err != nil {
				return err
			}
			out = append(out, rec)
			want++
		}
		return nil
	})
	if err != nil {
		var ce *journal.CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("read journal of run %s: %w", id, err)
	}
	return out, nil
}

// List implements journal.Store: see journal.Store.List for what it
// returns when some runs are damaged.
func (s *Store) List(ctx context.Context, f journal.Filter) ([]*journal.Run, error) {
	var runs []*journal.Run
	var bad []*journal.CorruptError
	err := s.view("", func(txn *badger.Txn) error {
		prefix := []byte("m/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			id := string(bytes.TrimPrefix(it.Item().Key(), prefix))
			r, err := s.readRun(txn, id, it.Item())
			var ce *journal.CorruptError
			if errors.As(err, &ce) {
				bad = append(bad, ce)
				continue
			}
			if err != nil {
				return err
			}
			if f.Match(r) {
				runs = append(runs, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		if !runs[i].CreatedAt.Equal(runs[j].CreatedAt) {
			return runs[i].CreatedAt.After(runs[j].CreatedAt)
		}
		return runs[i].ID > runs[j].ID
	})
	if f.Limit > 0 && len(runs) > f.Limit {
		runs = runs[:f.Limit]
	}
	if len(bad) > 0 {
		return runs, &journal.CorruptRunsError{Runs: bad}
	}
	return runs, nil
}

// Inbox implements journal.Store.
func (s *Store) Inbox(ctx context.Context, id string, from uint64) ([]journal.Message, error) {
	if from == 0 {
		from = 1
	}
	var out []journal.Message
	err := s.view(id, func(txn *badger.Txn) error {
		prefix := inboxPrefix(id)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(inboxKey(id, from)); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				return &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("malformed inbox key %q", k)}
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			var m journal.Message
			reason, err := itemValue(txn, it.Item(), func(v []byte) error {
				rec, err := journal.DecodeRecord(id, seq, v)
				if err != nil {
					var ce *journal.CorruptError
					if errors.As(err, &ce) {
						return &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("inbox message %d: %s", seq, ce.Reason)}
					}
					return err
				}
				if err := rec.Decode(&m); err != nil {
					return &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("inbox message %d: %v", seq, err)}
				}
				return nil
			})
			if reason != "" {
				return &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("inbox message %d: %s", seq, reason)}
			}
			if err != nil {
				return err
			}
			if m.Seq != seq {
				return &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("inbox message %d says it is message %d", seq, m.Seq)}
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		var ce *journal.CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("read inbox of run %s: %w", id, err)
	}
	return out, nil
}

// Blob implements journal.Store.
func (s *Store) Blob(ctx context.Context, hash string) ([]byte, error) {
	var out []byte
	found := false
	err := s.view("", func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(hash))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return &badgerError{"read blob " + hash, err}
		}
		found = true
		reason, err := itemValue(txn, item, func(v []byte) error {
			out = append([]byte(nil), v...)
			return nil
		})
		if reason != "" {
			return &journal.CorruptError{Store: s.dir, Reason: fmt.Sprintf("blob %s: %s", hash, reason)}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", hash, err)
	}
	if !found {
		return nil, fmt.Errorf("blob %s: %w", hash, journal.ErrNotFound)
	}
	sum := sha256.Sum256(out)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != hash {
		return nil, &journal.CorruptError{Store: s.dir, Reason: fmt.Sprintf("blob %s: its content hashes to %s; restore the store from a backup", hash, got)}
	}
	return out, nil
}

var _ journal.KV = (*Store)(nil)

func kvKey(key string) []byte { return []byte("k/" + key) }

// maxKVBytes bounds a KV value: it goes to Badger directly, not in chunks.
const maxKVBytes = 8 << 20

// GetKV implements journal.KV.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, bool, error) {
	var out []byte
	found := false
	err := s.view("", func(txn *badger.Txn) error {
		item, err := txn.Get(kvKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return &badgerError{"read " + key, err}
		}
		v, reason := readValue(txn, item)
		if reason != "" {
			return &journal.CorruptError{Store: s.dir, Reason: fmt.Sprintf("the value of %s: %s", key, reason)}
		}
		out = v
		found = true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return out, found, nil
}

// PutKV implements journal.KV. It is refused, like any write, once the
// store failed or when the disk is below the reserve.
func (s *Store) PutKV(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return journal.ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	if len(val) > maxKVBytes {
		return fmt.Errorf("write %s: the value is %d bytes, over the %d bytes allowed: %w", key, len(val), maxKVBytes, journal.ErrTooLarge)
	}
	if err := s.space.check(len(key) + len(val)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	e := badger.NewEntry(kvKey(key), append([]byte(nil), val...))
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("badger panicked: %s", firstLine(fmt.Sprint(r)))
			}
		}()
		return s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) })
	}()
	if err != nil {
		return &badgerError{"write " + key, err}
	}
	return nil
}
