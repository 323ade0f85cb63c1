// Package badgerstore is the embedded journal.Store: runs, journals and
// script blobs in a Badger v4 database in one directory.
//
// # Basics
//
// Open takes the directory's lock; one process owns a store at a time.
// Writes from every run in the process go through one committer goroutine
// that gathers whatever is pending (group commit) and, at once, appends it
// to the store's write-ahead log (starflow.wal) and commits it to Badger
// without syncing. One fdatasync of the log then releases every caller that
// asked for durability. The log is preallocated and overwritten in place,
// so that fdatasync flushes data only; Badger is synced, and the log starts
// a new generation, when it fills and on Close. Open re-applies whatever the
// log holds. A lone run pays one fdatasync per call; fifty concurrent runs
// share them.
//
// Key layout (see spec/journal.md):
//
//	m/<run-id>                 run metadata (JSON journal.Run)
//	j/<run-id>/<seq:8 bytes>   journal record envelope (journal.Encode)
//	b/sha256:<hex>             content-addressed blob (script sources)
//	x/<run-id>/<seq:8 bytes>   inbox message envelope
//	k/<key>                    scratch key-value state (journal.KV)
//
// The write-ahead log's format is in wal.go and spec/journal.md.
//
// # Caveats
//
// A second process opening the same directory gets a *journal.LockedError
// naming the owner (read from the starflow.owner file the owner writes).
// Nothing is ever deleted; compaction of finished runs is not implemented.
package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"

	"github.com/starflow/starflow/journal"
)

// Options tune the store. The zero value is a good default.
type Options struct {
	// Logger receives Badger's warnings and errors. Default: discard.
	Logger zerolog.Logger
	// Command describes the owning process in the owner file, for the
	// message another process gets when the store is locked.
	Command string
	// Addr is the API address the owner serves, if any, recorded in the
	// owner file so that clients can find it.
	Addr string
	// SyncInterval bounds how long non-durable writes stay unsynced: the
	// store fsyncs in the background at this interval. Default 200ms;
	// negative disables it.
	SyncInterval time.Duration
}

// Store is a journal.Store on Badger. Create it with Open.
type Store struct {
	wal     *wal
	db      *badger.DB
	dir     string
	writes  chan *writeReq
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
	wg      sync.WaitGroup

	// lastSeq caches each run's last sequence number, and lastMsg its
	// inbox's; both owned by the committer.
	lastSeq map[string]uint64
	lastMsg map[string]uint64
	// dirty is set by the committer when a non-durable write has not been
	// synced yet; the background syncer clears it.
	dirtyMu sync.Mutex
	dirty   bool
}

var _ journal.Store = (*Store)(nil)

// OwnerFile is the name of the file, inside the store directory, where the
// owning process describes itself.
const OwnerFile = "starflow.owner"

// Owner is the content of the owner file.
type Owner struct {
	PID     int       `json:"pid"`
	Command string    `json:"command,omitempty"`
	Since   time.Time `json:"since"`
	Addr    string    `json:"addr,omitempty"`
}

// ReadOwner returns what the owner file in dir says, if it exists.
func ReadOwner(dir string) (*Owner, error) {
	b, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if err != nil {
		return nil, err
	}
	var o Owner
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	return &o, nil
}

// testBadgerOptions, set only by tests (powerloss_export_test.go), adjusts
// Badger's options, e.g. to rotate memtables after a few KiB.
var testBadgerOptions func(badger.Options) badger.Options

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueThreshold(64 << 10).
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false)
	if testBadgerOptions != nil {
		bo = testBadgerOptions(bo)
	}
	db, err := badger.Open(bo)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			le := &journal.LockedError{Dir: dir}
			if o, oerr := ReadOwner(dir); oerr == nil {
				le.PID, le.Command, le.Since, le.Addr = o.PID, o.Command, o.Since, o.Addr
			}
			return nil, le
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	w, batches, err := openWAL(dir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: write-ahead log: %w", dir, err)
	}
	s := &Store{
		wal:     w,
		db:      db,
		dir:     dir,
		writes:  make(chan *writeReq, 1024),
		done:    make(chan struct{}),
		lastSeq: make(map[string]uint64),
		lastMsg: make(map[string]uint64),
	}
	// Batches the log still holds may not have reached Badger's disk
	// before a crash: apply them again, sync, and start a new generation.
	for _, b := range batches {
		if err := s.commit(b); err != nil {
			w.close()
			db.Close()
			return nil, fmt.Errorf("open store %s: recover from the write-ahead log: %w", dir, err)
		}
	}
	if err := s.checkpoint(0); err != nil {
		w.close()
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	owner := Owner{PID: os.Getpid(), Command: opts.Command, Since: time.Now().UTC(), Addr: opts.Addr}
	ob, _ := json.Marshal(owner)
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), ob, 0o644); err != nil {
		w.close()
		db.Close()
		return nil, fmt.Errorf("open store %s: write owner file: %w", dir, err)
	}
	s.wg.Add(1)
	go s.committer()
	interval := opts.SyncInterval
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	if interval > 0 {
		s.wg.Add(1)
		go s.syncer(interval)
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// SetAddr records the API address the owner serves in the owner file.
func (s *Store) SetAddr(command, addr string) error {
	owner := Owner{PID: os.Getpid(), Command: command, Since: time.Now().UTC(), Addr: addr}
	ob, _ := json.Marshal(owner)
	return os.WriteFile(filepath.Join(s.dir, OwnerFile), ob, 0o644)
}

// Close waits for pending writes, syncs, and releases the directory lock.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.closeMu.Unlock()
	s.wg.Wait()
	serr := s.checkpoint(0)
	s.wal.close()
	os.Remove(filepath.Join(s.dir, OwnerFile))
	if err := s.db.Close(); err != nil {
		return err
	}
	return serr
}

// Key layout.

func metaKey(id string) []byte { return []byte("m/" + id) }

func journalPrefix(id string) []byte { return []byte("j/" + id + "/") }

func journalKey(id string, seq uint64) []byte {
	p := journalPrefix(id)
	k := make([]byte, len(p)+8)
	copy(k, p)
	binary.BigEndian.PutUint64(k[len(p):], seq)
	return k
}

func blobKey(hash string) []byte { return []byte("b/" + hash) }

func inboxPrefix(id string) []byte { return []byte("x/" + id + "/") }

func inboxKey(id string, seq uint64) []byte {
	p := inboxPrefix(id)
	k := make([]byte, len(p)+8)
	copy(k, p)
	binary.BigEndian.PutUint64(k[len(p):], seq)
	return k
}

// Writes.

type writeKind int

const (
	writeCreate writeKind = iota
	writeAppend
	writeBlob
	writeDeliver
)

type writeReq struct {
	kind    writeKind
	id      string
	recs    []journal.Record
	run     *journal.Run
	blob    []byte
	hash    string
	msg     *journal.Message
	durable bool
	err     error
	done    chan error
}

func (s *Store) submit(ctx context.Context, r *writeReq) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return journal.ErrClosed
	}
	r.done = make(chan error, 1)
	s.writes <- r
	s.closeMu.RUnlock()
	// The write is queued and will be applied; waiting is only about
	// learning its outcome, so a cancelled context stops the wait, not the
	// write.
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Create implements journal.Store.
func (s *Store) Create(ctx context.Context, run *journal.Run, recs []journal.Record) error {
	if err := journal.ValidateID(run.ID); err != nil {
		return err
	}
	if len(recs) == 0 || recs[0].Seq != 1 {
		return fmt.Errorf("create run %s: first record must have seq 1: %w", run.ID, journal.ErrConflict)
	}
	return s.submit(ctx, &writeReq{kind: writeCreate, id: run.ID, recs: recs, run: cloneRun(run), durable: true})
}

// Append implements journal.Store.
func (s *Store) Append(ctx context.Context, id string, recs []journal.Record, run *journal.Run, durable bool) error {
	if len(recs) == 0 && run == nil {
		return nil
	}
	return s.submit(ctx, &writeReq{kind: writeAppend, id: id, recs: recs, run: cloneRun(run), durable: durable})
}

// PutBlob implements journal.Store.
func (s *Store) PutBlob(ctx context.Context, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(hash))
		return err
	})
	if err == nil {
		return hash, nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return "", fmt.Errorf("put blob: %w", err)
	}
	buf := make([]byte, len(data))
	copy(buf, data)
	return hash, s.submit(ctx, &writeReq{kind: writeBlob, hash: hash, blob: buf, durable: true})
}

// Deliver implements journal.Store.
func (s *Store) Deliver(ctx context.Context, id string, m journal.Message, run *journal.Run) (uint64, error) {
	r := &writeReq{kind: writeDeliver, id: id, msg: &m, run: cloneRun(run), durable: true}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.msg.Seq, nil
}

// Inbox implements journal.Store.
func (s *Store) Inbox(ctx context.Context, id string, from uint64) ([]journal.Message, error) {
	if from == 0 {
		from = 1
	}
	var out []journal.Message
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := inboxPrefix(id)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(inboxKey(id, from)); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			var m journal.Message
			err := it.Item().Value(func(v []byte) error {
				rec, err := journal.DecodeRecord(id, seq, v)
				if err != nil {
					return err
				}
				return rec.Decode(&m)
			})
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read inbox of run %s: %w", id, err)
	}
	return out, nil
}

func lastInboxSeq(txn *badger.Txn, id string) (uint64, error) {
	prefix := inboxPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	defer it.Close()
	it.Seek(append(append([]byte{}, prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if !it.ValidForPrefix(prefix) {
		return 0, nil
	}
	k := it.Item().Key()
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
}

func cloneRun(r *journal.Run) *journal.Run {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// committer applies queued writes in batches: one Badger transaction and at
// most one fsync per batch.
func (s *Store) committer() {
	defer s.wg.Done()
	const maxBatch = 512
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.done:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-s.writes:
					s.apply([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.apply(batch)
	}
}

func (s *Store) apply(batch []*writeReq) {
	created := map[string]bool{}
	pendingSeq := map[string]uint64{}
	pendingMsg := map[string]uint64{}
	now := time.Now().UTC()
	var sets []kv
	put := func(k, v []byte) { sets = append(sets, kv{k, v}) }

	// Validation reads the database; nothing of this batch is in it yet.
	txn := s.db.NewTransaction(false)
	for _, r := range batch {
		switch r.kind {
		case writeDeliver:
			if _, err := txn.Get(metaKey(r.id)); err != nil {
				if errors.Is(err, badger.ErrKeyNotFound) && !created[r.id] {
					r.err = fmt.Errorf("run %s: %w", r.id, journal.ErrNotFound)
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					r.err = err
				}
				if r.err != nil {
					continue
				}
			}
			last, ok := pendingMsg[r.id]
			if !ok {
				if last, ok = s.lastMsg[r.id]; !ok {
					var err error
					if last, err = lastInboxSeq(txn, r.id); err != nil {
						r.err = err
						continue
					}
				}
			}
			r.msg.Seq = last + 1
			if r.msg.Time.IsZero() {
				r.msg.Time = now
			}
			data, err := json.Marshal(r.msg)
			if err != nil {
				r.err = err
				continue
			}
			put(inboxKey(r.id, r.msg.Seq), journal.Encode(journal.Record{Seq: r.msg.Seq, Type: journal.TypeMessage, Time: r.msg.Time, Data: data}))
			if r.run != nil {
				r.run.Inbox = r.msg.Seq
				if r.run.UpdatedAt.IsZero() {
					r.run.UpdatedAt = now
				}
				mb, err := json.Marshal(r.run)
				if err != nil {
					r.err = err
					continue
				}
				put(metaKey(r.id), mb)
			}
			pendingMsg[r.id] = r.msg.Seq
		case writeBlob:
			put(blobKey(r.hash), r.blob)
		case writeCreate, writeAppend:
			last, err := s.lastSeqFor(txn, r.id, pendingSeq, created, r.kind == writeCreate)
			if err != nil {
				r.err = err
				continue
			}
			if r.kind == writeCreate {
				if last > 0 || created[r.id] {
					r.err = fmt.Errorf("run %s: %w", r.id, journal.ErrRunExists)
					continue
				}
			} else if last == 0 {
				r.err = fmt.Errorf("run %s: %w", r.id, journal.ErrNotFound)
				continue
			}
			if len(r.recs) > 0 && r.recs[0].Seq != last+1 {
				r.err = fmt.Errorf("run %s: append at seq %d, but the journal ends at %d: %w", r.id, r.recs[0].Seq, last, journal.ErrConflict)
				continue
			}
			ok := true
			for i, rec := range r.recs {
				if i > 0 && rec.Seq != r.recs[i-1].Seq+1 {
					r.err = fmt.Errorf("run %s: records not contiguous at seq %d: %w", r.id, rec.Seq, journal.ErrConflict)
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			var mb []byte
			if r.run != nil {
				if r.run.UpdatedAt.IsZero() {
					r.run.UpdatedAt = now
				}
				if mb, err = json.Marshal(r.run); err != nil {
					r.err = err
					continue
				}
			}
			for _, rec := range r.recs {
				put(journalKey(r.id, rec.Seq), journal.Encode(rec))
			}
			if mb != nil {
				put(metaKey(r.id), mb)
			}
			if r.kind == writeCreate {
				created[r.id] = true
			}
			if n := len(r.recs); n > 0 {
				pendingSeq[r.id] = r.recs[n-1].Seq
			}
		}
	}
	txn.Discard()

	durable := false
	for _, r := range batch {
		durable = durable || (r.err == nil && r.durable)
	}
	err := s.write(sets, durable)
	if err != nil {
		// Nothing in this batch can be trusted to be written; forget cached
		// sequence numbers so they are read again from the database.
		for _, r := range batch {
			delete(s.lastSeq, r.id)
			delete(s.lastMsg, r.id)
			if r.err == nil {
				r.err = fmt.Errorf("write journal: %w", err)
			}
			r.done <- r.err
		}
		return
	}
	for id, seq := range pendingSeq {
		s.lastSeq[id] = seq
	}
	for id, seq := range pendingMsg {
		s.lastMsg[id] = seq
	}
	if len(sets) > 0 && !durable {
		s.dirtyMu.Lock()
		s.dirty = true
		s.dirtyMu.Unlock()
	}
	for _, r := range batch {
		r.done <- r.err
	}
}

// write applies a batch: it is appended to the write-ahead log while Badger
// commits it (without syncing); with durable, one fdatasync of the log makes
// it durable before write returns.
func (s *Store) write(sets []kv, durable bool) error {
	if len(sets) == 0 {
		return nil
	}
	committed := make(chan error, 1)
	go func() { committed <- s.commit(sets) }()
	ok, err := s.wal.append(sets)
	if err == nil && !ok {
		// The log is full: checkpoint, then log the batch in the new
		// generation. (The commit above only touches Badger.)
		if err = <-committed; err != nil {
			return err
		}
		committed <- nil
		if err = s.checkpoint(walBatchSize(sets)); err == nil {
			if ok, err = s.wal.append(sets); err == nil && !ok {
				err = fmt.Errorf("batch of %d entries does not fit the write-ahead log", len(sets))
			}
		}
	}
	if err == nil && durable {
		err = s.wal.sync()
		if err == nil {
			s.dirtyMu.Lock()
			s.dirty = false
			s.dirtyMu.Unlock()
		}
	}
	if cerr := <-committed; err == nil {
		err = cerr
	}
	return err
}

func walBatchSize(sets []kv) int64 {
	n := int64(walHeader)
	for _, e := range sets {
		n += int64(len(e.k)+len(e.v)) + 21
	}
	return n
}

// commit applies sets to Badger in as few transactions as fit.
func (s *Store) commit(sets []kv) error {
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, e := range sets {
		err := txn.Set(e.k, e.v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.Set(e.k, e.v)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// checkpoint syncs Badger, after which the log's records are no longer
// needed, and starts a new log generation.
func (s *Store) checkpoint(need int64) error {
	if err := s.db.Sync(); err != nil {
		return err
	}
	return s.wal.reset(need)
}

// lastSeqFor returns the last sequence number of a run, from the batch in
// progress, the cache, or the database.
func (s *Store) lastSeqFor(txn *badger.Txn, id string, pending map[string]uint64, created map[string]bool, forCreate bool) (uint64, error) {
	if seq, ok := pending[id]; ok {
		return seq, nil
	}
	if seq, ok := s.lastSeq[id]; ok {
		return seq, nil
	}
	if forCreate {
		_, err := txn.Get(metaKey(id))
		if err == nil {
			return 1, nil // exists; exact value irrelevant to Create
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return 0, err
		}
	}
	seq, err := lastSeqInDB(txn, id)
	if err != nil {
		return 0, err
	}
	if seq > 0 {
		s.lastSeq[id] = seq
	}
	return seq, nil
}

func lastSeqInDB(txn *badger.Txn, id string) (uint64, error) {
	prefix := journalPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	defer it.Close()
	seek := append(append([]byte{}, prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	it.Seek(seek)
	if !it.ValidForPrefix(prefix) {
		return 0, nil
	}
	k := it.Item().Key()
	if len(k) != len(prefix)+8 {
		return 0, fmt.Errorf("run %s: malformed journal key %q", id, k)
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
}

func (s *Store) syncer(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.dirtyMu.Lock()
			d := s.dirty
			s.dirty = false
			s.dirtyMu.Unlock()
			if d {
				_ = s.wal.sync()
			}
		}
	}
}

// Reads.

// Run implements journal.Store.
func (s *Store) Run(ctx context.Context, id string) (*journal.Run, error) {
	var run journal.Run
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &run) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("run %s: %w", id, journal.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	return &run, nil
}

// Records implements journal.Store.
func (s *Store) Records(ctx context.Context, id string, from uint64) ([]journal.Record, error) {
	if from == 0 {
		from = 1
	}
	var out []journal.Record
	err := s.db.View(func(txn *badger.Txn) error {
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
			err := item.Value(func(v []byte) error {
				var derr error
				rec, derr = journal.DecodeRecord(id, seq, v)
				return derr
			})
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

// List implements journal.Store.
func (s *Store) List(ctx context.Context, f journal.Filter) ([]*journal.Run, error) {
	var runs []*journal.Run
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte("m/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefix); it.Next() {
			var r journal.Run
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("run %s: %w", bytes.TrimPrefix(it.Item().Key(), prefix), err)
			}
			if f.Match(&r) {
				runs = append(runs, &r)
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
	return runs, nil
}

// Blob implements journal.Store.
func (s *Store) Blob(ctx context.Context, hash string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(hash))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("blob %s: %w", hash, journal.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", hash, err)
	}
	sum := sha256.Sum256(out)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != hash {
		return nil, fmt.Errorf("blob %s is corrupt: its content hashes to %s: %w", hash, got, journal.ErrCorrupt)
	}
	return out, nil
}

// badgerLogger forwards Badger's warnings and errors to zerolog and drops its
// informational chatter.
type badgerLogger struct{ l zerolog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error().Str("component", "badger").Msgf(strings.TrimSpace(f), a...)
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn().Str("component", "badger").Msgf(strings.TrimSpace(f), a...)
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

var _ journal.KV = (*Store)(nil)

func kvKey(key string) []byte { return []byte("k/" + key) }

// GetKV implements journal.KV.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, bool, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(kvKey(key))
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return out, true, nil
}

// PutKV implements journal.KV.
func (s *Store) PutKV(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return journal.ErrClosed
	}
	e := badger.NewEntry(kvKey(key), append([]byte(nil), val...))
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}
