package crashfs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rawFS intercepts the requests whose details the node API drops.
type rawFS struct {
	fuse.RawFileSystem
	fs *FS
}

// Writev notes whether the write comes from the page cache (a shared
// mapping's dirty pages) before the node sees it.
func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_CACHE != 0 {
		r.fs.cacheReqs.Store(cancel, true)
		defer r.fs.cacheReqs.Delete(cancel)
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_CACHE != 0 {
		r.fs.cacheReqs.Store(cancel, true)
		defer r.fs.cacheReqs.Delete(cancel)
	}
	return r.RawFileSystem.Write(cancel, in, data)
}

// FsyncDir commits the namespace. The backing directory is not synced:
// durability is simulated, not needed.
func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	f := r.fs
	if !f.begin() {
		return fuse.EIO
	}
	defer f.end()
	f.dirsyncs.Add(1)
	if err := f.commit(); err != nil {
		return fuse.ToStatus(err)
	}
	f.event(Event{Op: OpFsyncDir, Commit: true})
	return fuse.OK
}

// CopyFileRange is refused, so the kernel copies with reads and writes,
// which the model sees.
func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	return 0, fuse.ENOSYS
}

// node is a loopback node that keeps the model up to date.
type node struct {
	fs.LoopbackNode
	fs *FS
}

func (n *node) key() fileKey {
	a := n.StableAttr()
	return fileKey{ino: a.Ino, gen: a.Gen}
}

// rel returns the node's path relative to the mount, "" if it is in no
// directory.
func (n *node) rel() string {
	p := n.Path(n.Root())
	if strings.HasPrefix(p, ".go-fuse.") || strings.Contains(p, "/.go-fuse.") {
		return "" // go-fuse's name for an unlinked node
	}
	return p
}

// child returns the path of the entry name in directory n.
func (n *node) child(name string) string {
	if p := n.rel(); p != "" {
		return p + "/" + name
	}
	return name
}

// fileState returns this file's state; fd tells the current size if the
// state must be created.
func (n *node) fileState(fd int) *fileState {
	return n.fs.state(n.key(), func() int64 {
		var st unix.Stat_t
		if fd >= 0 && unix.Fstat(fd, &st) == nil {
			return st.Size
		}
		return 0
	})
}

// handle wraps the loopback file so that the kernel never gets a
// passthrough backing file (which would bypass the model) and writes and
// syncs go through the node.
type handle struct {
	lf *fs.LoopbackFile
	fd int
}

func newHandle(fh fs.FileHandle) *handle {
	lf := fh.(*fs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	return &handle{lf: lf, fd: fd}
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.lf.Read(ctx, dest, off)
}
func (h *handle) Release(ctx context.Context) syscall.Errno { return h.lf.Release(ctx) }
func (h *handle) Flush(ctx context.Context) syscall.Errno   { return h.lf.Flush(ctx) }
func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.lf.Getattr(ctx, out)
}
func (h *handle) Statx(ctx context.Context, flags, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return h.lf.Statx(ctx, flags, mask, out)
}
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}
func (h *handle) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.lf.Getlk(ctx, owner, lk, flags, out)
}
func (h *handle) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlk(ctx, owner, lk, flags)
}
func (h *handle) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlkw(ctx, owner, lk, flags)
}

func unwrap(fh fs.FileHandle) fs.FileHandle {
	if h, ok := fh.(*handle); ok {
		return h.lf
	}
	return fh
}

func fdOf(fh fs.FileHandle) int {
	if h, ok := fh.(*handle); ok {
		return h.fd
	}
	return -1
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if trunc {
		if !n.fs.begin() {
			return nil, 0, syscall.EIO
		}
		defer n.fs.end()
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	h := newHandle(fh)
	if trunc {
		s := n.fileState(h.fd)
		s.mu.Lock()
		s.resized(0)
		s.mu.Unlock()
		n.fs.event(Event{Op: OpTruncate, Path: n.rel()})
	}
	return h, fl&^fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	f := n.fs
	if !f.begin() {
		return nil, nil, 0, syscall.EIO
	}
	defer f.end()
	f.ns.RLock()
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	f.ns.RUnlock()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	h := newHandle(fh)
	c := ch.Operations().(*node)
	s := c.fileState(h.fd) // a new file: nothing durable yet
	if flags&syscall.O_TRUNC != 0 {
		s.mu.Lock()
		s.resized(0)
		s.mu.Unlock()
	}
	f.event(Event{Op: OpCreate, Path: n.child(name)})
	return ch, h, fl&^fuse.FOPEN_DIRECT_IO | fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// namespace runs a namespace change.
func (n *node) namespace(op Op, name string, do func() syscall.Errno) syscall.Errno {
	f := n.fs
	if !f.begin() {
		return syscall.EIO
	}
	defer f.end()
	f.ns.RLock()
	errno := do()
	f.ns.RUnlock()
	if errno == 0 {
		f.event(Event{Op: op, Path: n.child(name)})
	}
	return errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.namespace(OpCreate, name, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Mkdir(ctx, name, mode, out)
		return errno
	})
	return ch, errno
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	if mode&syscall.S_IFMT != syscall.S_IFREG && mode&syscall.S_IFMT != 0 {
		return nil, syscall.EOPNOTSUPP
	}
	errno = n.namespace(OpCreate, name, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
		if errno == 0 {
			n.fs.state(ch.Operations().(*node).key(), func() int64 { return 0 })
		}
		return errno
	})
	return ch, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.namespace(OpCreate, name, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Symlink(ctx, target, name, out)
		return errno
	})
	return ch, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (ch *fs.Inode, errno syscall.Errno) {
	errno = n.namespace(OpCreate, name, func() syscall.Errno {
		ch, errno = n.LoopbackNode.Link(ctx, target, name, out)
		return errno
	})
	return ch, errno
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.namespace(OpRemove, name, func() syscall.Errno { return n.LoopbackNode.Unlink(ctx, name) })
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.namespace(OpRemove, name, func() syscall.Errno { return n.LoopbackNode.Rmdir(ctx, name) })
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return n.namespace(OpRename, name, func() syscall.Errno {
		return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	})
}

func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, resize := in.GetSize()
	if !resize {
		return n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
	}
	f := n.fs
	if !f.begin() {
		return syscall.EIO
	}
	defer f.end()
	s := n.fileState(fdOf(fh))
	s.mu.Lock()
	errno := n.LoopbackNode.Setattr(ctx, unwrap(fh), in, out)
	if errno == 0 {
		s.resized(int64(size))
	}
	s.mu.Unlock()
	if errno == 0 {
		f.event(Event{Op: OpTruncate, Path: n.rel(), Off: int64(size)})
	}
	return errno
}

func (n *node) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f := n.fs
	if !f.begin() {
		return 0, syscall.EIO
	}
	defer f.end()
	fd := fdOf(fh)
	if fd < 0 {
		return 0, syscall.EBADF
	}
	cache := false
	if c, ok := ctx.(*fuse.Context); ok {
		_, cache = f.cacheReqs.Load(c.Cancel)
	}
	s := n.fileState(fd)
	s.mu.Lock()
	w, err := syscall.Pwrite(fd, data, off)
	if w > 0 {
		s.wrote(off, data[:w], cache)
	}
	s.mu.Unlock()
	if err != nil {
		return uint32(max(w, 0)), fs.ToErrno(err)
	}
	f.writes.Add(1)
	f.event(Event{Op: OpWrite, Path: n.rel(), Off: off, Len: int64(w), Cache: cache})
	return uint32(w), 0
}

func (n *node) Writev(ctx context.Context, fh fs.FileHandle, iov [][]byte, off int64) (uint32, syscall.Errno) {
	var data []byte
	for _, b := range iov {
		data = append(data, b...)
	}
	return n.Write(ctx, fh, data, off)
}

func (n *node) Allocate(ctx context.Context, fh fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	f := n.fs
	if !f.begin() {
		return syscall.EIO
	}
	defer f.end()
	h, ok := fh.(*handle)
	if !ok {
		return syscall.EBADF
	}
	s := n.fileState(h.fd)
	s.mu.Lock()
	defer s.mu.Unlock()
	var before unix.Stat_t
	unix.Fstat(h.fd, &before)
	if errno := h.lf.Allocate(ctx, off, size, mode); errno != 0 {
		return errno
	}
	var after unix.Stat_t
	unix.Fstat(h.fd, &after)
	const shifts = unix.FALLOC_FL_COLLAPSE_RANGE | unix.FALLOC_FL_INSERT_RANGE
	switch {
	case mode&shifts != 0:
		// Content moved: everything from off on changed.
		s.markDirty(int64(off), max(before.Size, after.Size)-int64(off))
		s.overflow, s.pending = true, nil
	case mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0:
		s.zeroed(int64(off), int64(size))
	}
	if after.Size != before.Size {
		s.resized(after.Size)
	}
	s.meta = true // allocation changed
	f.event(Event{Op: OpFallocate, Path: n.rel(), Off: int64(off), Len: int64(size)})
	return 0
}

func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, length uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Fsync makes the file's content durable and, for an fsync or an
// fdatasync that must write metadata, commits the namespace.
func (n *node) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	f := n.fs
	if !f.begin() {
		return syscall.EIO
	}
	defer f.end()
	datasync := flags&1 != 0
	fd := fdOf(fh)
	if fd < 0 {
		return syscall.EBADF
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	s := n.fileState(fd)
	s.mu.Lock()
	meta, err := s.sync(fdReader(fd), st.Size)
	s.mu.Unlock()
	if err != nil {
		return fs.ToErrno(err)
	}
	op := OpFsync
	if datasync {
		op = OpFdatasync
		f.fdatasyncs.Add(1)
	} else {
		f.fsyncs.Add(1)
	}
	commit := !datasync || meta
	if commit {
		if err := f.commit(); err != nil {
			return fs.ToErrno(err)
		}
	}
	f.event(Event{Op: op, Path: n.rel(), Commit: commit})
	return 0
}
