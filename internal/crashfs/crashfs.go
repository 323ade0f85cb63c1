package crashfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Op is the kind of operation an Event reports.
type Op int

// Operations that change the tree, and syncs.
const (
	OpWrite     Op = iota + 1 // write(2), or writeback of a shared mapping (Event.Cache)
	OpTruncate                // size change by truncate/ftruncate/O_TRUNC
	OpFallocate               // fallocate
	OpFsync                   // fsync of a file
	OpFdatasync               // fdatasync of a file, or msync of a mapping
	OpFsyncDir                // fsync of a directory
	OpCreate                  // create, mknod, mkdir, symlink, link
	OpRemove                  // unlink, rmdir
	OpRename                  // rename
)

var opNames = [...]string{"", "write", "truncate", "fallocate", "fsync", "fdatasync", "fsyncdir", "create", "remove", "rename"}

func (o Op) String() string {
	if o > 0 && int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Event describes an operation that completed. Seq numbers events from 1.
type Event struct {
	Seq    uint64
	Op     Op
	Path   string // relative to the mount; "" if unknown (a directory fsync, an unlinked file)
	Off    int64  // OpWrite, OpFallocate: offset; OpTruncate: new size
	Len    int64  // OpWrite, OpFallocate: length
	Cache  bool   // OpWrite: a page written back from the page cache (a shared mapping)
	Commit bool   // sync ops: the sync committed the namespace
}

// Stats counts operations since Mount.
type Stats struct {
	Writes, Fsyncs, Fdatasyncs, DirSyncs, Commits uint64
}

// FS is a mounted crash-simulating file system. Create it with Mount.
type FS struct {
	backing string
	mnt     string
	server  *fuse.Server
	rootDev uint64
	connID  uint32

	// op is held for reading by every operation that changes the tree,
	// and for writing by PowerLoss.
	op     sync.RWMutex
	dead   atomic.Bool
	frozen chan struct{}
	freeze sync.Once

	// ns is held for reading by namespace changes and for writing by a
	// commit, which snapshots the tree.
	ns      sync.RWMutex
	durable *dentry // the namespace as of the last commit

	statesMu sync.Mutex
	states   map[fileKey]*fileState

	hookMu sync.Mutex
	hook   func(Event) bool
	seq    uint64

	cacheReqs sync.Map // cancel channel of an in-flight WRITE with FUSE_WRITE_CACHE

	writes, fsyncs, fdatasyncs, dirsyncs, commits atomic.Uint64

	closeOnce sync.Once
	detached  bool
}

// ErrUnavailable is returned by Mount (wrapped) when FUSE cannot be used on
// this machine.
var ErrUnavailable = errors.New("crashfs: FUSE is not available")

// Available reports why FUSE mounts cannot work here, or nil.
func Available() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: /dev/fuse: %v", ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: mounting without fusermount needs root (running as uid %d)", ErrUnavailable, os.Geteuid())
	}
	return nil
}

// Mount mounts a crash-simulating view of backing on a new temporary
// directory and returns it. Whatever backing holds now is taken as
// durable.
func Mount(backing string) (*FS, string, error) {
	if err := Available(); err != nil {
		return nil, "", err
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, "", err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, "", err
	}
	f := &FS{
		backing: backing,
		rootDev: st.Dev,
		frozen:  make(chan struct{}),
		states:  make(map[fileKey]*fileState),
	}
	// Everything already there is durable.
	tree, err := f.snapshot(true)
	if err != nil {
		return nil, "", fmt.Errorf("crashfs: read %s: %w", backing, err)
	}
	f.durable = tree

	mnt, err := os.MkdirTemp("", "crashfs-")
	if err != nil {
		return nil, "", err
	}
	lr := &fs.LoopbackRoot{Path: backing, Dev: st.Dev}
	lr.NewNode = func(r *fs.LoopbackRoot, parent *fs.Inode, name string, st *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, fs: f}
	}
	root := lr.NewNode(lr, nil, "", &st)
	lr.RootNode = root

	zero := time.Duration(0)
	second := time.Second
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:       true,
			DirectMountStrict: true,
			FsName:            backing,
			Name:              "crashfs",
			DisableXAttrs:     true,
			Debug:             os.Getenv("CRASHFS_DEBUG") != "",
		},
		EntryTimeout:    &second,
		AttrTimeout:     &second,
		NegativeTimeout: &zero,
	}
	raw := &rawFS{RawFileSystem: fs.NewNodeFS(root, opts), fs: f}
	server, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		os.Remove(mnt)
		return nil, "", fmt.Errorf("%w: mount on %s: %v", ErrUnavailable, mnt, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		os.Remove(mnt)
		return nil, "", fmt.Errorf("%w: mount on %s: %v", ErrUnavailable, mnt, err)
	}
	f.server, f.mnt = server, mnt
	closeOnExec()
	var mst syscall.Stat_t
	if err := syscall.Stat(mnt, &mst); err == nil {
		f.connID = unix.Minor(mst.Dev)
	}
	return f, mnt, nil
}

// Mountpoint returns where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mnt }

// Stats returns the operation counters.
func (f *FS) Stats() Stats {
	return Stats{
		Writes:     f.writes.Load(),
		Fsyncs:     f.fsyncs.Load(),
		Fdatasyncs: f.fdatasyncs.Load(),
		DirSyncs:   f.dirsyncs.Load(),
		Commits:    f.commits.Load(),
	}
}

// CutAfter arranges for the power to be cut right after the first
// operation for which pick returns true: that operation completes, and
// every later one that would change the tree fails with EIO. pick is called
// for every completed operation, one at a time, and must not call back
// into the file system.
func (f *FS) CutAfter(pick func(Event) bool) {
	f.hookMu.Lock()
	f.hook = pick
	f.hookMu.Unlock()
}

// Cut cuts the power now (see CutAfter).
func (f *FS) Cut() {
	f.freeze.Do(func() {
		f.dead.Store(true)
		close(f.frozen)
	})
}

// Frozen is closed when the power has been cut.
func (f *FS) Frozen() <-chan struct{} { return f.frozen }

// event reports a completed operation to the cut predicate. The caller
// holds f.op for reading.
func (f *FS) event(e Event) {
	f.hookMu.Lock()
	defer f.hookMu.Unlock()
	f.seq++
	e.Seq = f.seq
	if f.hook != nil && !f.dead.Load() && f.hook(e) {
		f.Cut()
	}
}

// begin starts an operation that changes the tree; false means the power
// is off. Call end when it returns true.
func (f *FS) begin() bool {
	f.op.RLock()
	if f.dead.Load() {
		f.op.RUnlock()
		return false
	}
	return true
}

func (f *FS) end() { f.op.RUnlock() }

// PowerLoss cuts the power (if CutAfter has not already), waits for the
// operations in flight, detaches the mount, and writes the durable image
// into a new directory beside the backing directory, whose path it
// returns. With rng, unsynced write(2) tails may survive in part (see the
// package documentation); with nil, the image is exactly what was synced.
// Processes still using the mount see EIO for changes; reads keep working
// until Close.
func (f *FS) PowerLoss(rng *rand.Rand) (string, error) {
	f.Cut()
	f.op.Lock() // wait for operations in flight; none start after the cut
	defer f.op.Unlock()
	// Whatever the cut predicate recorded happens before PowerLoss returns.
	f.hookMu.Lock()
	f.hookMu.Unlock()
	f.detach()
	dir, err := os.MkdirTemp(filepath.Dir(f.backing), filepath.Base(f.backing)+".powerloss-")
	if err != nil {
		return "", err
	}
	if err := f.materialise(dir, rng); err != nil {
		return "", fmt.Errorf("crashfs: write durable image: %w", err)
	}
	return dir, nil
}

// detach removes the mount from the namespace at once, even if it is busy
// (the kernel keeps the connection until its last user goes).
func (f *FS) detach() {
	if f.detached {
		return
	}
	f.detached = true
	unix.Unmount(f.mnt, unix.MNT_DETACH)
}

// Close unmounts (detaching if busy), ends the connection, waits for the
// server to stop and removes the mountpoint. Files still open on the mount
// fail from then on.
func (f *FS) Close() error {
	var err error
	f.closeOnce.Do(func() {
		f.Cut()
		f.op.Lock()
		f.detach()
		f.op.Unlock()
		// Abort the connection if the fuse control file system is
		// mounted, so that the server stops even if the mount is still
		// in use; otherwise it stops when the last user lets go.
		if f.connID != 0 {
			p := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", f.connID)
			if _, serr := os.Stat(p); serr == nil {
				os.WriteFile(p, []byte("1"), 0)
			}
		}
		f.server.Wait()
		err = os.Remove(f.mnt)
	})
	return err
}

// SkipEnv names the environment variable that lets tests skip, instead of
// fail, where FUSE cannot be mounted.
const SkipEnv = "STARFLOW_SKIP_FUSE"

// MountT mounts backing for a test and closes it at the end of the test.
// Where FUSE is unavailable it fails the test with the reason, or skips it
// if SkipEnv is set to 1.
func MountT(t testing.TB, backing string) (*FS, string) {
	t.Helper()
	f, mnt, err := Mount(backing)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv(SkipEnv) == "1" {
			t.Skipf("%v (%s=1)", err, SkipEnv)
		}
		t.Fatalf("%v\n(power-loss tests need /dev/fuse and root; set %s=1 to skip them)", err, SkipEnv)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("crashfs: close: %v", err)
		}
	})
	return f, mnt
}

// closeOnExec marks this process's /dev/fuse descriptors close-on-exec.
// go-fuse opens the device without O_CLOEXEC; a child process (the code
// under test) that inherited it would keep the connection alive after this
// process died, and everything touching the mount would hang.
func closeOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}
