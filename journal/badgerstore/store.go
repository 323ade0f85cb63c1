// Package badgerstore is the embedded journal.Store: runs, journals and
// script blobs in a Badger v4 database in one directory.
//
// # Basics
//
// Open takes the directory's lock; one process owns a store at a time.
// Writes from every run in the process go through one committer goroutine
// that gathers whatever is pending (group commit) and writes it as one
// batch with the next log sequence number (LSN): first to the store's
// write-ahead log (starflow.wal, one pwrite), then to Badger without
// syncing, while one fdatasync of the log runs alongside for a batch that
// asked for durability. The log is preallocated and overwritten in place,
// so that fdatasync flushes data only. A lone run pays one fdatasync per
// durable call; fifty concurrent runs share them.
//
// Badger's own files are synced at checkpoints only: when the log is full,
// on Close, after Open recovered anything, and for a batch too large for
// the log; and (without starting a new generation) before the log records
// a batch with values over the chunk size, whose chunks never go through
// the log. A checkpoint (Store.checkpoint documents exactly which files it
// syncs, in which order) makes every batch so far durable in Badger's
// files, and then starts a new log generation. Open re-applies every batch
// of the current generation, in order; run metadata, the one value the
// store replaces, carries the LSN of the batch that wrote it and is never
// put back over a newer version (metaversion.go). No value reaches
// Badger's value log (chunk.go).
//
// Key layout (see spec/journal.md):
//
//	m/<run-id>                   run metadata (0xfe, LSN, journal.EncodeRun envelope)
//	j/<run-id>/<seq:8 bytes>     journal record envelope (journal.Encode)
//	b/sha256:<hex>               content-addressed blob (script sources)
//	x/<run-id>/<seq:8 bytes>     inbox message envelope
//	k/<key>                      scratch key-value state (journal.KV)
//	c/<key><LSN:8><index:4>      a chunk of a value over 1 MiB (chunk.go)
//	s/lsn                        LSN of the last batch applied (8 bytes)
//
// # Damage and failures
//
// Damaged data is reported, never read as something else: records,
// metadata and inbox messages are checksummed envelopes; Badger verifies
// its value log entries and table blocks; Open verifies every table and
// refuses a directory that lost its MANIFEST (Badger would open it as
// empty and delete the tables). A panic inside Badger on damaged bytes, in
// any read, becomes a *journal.CorruptError. List returns the runs it can
// read along with an error naming the ones it cannot.
//
// A failed fsync (or a failed Badger commit after the log was written)
// leaves the store failed: every later write returns an error wrapping the
// cause, and Close reports it. Nothing is retried, since after a failed
// fsync the kernel may have dropped the unsynced data (fsyncgate); reopen
// the store, which recovers from the log, and resume the runs.
//
// The store keeps Options.MinFreeBytes free on its file system: below it,
// writes fail with an error wrapping journal.ErrNoSpace (Badger writes
// through memory maps, and a full disk would kill the process with
// SIGBUS). Values are limited to journal.MaxRecordBytes (journal.ErrTooLarge).
//
// # Caveats
//
// A second process opening the same directory gets a *journal.LockedError
// naming the owner (read from the starflow.owner file the owner writes).
// Nothing is ever deleted, apart from empty files a killed process left
// and the chunks of replaced metadata; compaction of finished runs is not
// implemented.
//
// Open reads every table to verify it (about 4 ms per MiB of tables on
// the reference machine, in parallel). Damage that appears while the
// store is open is not covered as well: Badger hides a table block that
// fails verification from reads (the next Open reports it), and its
// background compaction may still panic on one.
package badgerstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/rs/zerolog"

	"github.com/starflow/starflow/journal"
)

// Options tune the store. The zero value is a good default.
type Options struct {
	// Logger receives Badger's warnings and errors, and the store's own.
	// Default: discard.
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
	// MinFreeBytes is the free space the store leaves on its file system:
	// a write that would go below it fails with an error wrapping
	// journal.ErrNoSpace, and writes resume once space is freed. 0 means
	// DefaultMinFreeBytes (256 MiB); negative turns the reserve off.
	MinFreeBytes int64

	// FaultPoint, if set, is called by the committer at the points inside
	// a write where a crash is most telling: FaultLogged, after a batch is
	// in the write-ahead log and before Badger has it; FaultSynced, after
	// a checkpoint synced Badger's files and before the log starts a new
	// generation. Fault-injection tests use it to stop the process there
	// (a simulation copies the store's files as that moment leaves them).
	// It runs on the committer: while it blocks, no write completes.
	FaultPoint func(FaultPoint)

	// For tests: replace fsync/fdatasync, and statfs, and how long a
	// statfs answer is trusted (negative: not at all).
	fsync     func(f *os.File, dataOnly bool) error
	freeSpace func(dir string) (uint64, error)
	spaceTTL  time.Duration
}

// FaultPoint names a point inside a write (Options.FaultPoint).
type FaultPoint string

// The fault points.
const (
	FaultLogged FaultPoint = "logged" // a batch is in the write-ahead log, not yet in Badger
	FaultSynced FaultPoint = "synced" // a checkpoint synced Badger; the log still holds the old generation
)

// Store is a journal.Store on Badger. Create it with Open.
type Store struct {
	fault     func(FaultPoint)
	wal       *wal
	db        *badger.DB
	dir       string
	chunkSize int // values larger than this are stored in chunks (chunk.go)
	log       zerolog.Logger
	fsync     func(f *os.File, dataOnly bool) error
	space     *spaceGuard
	writes    chan *writeReq
	tick      chan struct{} // the background syncer's ticks
	done      chan struct{}
	closeMu   sync.RWMutex
	closed    bool
	wg        sync.WaitGroup

	// Owned by the committer (and by Open and Close, around it).
	lsn     uint64            // LSN of the last batch written
	dirty   bool              // the log holds writes not synced yet
	lastSeq map[string]uint64 // each run's last record, when known
	lastMsg map[string]uint64 // each run's last inbox message, when known

	failMu sync.Mutex
	failed error // set once a write could not be made durable
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

func lockedError(dir string) error {
	le := &journal.LockedError{Dir: dir}
	if o, oerr := ReadOwner(dir); oerr == nil {
		le.PID, le.Command, le.Since, le.Addr = o.PID, o.Command, o.Since, o.Addr
	}
	return le
}

// badgerError carries a Badger error without its message's hexdumps.
type badgerError struct {
	what string
	err  error
}

func (e *badgerError) Error() string { return e.what + ": " + sanitize(e.err) }
func (e *badgerError) Unwrap() error { return e.err }

// testBadgerOptions, set only by tests (powerloss_export_test.go), adjusts
// Badger's options, e.g. to rotate memtables after a few KiB.
var testBadgerOptions func(badger.Options) badger.Options

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	fsync := opts.fsync
	if fsync == nil {
		fsync = osSync
	}
	unlock, err := lockDir(dir)
	if errors.Is(err, errLocked) {
		return nil, lockedError(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	ws, err := readWALState(dir)
	if err != nil {
		err = &journal.CorruptError{Store: dir, Reason: err.Error() + "; nothing was changed: restore the store from a backup"}
	} else {
		err = preOpen(dir, ws, opts.Logger)
	}
	unlock()
	if err != nil {
		var ce *journal.CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	db, err := openBadger(dir, opts.Logger)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:        db,
		dir:       dir,
		chunkSize: chunkSizeFor(db.Opts().ValueThreshold),
		log:       opts.Logger,
		fsync:     fsync,
		fault:     opts.FaultPoint,
		writes:    make(chan *writeReq, 1024),
		tick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		lastSeq:   make(map[string]uint64),
		lastMsg:   make(map[string]uint64),
	}
	if opts.MinFreeBytes >= 0 {
		s.space = &spaceGuard{dir: dir, min: uint64(opts.MinFreeBytes), free: opts.freeSpace, ttl: opts.spaceTTL}
		if s.space.ttl == 0 {
			s.space.ttl = spaceTTL
		}
		if s.space.min == 0 {
			s.space.min = DefaultMinFreeBytes
		}
		if s.space.free == nil {
			s.space.free = freeBytes
		}
	}
	if err := s.recoverLog(); err != nil {
		if s.wal != nil {
			s.wal.close()
		}
		db.Close()
		var ce *journal.CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	owner := Owner{PID: os.Getpid(), Command: opts.Command, Since: time.Now().UTC(), Addr: opts.Addr}
	ob, _ := json.Marshal(owner)
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), ob, 0o644); err != nil {
		s.wal.close()
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

// checksumMode is Badger's table checksum verification; a variable for
// the benchmark that chose it (BenchmarkChecksumModes).
var checksumMode = options.OnBlockRead

// openBadger opens the database; a panic on damaged files (in the part of
// Open that runs on this goroutine) becomes a CorruptError.
func openBadger(dir string, log zerolog.Logger) (db *badger.DB, err error) {
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueThreshold(1 << 20). // nothing the store writes reaches it (chunk.go)
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		// Table blocks are verified when read from disk, value log
		// entries whenever read. (Open verifies every table first: Badger
		// hides a block that fails verification from reads instead of
		// reporting it; see verifyTable.)
		WithChecksumVerificationMode(checksumMode).
		WithVerifyValueChecksum(true)
	if testBadgerOptions != nil {
		bo = testBadgerOptions(bo)
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &journal.CorruptError{Store: dir, Reason: "opening its Badger database panicked (" + firstLine(fmt.Sprint(r)) + "); nothing was changed: restore the store from a backup"}
		}
	}()
	db, err = badger.Open(bo)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, lockedError(dir)
		}
		return nil, &badgerError{"open store " + dir, err}
	}
	return db, nil
}

// recoverLog opens the log and re-applies the batches of its current
// generation.
func (s *Store) recoverLog() error {
	w, batches, ws, err := openWAL(s.dir, s.fsync)
	if err != nil {
		var d *walDamage
		if errors.As(err, &d) {
			return &journal.CorruptError{Store: s.dir, Reason: d.Error() + "; nothing was changed: restore the store from a backup"}
		}
		return fmt.Errorf("write-ahead log: %w", err)
	}
	s.wal = w
	stored, err := s.storedLSN()
	if err != nil {
		return err
	}
	if !ws.legacy && stored < ws.base {
		return &journal.CorruptError{Store: s.dir, Reason: fmt.Sprintf(
			"its Badger files end at batch %d, but batches up to %d were synced to them at the last checkpoint: acknowledged writes were lost (a damaged or truncated .mem, .vlog, table or MANIFEST file); restore the store from a backup", stored, ws.base)}
	}
	s.lsn = max(stored, ws.base)
	// Every batch since the checkpoint is applied again, in order, even
	// those Badger's newest LSN says it has: after a power loss Badger may
	// hold a later batch (a page of a newer memtable's log the system
	// happened to write) without an earlier one (in an older memtable whose
	// pages it did not). The log has them all; applying a batch again
	// changes nothing but keys a later batch wrote, which the later batch,
	// applied after it, writes again.
	// Metadata, the one value the store replaces, carries the LSN that
	// wrote it, and is not put back over a newer version (metaversion.go).
	applied := 0
	for _, b := range batches {
		sets, err := s.withoutNewerMeta(b.sets, b.lsn)
		if err != nil {
			return &badgerError{"recover from the write-ahead log", err}
		}
		if err := s.commit(sets); err != nil {
			return &badgerError{"recover from the write-ahead log", err}
		}
		applied++
		s.lsn = max(s.lsn, b.lsn)
	}
	if applied > 0 {
		s.log.Info().Str("store", s.dir).Int("batches", applied).Uint64("lsn", s.lsn).Msg("re-applied batches from the write-ahead log")
	}
	// A new generation unless the log is an empty, current one that
	// continues where Badger is.
	if !ws.exists || ws.legacy || len(batches) > 0 || stored != ws.base {
		if err := s.checkpoint(); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	} else {
		w.off, w.synced = walHeaderSize, walHeaderSize
	}
	return nil
}

var lsnKey = []byte("s/lsn")

func (s *Store) storedLSN() (lsn uint64, err error) {
	err = s.view("", func(txn *badger.Txn) error {
		item, err := txn.Get(lsnKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return &badgerError{"read the store's LSN", err}
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return &journal.CorruptError{Store: s.dir, Reason: fmt.Sprintf("its LSN is %d bytes, want 8", len(v))}
			}
			lsn = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return lsn, err
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// SetAddr records the API address the owner serves in the owner file.
func (s *Store) SetAddr(command, addr string) error {
	owner := Owner{PID: os.Getpid(), Command: command, Since: time.Now().UTC(), Addr: addr}
	ob, _ := json.Marshal(owner)
	return os.WriteFile(filepath.Join(s.dir, OwnerFile), ob, 0o644)
}

// Close waits for pending writes, checkpoints, and releases the directory
// lock. It reports a failure that left the store refusing writes.
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
	err := s.failure()
	if err == nil && (s.lsn != s.wal.base || s.dirty) {
		if cerr := s.checkpoint(); cerr != nil {
			err = s.fail("the checkpoint at close", cerr)
		}
	}
	os.Remove(filepath.Join(s.dir, OwnerFile))
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = &badgerError{"close store " + s.dir, cerr}
	}
	// Badger flushed its memtable into a new table: the log's header
	// records it, so that a MANIFEST that loses it is noticed. Badger
	// released the directory lock: take it again for this, and leave the
	// header alone if another process was quicker.
	if err == nil {
		if unlock, lerr := lockDir(s.dir); lerr == nil {
			if t := tablesInManifest(s.dir); t > s.wal.maxTable {
				if herr := s.wal.setMaxTable(t); herr != nil {
					err = fmt.Errorf("close store %s: write-ahead log header: %w", s.dir, herr)
				}
			}
			unlock()
		}
	}
	s.wal.close()
	return err
}

// Failures.

// failedError is what every write returns once the store failed.
type failedError struct {
	dir  string
	what string
	err  error
}

func (e *failedError) Error() string {
	return fmt.Sprintf("the store %s refuses writes: %s failed (%s), so writes it acknowledged may not be on stable storage; close it and open it again, which recovers from its write-ahead log, then resume the interrupted runs (starflow resume)", e.dir, e.what, sanitize(e.err))
}

func (e *failedError) Unwrap() error { return e.err }

// fail marks the store failed (the first failure wins) and returns the
// error writes now get.
func (s *Store) fail(what string, err error) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failed == nil {
		s.failed = &failedError{dir: s.dir, what: what, err: err}
		s.log.Error().Str("store", s.dir).Err(err).Msgf("%s failed: the store refuses writes until it is reopened", what)
	}
	return s.failed
}

func (s *Store) failure() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failed
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
	enc     [][]byte // recs, encoded
	run     *journal.Run
	meta    []byte // run, encoded (Create and Append)
	blob    []byte
	hash    string
	msg     *journal.Message
	durable bool
	size    int // bytes it writes, roughly
	err     error
	done    chan error
}

// maxValueBytes bounds any value the store writes: a record or message of
// journal.MaxRecordBytes in its envelope, or metadata holding one.
const maxValueBytes = journal.MaxRecordBytes + 1<<20

func tooLarge(what string, n int) error {
	return fmt.Errorf("%s is %d bytes, over the journal's limit of %d bytes (64 MiB): %w", what, n, journal.MaxRecordBytes, journal.ErrTooLarge)
}

func (s *Store) submit(ctx context.Context, r *writeReq) error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return journal.ErrClosed
	}
	if err := s.failure(); err != nil {
		s.closeMu.RUnlock()
		return err
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

// prepare encodes a write's records and metadata (on the caller's
// goroutine, not the committer's) and checks their sizes.
func prepare(r *writeReq) error {
	r.enc = make([][]byte, len(r.recs))
	for i, rec := range r.recs {
		if len(rec.Data) > journal.MaxRecordBytes {
			return fmt.Errorf("run %s: %w", r.id, tooLarge(fmt.Sprintf("record %d (%s)", rec.Seq, rec.Type), len(rec.Data)))
		}
		r.enc[i] = journal.Encode(rec)
		r.size += len(r.enc[i]) + 32
	}
	if r.run != nil {
		if r.run.UpdatedAt.IsZero() {
			r.run.UpdatedAt = time.Now().UTC()
		}
		if r.kind != writeDeliver {
			mb, err := journal.EncodeRun(r.run)
			if err != nil {
				return err
			}
			if len(mb) > maxValueBytes {
				return fmt.Errorf("run %s: %w", r.id, tooLarge("its metadata", len(mb)))
			}
			r.meta = mb
			r.size += len(mb) + 32
		} else {
			r.size += 1024
		}
	}
	return nil
}

// Create implements journal.Store.
func (s *Store) Create(ctx context.Context, run *journal.Run, recs []journal.Record) error {
	if err := journal.ValidateID(run.ID); err != nil {
		return err
	}
	if len(recs) == 0 || recs[0].Seq != 1 {
		return fmt.Errorf("create run %s: first record must have seq 1: %w", run.ID, journal.ErrConflict)
	}
	r := &writeReq{kind: writeCreate, id: run.ID, recs: recs, run: cloneRun(run), durable: true}
	if err := prepare(r); err != nil {
		return err
	}
	return s.submit(ctx, r)
}

// Append implements journal.Store.
func (s *Store) Append(ctx context.Context, id string, recs []journal.Record, run *journal.Run, durable bool) error {
	if len(recs) == 0 && run == nil {
		return nil
	}
	r := &writeReq{kind: writeAppend, id: id, recs: recs, run: cloneRun(run), durable: durable}
	if err := prepare(r); err != nil {
		return err
	}
	return s.submit(ctx, r)
}

// PutBlob implements journal.Store.
func (s *Store) PutBlob(ctx context.Context, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	if len(data) > journal.MaxRecordBytes {
		return "", fmt.Errorf("store blob %s: %w", hash, tooLarge("it", len(data)))
	}
	exists := false
	err := s.view("", func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(hash))
		if err == nil {
			exists = true
			return nil
		}
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		return &badgerError{"read blob " + hash, err}
	})
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	if exists {
		return hash, nil
	}
	buf := make([]byte, len(data))
	copy(buf, data)
	return hash, s.submit(ctx, &writeReq{kind: writeBlob, hash: hash, blob: buf, durable: true, size: len(buf) + 64})
}

// Deliver implements journal.Store.
func (s *Store) Deliver(ctx context.Context, id string, m journal.Message, run *journal.Run) (uint64, error) {
	if n := len(m.Value); n > journal.MaxRecordBytes {
		return 0, fmt.Errorf("deliver to run %s: %w", id, tooLarge("the message", n))
	}
	r := &writeReq{kind: writeDeliver, id: id, msg: &m, run: cloneRun(run), durable: true, size: len(m.Value) + 256}
	if err := prepare(r); err != nil {
		return 0, err
	}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.msg.Seq, nil
}

func cloneRun(r *journal.Run) *journal.Run {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// The committer.

const (
	maxBatch      = 512     // requests per batch
	maxBatchBytes = 1 << 20 // gathering stops once a batch is this large
)

// maxCachedRuns bounds lastSeq and lastMsg; a run's entries also go when
// its metadata becomes final. (A variable for tests.)
var maxCachedRuns = 4096

// committer applies queued writes in batches: at most one log record, one
// Badger commit and one fsync per batch.
func (s *Store) committer() {
	defer s.wg.Done()
	batch := make([]*writeReq, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.tick:
			s.backgroundSync()
			continue
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
		size := first.size
	drain:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
				size += r.size
			default:
				break drain
			}
		}
		s.apply(batch)
	}
}

// backgroundSync makes non-durable writes durable (Options.SyncInterval).
// dirty is cleared only by a successful sync; a failed one fails the store.
func (s *Store) backgroundSync() {
	if !s.dirty || s.failure() != nil {
		return
	}
	if err := s.wal.sync(); err != nil {
		s.fail("the background fdatasync of "+walFile, err)
		return
	}
	s.dirty = false
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
			select {
			case s.tick <- struct{}{}:
			default:
			}
		}
	}
}

// batchWriter assembles a batch's Badger writes.
type batchWriter struct {
	lsn       uint64
	chunkSize int
	sets      []kv // go through the log
	chunks    []kv // committed and synced first (chunk.go)
}

func (b *batchWriter) put(k, v []byte) {
	if len(v) > b.chunkSize {
		ref, chunks := splitValue(k, v, b.lsn, b.chunkSize)
		b.chunks = append(b.chunks, chunks...)
		b.sets = append(b.sets, kv{k: k, v: ref, chunked: true})
		return
	}
	b.sets = append(b.sets, kv{k: k, v: v})
}

func (b *batchWriter) del(k []byte) { b.sets = append(b.sets, kv{k: k, del: true}) }

func (s *Store) apply(batch []*writeReq) {
	finish := func(err error) {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
			r.done <- r.err
		}
	}
	if err := s.failure(); err != nil {
		finish(err)
		return
	}
	need := 0
	for _, r := range batch {
		need += r.size
	}
	if err := s.space.check(need); err != nil {
		for _, r := range batch {
			if r.kind == writeBlob {
				r.err = fmt.Errorf("store blob: %w", err)
			} else {
				r.err = fmt.Errorf("run %s: %w", r.id, err)
			}
		}
		finish(nil)
		return
	}
	b := &batchWriter{lsn: s.lsn + 1, chunkSize: s.chunkSize}
	pendingSeq, pendingMsg, final, err := s.validate(batch, b)
	if err != nil {
		for _, r := range batch {
			delete(s.lastSeq, r.id)
			delete(s.lastMsg, r.id)
		}
		finish(err)
		return
	}
	durable := false
	for _, r := range batch {
		durable = durable || (r.err == nil && r.durable)
	}
	if len(b.sets) > 0 {
		sets := append(b.sets, kv{k: lsnKey, v: binary.BigEndian.AppendUint64(nil, b.lsn)})
		err = s.write(b.chunks, sets, b.lsn, durable)
	}
	if err != nil {
		// Nothing in this batch can be trusted to be written; forget cached
		// sequence numbers so they are read again from the database.
		for _, r := range batch {
			delete(s.lastSeq, r.id)
			delete(s.lastMsg, r.id)
			if r.err == nil {
				r.err = fmt.Errorf("write journal: %w", err)
			}
		}
		finish(nil)
		return
	}
	for id, seq := range pendingSeq {
		s.lastSeq[id] = seq
	}
	for id, seq := range pendingMsg {
		s.lastMsg[id] = seq
	}
	for id := range final {
		delete(s.lastSeq, id)
		delete(s.lastMsg, id)
	}
	trimCache(s.lastSeq)
	trimCache(s.lastMsg)
	finish(nil)
}

// trimCache keeps a cache under maxCachedRuns entries by forgetting
// arbitrary ones (they are read from the database again when needed).
func trimCache(m map[string]uint64) {
	if len(m) <= maxCachedRuns {
		return
	}
	for id := range m {
		delete(m, id)
		if len(m) <= maxCachedRuns*3/4 {
			return
		}
	}
}

// validate checks each request against the database and the batch so
// far, setting r.err on the ones that fail, and adds the writes of the
// others to b. It returns the runs' new last record and message numbers,
// and the runs whose metadata becomes final. An error fails the batch.
func (s *Store) validate(batch []*writeReq, b *batchWriter) (pendingSeq, pendingMsg map[string]uint64, final map[string]bool, err error) {
	created := map[string]bool{}
	pendingSeq = map[string]uint64{}
	pendingMsg = map[string]uint64{}
	final = map[string]bool{}
	// Metadata is written once per run and batch, the last version.
	metas := map[string][]byte{}
	var metaOrder []string
	setMeta := func(id string, mb []byte, st journal.Status) {
		if _, ok := metas[id]; !ok {
			metaOrder = append(metaOrder, id)
		}
		metas[id] = mb
		if st.Final() {
			final[id] = true
		} else {
			delete(final, id)
		}
	}
	now := time.Now().UTC()

	// Validation reads the database; nothing of this batch is in it yet.
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	defer func() {
		if r := recover(); r != nil {
			err = &journal.CorruptError{Store: s.dir, Reason: "reading it panicked: " + firstLine(fmt.Sprint(r))}
		}
	}()
	for _, r := range batch {
		switch r.kind {
		case writeDeliver:
			if _, err := txn.Get(metaKey(r.id)); err != nil {
				if errors.Is(err, badger.ErrKeyNotFound) && !created[r.id] {
					r.err = fmt.Errorf("run %s: %w", r.id, journal.ErrNotFound)
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					r.err = &badgerError{"read run " + r.id, err}
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
			if len(data) > maxValueBytes {
				r.err = fmt.Errorf("deliver to run %s: %w", r.id, tooLarge("the message", len(data)))
				continue
			}
			var mb []byte
			if r.run != nil {
				r.run.Inbox = r.msg.Seq
				if mb, err = journal.EncodeRun(r.run); err != nil {
					r.err = err
					continue
				}
			}
			b.put(inboxKey(r.id, r.msg.Seq), journal.Encode(journal.Record{Seq: r.msg.Seq, Type: journal.TypeMessage, Time: r.msg.Time, Data: data}))
			if mb != nil {
				setMeta(r.id, mb, r.run.Status)
			}
			pendingMsg[r.id] = r.msg.Seq
		case writeBlob:
			b.put(blobKey(r.hash), r.blob)
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
			for i, rec := range r.recs {
				b.put(journalKey(r.id, rec.Seq), r.enc[i])
			}
			if r.meta != nil {
				setMeta(r.id, r.meta, r.run.Status)
			}
			if r.kind == writeCreate {
				created[r.id] = true
			}
			if n := len(r.recs); n > 0 {
				pendingSeq[r.id] = r.recs[n-1].Seq
			}
		}
	}
	for _, id := range metaOrder {
		// Replaced metadata that was chunked leaves its chunks behind:
		// delete them with the new version.
		key := metaKey(id)
		if item, err := txn.Get(key); err == nil && item.UserMeta()&userMetaChunked != 0 {
			if ref, err := item.ValueCopy(nil); err == nil {
				if cr, err := parseRef(ref); err == nil {
					for _, k := range cr.keys(key) {
						b.del(k)
					}
				}
			}
		}
		b.put(key, metaValue(b.lsn, metas[id]))
	}
	return pendingSeq, pendingMsg, final, nil
}

// write makes a batch's writes, in this order:
//
//  1. Chunks of large values, if any: committed to Badger, then Badger's
//     files synced (syncBadger), so that no reference in the log can
//     outlive its chunks.
//  2. A batch too large for the log: committed to Badger, then a
//     checkpoint makes it durable (and starts a new log generation).
//  3. Otherwise (the common case): a checkpoint first if the log is full;
//     the batch appended to the log (pwrite); the Badger commit, with the
//     log's fdatasync running alongside if the batch is durable.
//
// Badger holds the batch's LSN (key s/lsn) from the same commit, in the
// last transaction if the batch needs several. A failure after the log
// holds the batch fails the store: the batch will be applied on reopen,
// so its callers cannot be told it failed.
func (s *Store) write(chunks, sets []kv, lsn uint64, durable bool) error {
	if len(chunks) > 0 {
		if err := s.commit(chunks); err != nil {
			return &badgerError{fmt.Sprintf("write %d chunks of large values", len(chunks)), err}
		}
		if err := s.syncBadger(); err != nil {
			return s.fail("syncing Badger's files for large values", err)
		}
	}
	size := recordSize(sets)
	if size > walMaxBatch() {
		if err := s.commit(sets); err != nil {
			return s.fail("the Badger commit of a large batch", &badgerError{fmt.Sprintf("%d entries, %d bytes", len(sets), size), err})
		}
		s.lsn = lsn
		if err := s.checkpoint(); err != nil {
			return s.fail("the checkpoint of a large batch", err)
		}
		return nil
	}
	if !s.wal.fits(size) {
		if err := s.checkpoint(); err != nil {
			return s.fail("the checkpoint of a full "+walFile, err)
		}
	}
	if err := s.wal.append(lsn, sets); err != nil {
		// Nothing reached Badger; the next batch overwrites this record.
		return fmt.Errorf("append to %s: %w", walFile, err)
	}
	if s.fault != nil {
		s.fault(FaultLogged)
	}
	var cerr error
	if durable {
		// The commit on another goroutine, the fdatasync on this one: the
		// fdatasync starts at once, and the commit's hand-offs (to its
		// goroutine, and to Badger's writer) hide behind it.
		committed := make(chan error, 1)
		go func() { committed <- s.commit(sets) }()
		serr := s.wal.sync()
		cerr = <-committed
		if serr != nil {
			return s.fail("fdatasync of "+walFile, serr)
		}
		s.dirty = false
	} else {
		cerr = s.commit(sets)
	}
	if cerr != nil {
		return s.fail("the Badger commit", &badgerError{fmt.Sprintf("%d entries, %d bytes", len(sets), size), cerr})
	}
	s.lsn = lsn
	if !durable {
		s.dirty = true
	}
	return nil
}

// commit applies sets to Badger in as few transactions as fit, in order.
func (s *Store) commit(sets []kv) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked: %s", firstLine(fmt.Sprint(r)))
		}
	}()
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, e := range sets {
		err := setEntry(txn, e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = setEntry(txn, e)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

func setEntry(txn *badger.Txn, e kv) error {
	switch {
	case e.del:
		return txn.Delete(e.k)
	case e.chunked:
		return txn.SetEntry(badger.NewEntry(e.k, e.v).WithMeta(userMetaChunked))
	}
	return txn.Set(e.k, e.v)
}

// checkpoint makes every batch committed so far durable in Badger's own
// files, then starts a new log generation whose header says so (base LSN).
// It syncs, in this order:
//
//  1. badger.DB.Sync: the active memtable's .mem file (msync) and the
//     current .vlog file (fsync);
//  2. every *.mem and *.vlog file in the directory, with fdatasync (a file
//     gone meanwhile was flushed to a table: fine). Badger never syncs a
//     memtable's file once it is rotated out, nor value log files it
//     rotated from;
//  3. MANIFEST, with fsync;
//  4. the directory, with fsync (names of new .mem, .vlog, .sst files);
//  5. starflow.wal: the new header (generation, base LSN, highest table in
//     the MANIFEST) at offset 0, with fdatasync.
//
// Table (.sst) files are synced by Badger when it writes them (msync),
// before the MANIFEST names them. Between checkpoints, only starflow.wal is
// synced (fdatasync, by durable writes and the background syncer).
func (s *Store) checkpoint() error {
	if err := s.syncBadger(); err != nil {
		return err
	}
	if s.fault != nil {
		s.fault(FaultSynced)
	}
	var maxTable uint64
	for _, t := range s.db.Tables() {
		maxTable = max(maxTable, t.ID)
	}
	if err := s.wal.reset(s.lsn, max(maxTable, s.wal.maxTable)); err != nil {
		return fmt.Errorf("start a new generation of %s: %w", walFile, err)
	}
	s.dirty = false
	return nil
}

// syncBadger is steps 1 to 4 of checkpoint.
func (s *Store) syncBadger() error {
	if err := s.db.Sync(); err != nil {
		return &badgerError{"badger sync", err}
	}
	names, err := badgerLogFiles(s.dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := s.syncFile(n, true); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := s.syncFile("MANIFEST", false); err != nil {
		return err
	}
	return s.syncFile(".", false)
}

func (s *Store) syncFile(name string, dataOnly bool) error {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.fsync(f, dataOnly); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
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
			return 0, &badgerError{"read run " + id, err}
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
		return 0, &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("malformed journal key %q", k)}
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
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
	if len(k) != len(prefix)+8 {
		return 0, &journal.CorruptError{RunID: id, Reason: fmt.Sprintf("malformed inbox key %q", k)}
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
}

// badgerLogger forwards Badger's warnings and errors to zerolog and drops its
// informational chatter.
type badgerLogger struct{ l zerolog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error().Str("component", "badger").Msg(firstLine(fmt.Sprintf(strings.TrimSpace(f), a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn().Str("component", "badger").Msg(firstLine(fmt.Sprintf(strings.TrimSpace(f), a...)))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
