package badgerstore

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4/options"

	"github.com/starflow/starflow/journal"
)

// callRecords are the two records a journaled call appends, with payloads
// of typical size.
func callRecords(b testing.TB, seq uint64) []journal.Record {
	cs := mkrec(b, seq, journal.TypeCallStarted, journal.CallStarted{Step: fmt.Sprint(seq), Builtin: "http.get", Args: json.RawMessage(`["https://api.example.com/v1/items?page=3"]`), Digest: strings.Repeat("ab", 32), Key: fmt.Sprintf("run/%d", seq), Pos: "wf.star:12:18"})
	cc := mkrec(b, seq+1, journal.TypeCallCompleted, journal.CallCompleted{Step: fmt.Sprint(seq), Result: json.RawMessage(`{"status":200,"body":{"items":[1,2,3],"next":4}}`), Duration: 1234567})
	return []journal.Record{cs, cc}
}

// BenchmarkAppend is one journaled call (two records) appended by a lone
// run, durable (sync mode) or not (async), with the write-ahead log at
// several sizes. Sub-benchmarks alternate within a round; run with
// -count N for N rounds. ns/op is per call; checkpoints are amortized.
func BenchmarkAppend(b *testing.B) {
	for _, durable := range []bool{false, true} {
		for _, size := range []int64{1 << 20, 4 << 20, 16 << 20} {
			name := fmt.Sprintf("durable=%v/wal=%dMiB", durable, size>>20)
			b.Run(name, func(b *testing.B) {
				defer func(n int64) { walSize = n }(walSize)
				walSize = size
				s, err := Open(b.TempDir(), Options{SyncInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if err := s.Create(bg, meta("b", journal.StatusRunning), []journal.Record{started(b)}); err != nil {
					b.Fatal(err)
				}
				recs := make([][]journal.Record, b.N)
				for i := range recs {
					recs[i] = callRecords(b, uint64(2+2*i))
				}
				gen := s.wal.gen
				var ckpt time.Duration // in the calls that hit a checkpoint
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					g, t0 := s.wal.gen, time.Now()
					if err := s.Append(bg, "b", recs[i], nil, durable); err != nil {
						b.Fatal(err)
					}
					if s.wal.gen != g {
						ckpt += time.Since(t0)
					}
				}
				b.StopTimer()
				n := s.wal.gen - gen
				b.ReportMetric(float64(n), "checkpoints")
				if n > 0 {
					b.ReportMetric(float64(ckpt.Microseconds())/float64(n), "ckpt-call-µs")
				}
			})
		}
	}
}

// BenchmarkRecover is Open after a crash with a full log: reading it and
// re-applying its batches (every batch is one call).
func BenchmarkRecover(b *testing.B) {
	for _, size := range []int64{1 << 20, 4 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("wal=%dMiB", size>>20), func(b *testing.B) {
			defer func(n int64) { walSize = n }(walSize)
			walSize = size
			dir := b.TempDir()
			s, err := Open(dir, Options{SyncInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			s.Create(bg, meta("r", journal.StatusRunning), []journal.Record{started(b)})
			gen := s.wal.gen
			var crashed string
			for seq := uint64(2); ; seq += 2 {
				if s.wal.off+int64(2*recordSize([]kv{{k: make([]byte, 20), v: make([]byte, 400)}, {k: make([]byte, 20), v: make([]byte, 150)}})) > s.wal.size {
					crashed = copyDir(b, dir)
					break
				}
				if err := s.Append(bg, "r", callRecords(b, seq), nil, false); err != nil {
					b.Fatal(err)
				}
				if s.wal.gen != gen {
					b.Fatal("checkpointed")
				}
			}
			s.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := copyDir(b, crashed)
				b.StartTimer()
				s, err := Open(d, Options{SyncInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				os.RemoveAll(d)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkChecksumModes measures what verifying table checksums costs:
// opening a closed store holding 40,000 records (and closing it), and
// reading the 40,000 records back, with Badger's verification mode and
// the store's own verification of every table at Open on or off.
func BenchmarkChecksumModes(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{SyncInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	const runs, perRun = 40, 1000
	for r := 0; r < runs; r++ {
		id := fmt.Sprintf("run%02d", r)
		if err := s.Create(bg, meta(id, journal.StatusRunning), []journal.Record{started(b)}); err != nil {
			b.Fatal(err)
		}
		var recs []journal.Record
		for seq := uint64(2); seq < perRun; seq += 2 {
			recs = append(recs, callRecords(b, seq)...)
		}
		recs = append(recs, mkrec(b, perRun, journal.TypeLog, journal.Log{Message: "end"}))
		if err := s.Append(bg, id, recs, nil, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	modes := []struct {
		name   string
		mode   options.ChecksumVerificationMode
		verify bool
	}{
		{"none", options.NoVerification, false},
		{"OnBlockRead", options.OnBlockRead, false},
		{"OnTableAndBlockRead", options.OnTableAndBlockRead, false},
		{"OnBlockRead+verifyAtOpen", options.OnBlockRead, true},
	}
	for _, m := range modes {
		set := func() func() {
			cm, vt := checksumMode, verifyTables
			checksumMode, verifyTables = m.mode, m.verify
			return func() { checksumMode, verifyTables = cm, vt }
		}
		b.Run("open/"+m.name, func(b *testing.B) {
			defer set()()
			for i := 0; i < b.N; i++ {
				s, err := Open(dir, Options{SyncInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
		b.Run("read40k/"+m.name, func(b *testing.B) {
			defer set()()
			s, err := Open(dir, Options{SyncInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// A fresh store each round would measure Open; instead
				// drop Badger's block cache effect by reading every run
				// once per op (40,000 records).
				n := 0
				for r := 0; r < runs; r++ {
					recs, err := s.Records(bg, fmt.Sprintf("run%02d", r), 1)
					if err != nil {
						b.Fatal(err)
					}
					n += len(recs)
				}
				if n != runs*perRun {
					b.Fatalf("%d records", n)
				}
			}
		})
	}
}

// BenchmarkCreate is Open of a new store (which preallocates the log) and
// Close.
func BenchmarkCreate(b *testing.B) {
	for _, size := range []int64{1 << 20, 4 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("wal=%dMiB", size>>20), func(b *testing.B) {
			defer func(n int64) { walSize = n }(walSize)
			walSize = size
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				s, err := Open(dir, Options{SyncInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
