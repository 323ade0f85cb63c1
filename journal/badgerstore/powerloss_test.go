package badgerstore_test

// Power-loss test: the store runs in a child process on a crashfs mount
// (a FUSE file system that keeps only what was fsynced), writes runs from
// several goroutines and reports every write that returned nil; the power
// is cut at a seeded point; the durable image is opened with the real
// store, without FUSE, and checked against what was acknowledged.
//
//	go test ./journal/badgerstore -run '^TestPowerLoss$' -v                   # the fixed seeds
//	go test ./journal/badgerstore -run '^TestPowerLoss$' -powerloss.seeds=50  # seeds 1..50
//	go test ./journal/badgerstore -run '^TestPowerLoss$' -powerloss.seed=17   # replay one seed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/starflow/starflow/internal/crashfs"
	"github.com/starflow/starflow/journal"
	"github.com/starflow/starflow/journal/badgerstore"
)

var (
	powerLossSeed  = flag.Uint64("powerloss.seed", 0, "run TestPowerLoss with this seed only")
	powerLossSeeds = flag.Int("powerloss.seeds", 4, "run TestPowerLoss with seeds 1..N")
)

// powerLossChildEnv carries the child's configuration (JSON) when the test
// binary is re-executed as the writer process.
const powerLossChildEnv = "STARFLOW_POWERLOSS_CHILD"

func TestMain(m *testing.M) {
	if c := os.Getenv(powerLossChildEnv); c != "" {
		var cfg childConfig
		if err := json.Unmarshal([]byte(c), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := powerLossChild(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// smallBadger makes Badger rotate memtables every few dozen KiB, lowers
// its value threshold to 4 KiB (so the store keeps values over 3 KiB in
// chunks, and nothing in the value log), and starts a new value log file
// every MiB, so that a few MiB of writes go through many rotations and
// flushes between checkpoints of the store's write-ahead log (plWALSize).
func smallBadger(o badger.Options) badger.Options {
	return o.WithMemTableSize(64 << 10).
		WithValueThreshold(4 << 10).
		WithValueLogFileSize(1 << 20).
		WithBaseTableSize(256 << 10).
		WithBlockCacheSize(1 << 20).
		WithIndexCacheSize(1 << 20)
}

type childConfig struct {
	Dir     string `json:"dir"`
	Seed    uint64 `json:"seed"`
	Runs    int    `json:"runs"`
	Writers int    `json:"writers"`
	WALSize int64  `json:"wal_size"`
}

const (
	plRuns    = 80
	plWriters = 4
	// The write-ahead log checkpoints when it fills: 1 MiB makes a few
	// MiB of writes go through several checkpoints.
	plWALSize = 1 << 20
)

func TestPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("power-loss test skipped in -short mode")
	}
	if raceEnabled {
		t.Skip("a crash matrix: .ci/run runs it without -race in its own step")
	}
	var seeds []uint64
	if *powerLossSeed != 0 {
		seeds = []uint64{*powerLossSeed}
	} else {
		for s := 1; s <= *powerLossSeeds; s++ {
			seeds = append(seeds, uint64(s))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("replay: go test ./journal/badgerstore -run '^TestPowerLoss$' -powerloss.seed=%d -v\n"+
						"(the seed fixes the workload, the cut point and the torn tails; the interleaving of the writers is the scheduler's)", seed)
				}
			}()
			powerLoss(t, seed)
		})
	}
}

// cutPlan says where the power goes.
type cutPlan struct {
	afterCheckpoint int  // cut right after the WAL reset of the n-th checkpoint (Open's is the first)
	afterRotated    bool // or right after the first checkpoint taken while a rotated memtable is not flushed yet
	afterSync       int  // or right after the n-th fsync/fdatasync/msync of any file
	torn            bool
	walSize         int64 // the write-ahead log's size; 0: the store's default
}

func (c cutPlan) String() string {
	s := fmt.Sprintf("after sync #%d", c.afterSync)
	if c.afterCheckpoint > 0 {
		s = fmt.Sprintf("right after checkpoint #%d", c.afterCheckpoint)
	}
	if c.afterRotated {
		s = "right after the first checkpoint with an unflushed rotated memtable"
	}
	if c.torn {
		s += ", torn unsynced tails"
	}
	if c.walSize == 0 {
		s += ", production-size write-ahead log"
	}
	return s
}

func powerLoss(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var plan cutPlan
	switch p := rng.IntN(10); {
	case p < 2:
		plan.afterCheckpoint = 2 + rng.IntN(3)
	case p < 6:
		plan.afterRotated = true
	default:
		plan.afterSync = 20 + rng.IntN(1000)
	}
	plan.torn = rng.IntN(2) == 0
	plan.walSize = plWALSize
	if rng.IntN(4) == 0 {
		plan.walSize = 0 // the production size: long stretches between checkpoints
	}
	t.Logf("seed %d: cut %v", seed, plan)

	base := t.TempDir()
	backing := filepath.Join(base, "backing")
	if err := os.Mkdir(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	fsys, mnt := crashfs.MountT(t, backing)

	var checkpoints, syncs, memtables int
	resetWritten := false
	fsys.CutAfter(func(e crashfs.Event) bool {
		wal := strings.HasSuffix(e.Path, "starflow.wal")
		switch e.Op {
		case crashfs.OpCreate:
			if strings.HasSuffix(e.Path, ".mem") {
				memtables++ // Badger's memtable logs: one active, the rest immutable
			}
		case crashfs.OpRemove:
			if strings.HasSuffix(e.Path, ".mem") {
				memtables-- // flushed to a table
			}
		case crashfs.OpWrite:
			// A checkpoint starts a new log generation with a short
			// marker at offset 0 (records are longer).
			if wal && e.Off == 0 && e.Len <= 64 {
				resetWritten = true
			}
		case crashfs.OpFsync, crashfs.OpFdatasync:
			syncs++
			if wal && resetWritten {
				resetWritten = false
				checkpoints++
				if checkpoints == plan.afterCheckpoint || plan.afterRotated && checkpoints > 1 && memtables > 1 {
					return true
				}
			}
			return syncs == plan.afterSync
		}
		return false
	})

	cfg := childConfig{Dir: filepath.Join(mnt, "store"), Seed: seed, Runs: plRuns, Writers: plWriters, WALSize: plan.walSize}
	cb, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), powerLossChildEnv+"="+string(cb))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // before the mount closes, if the test stops early
	var lines []string
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() {
		<-readDone
		exited <- cmd.Wait()
	}()
	var childErr error
	select {
	case <-fsys.Frozen():
		cmd.Process.Kill()
		<-exited
	case childErr = <-exited:
		// The workload finished before the cut point: cut now, with
		// everything acknowledged.
	}
	select {
	case <-fsys.Frozen():
		childErr = nil // killed, or failed because the power went
	default:
	}
	if childErr != nil {
		t.Fatalf("writer process: %v\n%s", childErr, stderr.String())
	}
	var tornRng *rand.Rand
	if plan.torn {
		tornRng = rand.New(rand.NewPCG(seed, 0x7042))
	}
	st := fsys.Stats()
	image, err := fsys.PowerLoss(tornRng)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("power lost after %v: %d syncs (%d fsync, %d fdatasync/msync, %d directory), %d commits, %d checkpoints, %d writes; %d report lines",
		time.Since(start).Round(time.Millisecond), st.Fsyncs+st.Fdatasyncs, st.Fsyncs, st.Fdatasyncs, st.DirSyncs, st.Commits, checkpoints, st.Writes, len(lines))

	for _, l := range lines {
		if strings.HasPrefix(l, "e ") {
			// After the cut, writes fail with EIO; anything else is a
			// bug in the workload or the store.
			if strings.Contains(l, "conflict") || strings.Contains(l, "delivered as") || strings.Contains(l, "not found") {
				t.Errorf("writer: %s", l)
			} else {
				t.Logf("writer: %s", l)
			}
		}
	}
	acks, err := parseReports(lines)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, filepath.Join(image, "store"), seed, plan.walSize, acks)
}

// Reports from the writer: "s RUN OP" before op OP of run RUN is
// submitted, "k RUN OP" when it returned nil, "e RUN OP MESSAGE" when it
// failed.
type runReport struct {
	started int // ops submitted
	acked   []bool
}

func parseReports(lines []string) (map[int]*runReport, error) {
	out := map[int]*runReport{}
	for i, l := range lines {
		f := strings.SplitN(l, " ", 4)
		if len(f) < 3 {
			if i == len(lines)-1 {
				break // cut off by the kill
			}
			return nil, fmt.Errorf("bad report line %q", l)
		}
		run, err1 := strconv.Atoi(f[1])
		op, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			if i == len(lines)-1 {
				break
			}
			return nil, fmt.Errorf("bad report line %q", l)
		}
		r := out[run]
		if r == nil {
			r = &runReport{}
			out[run] = r
		}
		switch f[0] {
		case "s":
			r.started = max(r.started, op+1)
			for len(r.acked) < r.started {
				r.acked = append(r.acked, false)
			}
		case "k":
			r.acked[op] = true
		case "e":
		default:
			return nil, fmt.Errorf("bad report line %q", l)
		}
	}
	return out, nil
}

// The workload: each run is a fixed sequence of operations, generated from
// the seed and the run's number, so that the checker knows every byte each
// one wrote.

type opKind int

const (
	opBlob opKind = iota
	opCreate
	opAppend
	opDeliver
)

type planOp struct {
	kind    opKind
	blob    []byte
	recs    []journal.Record
	msg     *journal.Message
	meta    *journal.Run
	durable bool
}

var plBase = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func runID(n int) string { return fmt.Sprintf("run-%03d", n) }

func padding(rng *rand.Rand) string {
	var n int
	switch p := rng.IntN(100); {
	case p < 80:
		n = 20 + rng.IntN(1500)
	case p < 95:
		n = 1500 + rng.IntN(3000)
	default:
		n = 5000 + rng.IntN(15000) // over the chunk size: stored in chunks
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

func mustRecord(seq uint64, typ journal.Type, payload any) journal.Record {
	r, err := journal.NewRecord(seq, typ, plBase.Add(time.Duration(seq)*time.Millisecond), payload)
	if err != nil {
		panic(err)
	}
	return r
}

// planRun returns run n's operations.
func planRun(seed uint64, n int) []planOp {
	rng := rand.New(rand.NewPCG(seed, uint64(n)+1))
	id := runID(n)
	script := []byte(fmt.Sprintf("# run %d of seed %d\ndef main(ctx):\n    return %q\n", n, seed, padding(rng)))
	sum := sha256.Sum256(script)
	hash := "sha256:" + hex.EncodeToString(sum[:])
	var ops []planOp
	ops = append(ops, planOp{kind: opBlob, blob: script, durable: true})

	seq := uint64(0)
	inbox := uint64(0)
	step := 0
	tick := 0
	meta := func(st journal.Status) *journal.Run {
		tick++
		r := &journal.Run{ID: id, Status: st, Script: "main.star", ScriptHash: hash,
			Durability: journal.DurabilitySync, CreatedAt: plBase,
			UpdatedAt: plBase.Add(time.Duration(tick) * time.Second), Inbox: inbox}
		return r
	}
	next := func() uint64 { seq++; return seq }

	started := mustRecord(next(), journal.TypeRunStarted, journal.RunStarted{
		Script:     journal.Manifest{Entry: "main.star", Files: map[string]string{"main.star": hash}},
		Input:      json.RawMessage(fmt.Sprintf("%q", padding(rng))),
		Durability: journal.DurabilitySync,
	})
	ops = append(ops, planOp{kind: opCreate, recs: []journal.Record{started}, meta: meta(journal.StatusRunning), durable: true})

	calls := 3 + rng.IntN(25)
	for c := 0; c < calls; c++ {
		if rng.IntN(5) == 0 { // a log line, not durable
			lg := mustRecord(next(), journal.TypeLog, map[string]any{"level": "info", "msg": padding(rng), "pos": "main.star:4:1"})
			ops = append(ops, planOp{kind: opAppend, recs: []journal.Record{lg}, meta: meta(journal.StatusRunning), durable: false})
			continue
		}
		step++
		st := strconv.Itoa(step)
		args, _ := json.Marshal([]string{padding(rng)})
		cs := mustRecord(next(), journal.TypeCallStarted, journal.CallStarted{
			Step: st, Builtin: "http", Args: args, Key: id + "/" + st, Pos: "main.star:3:5"})
		switch rng.IntN(4) {
		case 0, 1, 2: // a call and its result, durable or not
			res, _ := json.Marshal(padding(rng))
			cc := mustRecord(next(), journal.TypeCallCompleted, journal.CallCompleted{Step: st, Result: res, Duration: time.Millisecond})
			ops = append(ops, planOp{kind: opAppend, recs: []journal.Record{cs, cc}, meta: meta(journal.StatusRunning), durable: rng.IntN(4) != 0})
		case 3: // the call waits for a message, gets it, and completes
			cw := mustRecord(next(), journal.TypeCallWaiting, journal.CallWaiting{Step: st, Reason: "answer"})
			m := meta(journal.StatusWaiting)
			m.Waiting = &journal.Waiting{Step: st, Builtin: "ask", Reason: "answer", Pos: "main.star:3:5"}
			ops = append(ops, planOp{kind: opAppend, recs: []journal.Record{cs, cw}, meta: m, durable: true})
			inbox++
			val, _ := json.Marshal(padding(rng))
			msg := &journal.Message{Seq: inbox, Kind: journal.MessageAnswer, Value: val, From: "tester",
				Time: plBase.Add(time.Duration(inbox) * time.Minute)}
			dm := meta(journal.StatusWaiting)
			dm.Waiting = m.Waiting
			ops = append(ops, planOp{kind: opDeliver, msg: msg, meta: dm, durable: true})
			res, _ := json.Marshal(padding(rng))
			rs := mustRecord(next(), journal.TypeRunResumed, map[string]any{"pid": 1, "host": "h"})
			cc := mustRecord(next(), journal.TypeCallCompleted, journal.CallCompleted{Step: st, Result: res, Consumed: []uint64{inbox}})
			ops = append(ops, planOp{kind: opAppend, recs: []journal.Record{rs, cc}, meta: meta(journal.StatusRunning), durable: true})
		}
	}
	fin := mustRecord(next(), journal.TypeRunFinished, journal.RunFinished{Status: journal.StatusCompleted, Result: json.RawMessage(`"done"`)})
	m := meta(journal.StatusCompleted)
	at := plBase.Add(time.Hour)
	m.FinishedAt, m.Result = &at, json.RawMessage(`"done"`)
	ops = append(ops, planOp{kind: opAppend, recs: []journal.Record{fin}, meta: m, durable: true})
	return ops
}

// powerLossChild is the writer process.
func powerLossChild(cfg childConfig) error {
	badgerstore.SetBadgerOptionsForTest(smallBadger)
	if cfg.WALSize > 0 {
		badgerstore.SetWALSizeForTest(cfg.WALSize)
	}
	s, err := badgerstore.Open(cfg.Dir, badgerstore.Options{SyncInterval: -1})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	report := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(os.Stdout, fmt.Sprintf(format, a...)+"\n") // unbuffered: a kill loses nothing reported
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := w; n < cfg.Runs; n += cfg.Writers {
				id := runID(n)
				for i, op := range planRun(cfg.Seed, n) {
					report("s %d %d", n, i)
					var err error
					switch op.kind {
					case opBlob:
						_, err = s.PutBlob(ctx, op.blob)
					case opCreate:
						err = s.Create(ctx, op.meta, op.recs)
					case opAppend:
						err = s.Append(ctx, id, op.recs, op.meta, op.durable)
					case opDeliver:
						var seq uint64
						seq, err = s.Deliver(ctx, id, *op.msg, op.meta)
						if err == nil && seq != op.msg.Seq {
							err = fmt.Errorf("delivered as message %d, want %d", seq, op.msg.Seq)
						}
					}
					if err != nil {
						report("e %d %d %v", n, i, err)
						return // the power is out (or the store broke): stop writing
					}
					report("k %d %d", n, i)
				}
			}
		}()
	}
	wg.Wait()
	// Everything written; wait to be killed (the cut comes from the
	// parent), unless the parent already has all it needs.
	return nil
}

// checkImage opens the durable image with the real store and checks it
// against the plan and the acknowledgements.
func checkImage(t *testing.T, dir string, seed uint64, walSize int64, acks map[int]*runReport) {
	t.Helper()
	badgerstore.SetBadgerOptionsForTest(smallBadger)
	defer badgerstore.SetBadgerOptionsForTest(nil)
	if walSize > 0 {
		defer badgerstore.SetWALSizeForTest(badgerstore.SetWALSizeForTest(walSize))
	}
	s, err := badgerstore.Open(dir, badgerstore.Options{SyncInterval: -1})
	if err != nil {
		t.Fatalf("the store does not open after power loss: %v", err)
	}
	defer s.Close()
	ctx := context.Background()

	listed := map[string]bool{}
	runs, err := s.List(ctx, journal.Filter{})
	listOK := err == nil
	if err != nil {
		t.Errorf("list: %v", err)
	}
	for _, r := range runs {
		listed[r.ID] = true
	}

	var lost []string
	checkedRuns, ackedDurable := 0, 0
	for n := 0; n < plRuns; n++ {
		id := runID(n)
		ops := planRun(seed, n)
		rep := acks[n]
		if rep == nil {
			rep = &runReport{}
		}
		// ops[0] is the blob; ops[1:] write records, messages and metadata.
		lastDurable := 0 // the last of ops[1:] acknowledged durable
		for i := 1; i < rep.started; i++ {
			if rep.acked[i] && ops[i].durable {
				lastDurable = i
				ackedDurable++
			}
		}
		if rep.started > 0 && rep.acked[0] {
			ackedDurable++
			b, err := s.Blob(ctx, "sha256:"+hexSum(ops[0].blob))
			if err != nil || !bytes.Equal(b, ops[0].blob) {
				lost = append(lost, fmt.Sprintf("%s: acknowledged script blob: %v", id, err))
			}
		}

		recs, err := s.Records(ctx, id, 1)
		if err != nil {
			t.Errorf("%s: records: %v", id, err)
			continue
		}
		msgs, err := s.Inbox(ctx, id, 1)
		if err != nil {
			t.Errorf("%s: inbox: %v", id, err)
			continue
		}
		meta, merr := s.Run(ctx, id)
		if merr != nil && !errors.Is(merr, journal.ErrNotFound) {
			t.Errorf("%s: metadata: %v", id, merr)
			continue
		}

		// How many of ops[1:] survived? Each adds records or a message,
		// so the counts name the prefix.
		prefix := -1
		nrec, nmsg := 0, 0
		for i := 0; i < len(ops); i++ {
			if i > 0 {
				nrec += len(ops[i].recs)
				if ops[i].msg != nil {
					nmsg++
				}
			}
			if nrec == len(recs) && nmsg == len(msgs) {
				prefix = i
				break
			}
			if nrec > len(recs) || nmsg > len(msgs) {
				break
			}
		}
		if prefix < 0 {
			t.Errorf("%s: %d records and %d messages survived: not the result of any prefix of its writes (a write was torn apart)", id, len(recs), len(msgs))
			continue
		}
		if prefix > 0 && prefix >= rep.started {
			t.Errorf("%s: %d writes survived, but only %d were submitted", id, prefix, max(rep.started-1, 0))
		}
		if prefix < lastDurable {
			lost = append(lost, fmt.Sprintf("%s: write %d of %d was acknowledged durable, but only %d survived (%d records, %d messages)",
				id, lastDurable, len(ops)-1, prefix, len(recs), len(msgs)))
		}
		if prefix > 0 {
			checkedRuns++
		}

		// Every surviving record and message has the bytes written.
		want := 0
		for i := 1; i <= prefix; i++ {
			for _, r := range ops[i].recs {
				if !bytes.Equal(journal.Encode(recs[want]), journal.Encode(r)) {
					t.Errorf("%s: record %d differs from what was written", id, r.Seq)
				}
				want++
			}
		}
		mi := 0
		for i := 1; i <= prefix; i++ {
			if m := ops[i].msg; m != nil {
				if !jsonEqual(msgs[mi], *m) {
					t.Errorf("%s: message %d differs: got %s, wrote %s", id, m.Seq, mustJSON(msgs[mi]), mustJSON(*m))
				}
				mi++
			}
		}

		// The metadata is the one written with the last surviving write.
		switch {
		case prefix == 0:
			if merr == nil {
				t.Errorf("%s: metadata %s survived without the run's first record", id, mustJSON(meta))
			}
			if listOK && listed[id] {
				t.Errorf("%s: listed without metadata", id)
			}
		case merr != nil:
			t.Errorf("%s: %d records survived but the metadata did not: %v", id, len(recs), merr)
		default:
			exp := *ops[prefix].meta
			if ops[prefix].kind == opDeliver {
				exp.Inbox = ops[prefix].msg.Seq
			}
			if !jsonEqual(*meta, exp) {
				t.Errorf("%s: metadata disagrees with the journal (last record %v, seq %d):\n got  %s\n want %s",
					id, recs[len(recs)-1].Type, recs[len(recs)-1].Seq, mustJSON(meta), mustJSON(exp))
			}
			if last := recs[len(recs)-1]; last.Type == journal.TypeRunFinished && meta.Status != journal.StatusCompleted {
				t.Errorf("%s: journal ends in run.finished, metadata says %s", id, meta.Status)
			}
			if listOK && !listed[id] {
				t.Errorf("%s: not listed", id)
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged durable writes lost:\n  %s", len(lost), strings.Join(lost, "\n  "))
	}
	t.Logf("checked %d runs, %d acknowledged durable writes", checkedRuns, ackedDurable)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonEqual(a, b any) bool {
	return mustJSON(a) == mustJSON(b)
}
