package badgerstore

import (
	"fmt"
	"sync"
	"time"

	"github.com/starflow/starflow/journal"
)

// DefaultMinFreeBytes is the free space the store keeps in reserve by
// default (Options.MinFreeBytes). Badger writes through memory-mapped
// files: a write that finds the disk full kills the process with SIGBUS
// instead of returning an error. What Badger may still need after the last
// write the store accepts: the rest of a memtable file (32 MiB), a new one
// (32 MiB), a value log file (32 MiB), the flush of memtables to level-0
// tables (16 MiB each) and a compaction of those (up to 8 x 16 MiB, written
// before the inputs are deleted); 256 MiB covers that with room to spare.
const DefaultMinFreeBytes = 256 << 20

// spaceGuard refuses writes when the disk is below the reserve. statfs
// costs a few microseconds (6 µs on the reference machine, a fifth of an
// async step), so the answer is cached: it is asked again after
// spaceTTL, or once the store's writes since the last answer could have
// eaten a quarter of the headroom it showed, and at every write while
// below the reserve (so that writes resume as soon as space is freed).
type spaceGuard struct {
	dir  string
	min  uint64
	free func(dir string) (uint64, error)
	ttl  time.Duration

	mu      sync.Mutex
	checked time.Time
	last    uint64 // free bytes at the last check
	written uint64 // bytes accepted since (times an allowance for Badger's copies)
}

// writeAmplification estimates how many bytes of disk a byte written to
// the store takes before the next check: the memtable file, the value log
// or a level-0 table, and a compaction's copy.
const writeAmplification = 3

// spaceTTL is how long a free-space answer is trusted when the store's
// own writes have not used it up: other processes can fill the disk too.
const spaceTTL = 250 * time.Millisecond

func (g *spaceGuard) check(need int) error {
	if g == nil || g.min == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := uint64(need) * writeAmplification
	now := time.Now()
	if g.checked.IsZero() || now.Sub(g.checked) > g.ttl || g.last < g.min+g.written+n ||
		(g.written+n)*4 > g.last-g.min {
		free, err := g.free(g.dir)
		if err != nil {
			// Cannot tell: let the write through rather than fail it.
			return nil
		}
		g.last, g.checked, g.written = free, now, 0
	}
	if g.last < g.min+n {
		return &noSpaceError{dir: g.dir, free: g.last, min: g.min}
	}
	g.written += n
	return nil
}

type noSpaceError struct {
	dir       string
	free, min uint64
}

func (e *noSpaceError) Error() string {
	return fmt.Sprintf("%v: the file system holding %s has %s free, less than the %s the store keeps in reserve so that it never fills the disk; writes are refused until space is freed (reads still work, and interrupted runs continue with starflow resume once there is room)",
		journal.ErrNoSpace, e.dir, humanBytes(e.free), humanBytes(e.min))
}

func (e *noSpaceError) Unwrap() error { return journal.ErrNoSpace }

func humanBytes(n uint64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
