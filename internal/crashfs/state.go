package crashfs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	pageSize   = 4096
	sectorSize = 512
	// Unsynced write(2) data kept per file for torn images; past it the
	// file's unsynced tail is dropped whole.
	maxPendingBytes = 16 << 20
)

// fileKey identifies a file the way go-fuse's loopback does: inode number
// (mixed with the device) and birth time, so that a reused inode number is
// a new file.
type fileKey struct{ ino, gen uint64 }

func (f *FS) keyOf(st *unix.Statx_t) fileKey {
	dev := unix.Mkdev(st.Dev_major, st.Dev_minor)
	swapped := (dev << 32) | (dev >> 32)
	swappedRoot := (f.rootDev << 32) | (f.rootDev >> 32)
	gen := uint64(1)
	if st.Btime.Sec != 0 || st.Btime.Nsec != 0 {
		gen = uint64(st.Btime.Sec)*1e9 + uint64(st.Btime.Nsec)
	}
	return fileKey{ino: (swapped ^ swappedRoot) ^ st.Ino, gen: gen}
}

func statx(dirfd int, path string, flags int) (unix.Statx_t, error) {
	var st unix.Statx_t
	err := unix.Statx(dirfd, path, flags|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st)
	return st, err
}

// pendingOp is an unsynced change to a file, kept for torn images.
type pendingOp struct {
	kind int // opWrite, opSize, opZero
	off  int64
	n    int64 // opSize: the new size; opZero: length
	data []byte
}

const (
	opWrite = iota
	opSize
	opZero
)

// fileState is one file's durable content and what changed since.
type fileState struct {
	mu       sync.Mutex
	durSize  int64
	durPages map[int64][]byte // durable pages that are not all zero
	liveSize int64            // the file's size now
	minSize  int64            // smallest size since the last sync
	dirty    map[int64]bool   // pages changed since the last sync
	meta     bool             // size or allocation changed since the last sync
	pending  []pendingOp
	pendingN int
	// metaOps are the size changes and hole punches since the last sync
	// or commit: journaled metadata, durable at the next commit.
	metaOps  []pendingOp
	overflow bool // pending is incomplete: a torn image keeps the durable content
}

func newFileState(size int64) *fileState {
	return &fileState{durPages: map[int64][]byte{}, dirty: map[int64]bool{}, liveSize: size, minSize: size}
}

// state returns the state of the file with key, creating an empty one
// (nothing durable) if there is none.
func (f *FS) state(k fileKey, size func() int64) *fileState {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	s := f.states[k]
	if s == nil {
		s = newFileState(size())
		f.states[k] = s
	}
	return s
}

func (s *fileState) markDirty(off, n int64) {
	if n <= 0 {
		return
	}
	for p := off / pageSize; p <= (off+n-1)/pageSize; p++ {
		s.dirty[p] = true
	}
}

func (s *fileState) addPending(op pendingOp) {
	if s.overflow {
		return
	}
	s.pendingN += len(op.data)
	if s.pendingN > maxPendingBytes {
		s.overflow, s.pending = true, nil
		return
	}
	s.pending = append(s.pending, op)
}

// wrote records a write of data at off that reached the backing file.
func (s *fileState) wrote(off int64, data []byte, cache bool) {
	n := int64(len(data))
	s.markDirty(off, n)
	if off+n > s.liveSize {
		s.liveSize = off + n
		s.meta = true
	}
	if !cache {
		s.addPending(pendingOp{kind: opWrite, off: off, data: append([]byte(nil), data...)})
	}
}

// resized records a size change to size.
func (s *fileState) resized(size int64) {
	if size%pageSize != 0 {
		s.markDirty(size, 1) // the page the new end falls in
	}
	if size < s.minSize {
		s.minSize = size
	}
	s.liveSize = size
	s.meta = true
	s.addPending(pendingOp{kind: opSize, n: size})
	s.metaOps = append(s.metaOps, pendingOp{kind: opSize, n: size})
}

// zeroed records that [off, off+n) now reads as zeros.
func (s *fileState) zeroed(off, n int64) {
	s.markDirty(off, n)
	s.addPending(pendingOp{kind: opZero, off: off, n: n})
	s.metaOps = append(s.metaOps, pendingOp{kind: opZero, off: off, n: n})
}

// committed applies the metadata changes since the last sync or commit to
// the durable content, as a journal commit does: the file gets its new
// size (zeros where it grew) and its holes, but none of the data written
// since its last sync.
func (s *fileState) committed() {
	if len(s.metaOps) == 0 {
		return
	}
	for _, op := range s.metaOps {
		switch op.kind {
		case opSize:
			if op.n < s.durSize {
				s.zeroDurable(op.n, s.durSize-op.n)
			}
			s.durSize = op.n
		case opZero:
			s.zeroDurable(op.off, min(op.off+op.n, s.durSize)-op.off)
		}
	}
	s.metaOps = nil
	// Unsynced writes from before a committed truncation could reappear
	// past it in a torn image; keep this file's image exact instead.
	s.pending, s.pendingN, s.overflow = nil, 0, true
}

// zeroDurable clears [off, off+n) of the durable content.
func (s *fileState) zeroDurable(off, n int64) {
	if n <= 0 {
		return
	}
	for p := off / pageSize; p <= (off+n-1)/pageSize; p++ {
		pg, ok := s.durPages[p]
		if !ok {
			continue
		}
		start, end := max(off, p*pageSize)-p*pageSize, min(off+n, (p+1)*pageSize)-p*pageSize
		pg = append([]byte(nil), pg...)
		clear(pg[start:end])
		if isZero(pg) {
			delete(s.durPages, p)
		} else {
			s.durPages[p] = pg
		}
	}
}

// sync makes the file's current content durable, reading it through r. It
// reports whether the size or allocation had changed (an fdatasync then
// commits the namespace).
func (s *fileState) sync(r io.ReaderAt, size int64) (bool, error) {
	for p := range s.durPages {
		if p*pageSize >= s.minSize && !s.dirty[p] {
			delete(s.durPages, p) // cut off since, and a hole now
		}
	}
	buf := make([]byte, pageSize)
	for p := range s.dirty {
		start := p * pageSize
		if start >= size {
			delete(s.durPages, p)
			continue
		}
		n := min(int64(pageSize), size-start)
		m, err := r.ReadAt(buf[:n], start)
		if err != nil && err != io.EOF {
			return false, err
		}
		clear(buf[m:])
		if isZero(buf) {
			delete(s.durPages, p)
		} else {
			s.durPages[p] = append([]byte(nil), buf...)
		}
	}
	meta := s.meta || size != s.durSize
	s.durSize, s.liveSize, s.minSize = size, size, size
	clear(s.dirty)
	s.meta, s.pending, s.pendingN, s.overflow, s.metaOps = false, nil, 0, false, nil
	return meta, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// image returns the file's durable content, with a torn unsynced tail if
// rng is not nil.
func (s *fileState) image(rng *rand.Rand) []byte {
	out := make([]byte, s.durSize)
	for p, pg := range s.durPages {
		if start := p * pageSize; start < s.durSize {
			copy(out[start:], pg)
		}
	}
	if rng == nil || s.overflow || len(s.pending) == 0 {
		return out
	}
	k := rng.IntN(len(s.pending) + 1) // how many unsynced changes reached the disk
	for i, op := range s.pending[:k] {
		switch op.kind {
		case opWrite:
			data := op.data
			if i == k-1 && len(data) > sectorSize {
				// The last one may be torn at a sector boundary.
				sectors := (len(data)-1)/sectorSize + 1
				data = data[:min(len(data), sectorSize*(1+rng.IntN(sectors)))]
			}
			if end := op.off + int64(len(data)); end > int64(len(out)) {
				out = append(out, make([]byte, end-int64(len(out)))...)
			}
			copy(out[op.off:], data)
		case opSize:
			if op.n <= int64(len(out)) {
				out = out[:op.n]
			} else {
				out = append(out, make([]byte, op.n-int64(len(out)))...)
			}
		case opZero:
			end := min(op.off+op.n, int64(len(out)))
			if op.off < end {
				clear(out[op.off:end])
			}
		}
	}
	return out
}

// dentry is a node of a namespace snapshot.
type dentry struct {
	mode     uint32 // file type and permission bits
	key      fileKey
	target   string             // symlinks
	children map[string]*dentry // directories
}

// snapshot reads the backing tree. With load, every regular file's current
// content becomes its durable content (used at Mount).
func (f *FS) snapshot(load bool) (*dentry, error) {
	return f.snapDir(f.backing, load)
}

func (f *FS) snapDir(dir string, load bool) (*dentry, error) {
	st, err := statx(unix.AT_FDCWD, dir, 0)
	if err != nil {
		return nil, err
	}
	d := &dentry{mode: uint32(st.Mode), key: f.keyOf(&st), children: map[string]*dentry{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		st, err := statx(unix.AT_FDCWD, p, 0)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			c, err := f.snapDir(p, load)
			if err != nil {
				return nil, err
			}
			d.children[e.Name()] = c
		case unix.S_IFREG:
			k := f.keyOf(&st)
			d.children[e.Name()] = &dentry{mode: uint32(st.Mode), key: k}
			if load {
				if err := f.load(k, p); err != nil {
					return nil, err
				}
			}
		case unix.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			d.children[e.Name()] = &dentry{mode: uint32(st.Mode), target: t}
		}
	}
	return d, nil
}

func (f *FS) load(k fileKey, path string) error {
	if _, ok := f.states[k]; ok {
		return nil // a hard link already loaded
	}
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	s := newFileState(fi.Size())
	for p := int64(0); p*pageSize < fi.Size(); p++ {
		s.dirty[p] = true
	}
	if _, err := s.sync(file, fi.Size()); err != nil {
		return err
	}
	f.states[k] = s
	return nil
}

// commit makes the current namespace durable (a journal commit) and forgets
// files that are in no directory.
func (f *FS) commit() error {
	f.ns.Lock()
	defer f.ns.Unlock()
	tree, err := f.snapshot(false)
	if err != nil {
		return err
	}
	f.durable = tree
	f.commits.Add(1)
	live := map[fileKey]bool{}
	var walk func(d *dentry)
	walk = func(d *dentry) {
		for _, c := range d.children {
			if c.mode&unix.S_IFMT == unix.S_IFREG {
				live[c.key] = true
			}
			walk(c)
		}
	}
	walk(tree)
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	for k := range f.states {
		if !live[k] {
			// Unlinked and committed: no durable name can reach it again.
			// (A descriptor still open gets a fresh, empty state.)
			delete(f.states, k)
		}
	}
	for k := range live {
		s := f.states[k]
		if s == nil {
			// Created behind the file system's back: nothing of it is
			// known to be durable.
			f.states[k] = newFileState(0)
			continue
		}
		s.mu.Lock()
		s.committed()
		s.mu.Unlock()
	}
	return nil
}

// materialise writes the durable namespace and content into dir.
func (f *FS) materialise(dir string, rng *rand.Rand) error {
	f.statesMu.Lock()
	defer f.statesMu.Unlock()
	written := map[fileKey]string{}
	var walk func(d *dentry, path string) error
	walk = func(d *dentry, path string) error {
		names := make([]string, 0, len(d.children))
		for n := range d.children {
			names = append(names, n)
		}
		sort.Strings(names) // rng draws in a fixed order
		for _, n := range names {
			c := d.children[n]
			p := filepath.Join(path, n)
			perm := os.FileMode(c.mode & 0o777)
			switch c.mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if err := os.Mkdir(p, perm|0o700); err != nil {
					return err
				}
				if err := walk(c, p); err != nil {
					return err
				}
			case unix.S_IFLNK:
				if err := os.Symlink(c.target, p); err != nil {
					return err
				}
			case unix.S_IFREG:
				if first, ok := written[c.key]; ok {
					if err := os.Link(first, p); err != nil {
						return err
					}
					continue
				}
				written[c.key] = p
				var data []byte
				if s := f.states[c.key]; s != nil {
					data = s.image(rng)
				}
				if err := writeSparse(p, data, perm|0o600); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(f.durable, dir)
}

// writeSparse writes data to a new file, leaving holes where it is zero.
func writeSparse(path string, data []byte, perm os.FileMode) error {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	zero := make([]byte, pageSize)
	for off := 0; off < len(data); off += pageSize {
		pg := data[off:min(off+pageSize, len(data))]
		if bytes.Equal(pg, zero[:len(pg)]) {
			continue
		}
		if _, err := file.WriteAt(pg, int64(off)); err != nil {
			file.Close()
			return err
		}
	}
	if err := file.Truncate(int64(len(data))); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	return nil
}

// readerAt reads a backing file through a descriptor, reopening it for
// reading if the descriptor is write-only.
type fdReader int

func (fd fdReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := syscall.Pread(int(fd), b, off)
	if err == syscall.EBADF {
		rfd, oerr := syscall.Open(fmt.Sprintf("/proc/self/fd/%d", int(fd)), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if oerr != nil {
			return 0, err
		}
		defer syscall.Close(rfd)
		n, err = syscall.Pread(rfd, b, off)
	}
	if err != nil {
		return 0, err
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}
