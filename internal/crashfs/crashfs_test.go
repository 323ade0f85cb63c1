package crashfs_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/starflow/starflow/internal/crashfs"
)

// The mmap tests run their mapping in a child process (see the package
// documentation): the test binary re-executes itself with childEnv set.
const childEnv = "CRASHFS_TEST_CHILD"

func TestMain(m *testing.M) {
	if c := os.Getenv(childEnv); c != "" {
		if err := child(c, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child maps path shared and writable (4 pages), writes "synced" in page 0
// and msyncs, then writes "unsynced" in page 2 and unmaps without msync.
func child(what, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(4 * 4096); err != nil {
		return err
	}
	if err := f.Sync(); err != nil { // size and name durable
		return err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(m[100:], "synced")
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		return err
	}
	copy(m[2*4096:], "unsynced")
	if what == "writeback" {
		// Force the dirty page to the file system without a sync:
		// munmap of a FUSE mapping writes dirty pages back.
		return unix.Munmap(m)
	}
	return unix.Munmap(m)
}

func runChild(t *testing.T, what, path string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", path)
	cmd.Env = append(os.Environ(), childEnv+"="+what)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func mount(t *testing.T) (*crashfs.FS, string, string) {
	backing := filepath.Join(t.TempDir(), "backing")
	if err := os.Mkdir(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	f, mnt := crashfs.MountT(t, backing)
	return f, mnt, backing
}

func write(t *testing.T, path string, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func want(t *testing.T, path string, content string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if string(b) != content {
		t.Fatalf("%s: got %q, want %q", path, b, content)
	}
}

func absent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: exists after power loss (err %v)", path, err)
	}
}

func TestOnlySyncedContentSurvives(t *testing.T) {
	f, mnt, _ := mount(t)
	write(t, mnt+"/a", "one ", true) // fdatasync of a new file commits its name
	write(t, mnt+"/a", "two ", false)
	write(t, mnt+"/a", "three", false)
	want(t, mnt+"/a", "one two three") // the live view has everything
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/a", "one ")
	if s := f.Stats(); s.Fdatasyncs != 1 || s.Commits != 1 || s.Writes != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNamespaceIsDurableAtCommit(t *testing.T) {
	f, mnt, _ := mount(t)
	write(t, mnt+"/wal", "xxxx", true) // a new file: committed
	write(t, mnt+"/new", "data", false)
	if err := os.Mkdir(mnt+"/d", 0o755); err != nil {
		t.Fatal(err)
	}
	// An fdatasync of data overwritten in place commits nothing.
	w, err := os.OpenFile(mnt+"/wal", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt([]byte("yy"), 0)
	if err := unix.Fdatasync(int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	w.Close()
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/wal", "yyxx")
	absent(t, dir+"/new")
	absent(t, dir+"/d")
}

func TestDirectorySyncCommitsEverything(t *testing.T) {
	f, mnt, _ := mount(t)
	if err := os.MkdirAll(mnt+"/d/e", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, mnt+"/d/e/f", "content", false)
	write(t, mnt+"/g", "synced", true)
	write(t, mnt+"/g", " more", false)
	if err := os.Symlink("g", mnt+"/link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(mnt+"/g", mnt+"/d/hard"); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt+"/d") // any directory: the journal commits all of it
	os.Remove(mnt + "/link")
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/d/e/f", "") // name durable, content never synced
	want(t, dir+"/g", "synced")
	want(t, dir+"/d/hard", "synced")
	if target, err := os.Readlink(dir + "/link"); err != nil || target != "g" {
		t.Fatalf("symlink: %q %v", target, err)
	}
	var a, b syscall.Stat_t
	syscall.Stat(dir+"/g", &a)
	syscall.Stat(dir+"/d/hard", &b)
	if a.Ino != b.Ino {
		t.Fatal("hard link became two files")
	}
}

func TestRenameAndUnlinkNeedACommit(t *testing.T) {
	f, mnt, _ := mount(t)
	write(t, mnt+"/target", "old", true)
	write(t, mnt+"/doomed", "x", true)
	write(t, mnt+"/tmp", "new", true)
	if err := os.Rename(mnt+"/tmp", mnt+"/target"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mnt + "/doomed"); err != nil {
		t.Fatal(err)
	}
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/target", "old")
	want(t, dir+"/tmp", "new")
	want(t, dir+"/doomed", "x")
}

func TestRenameAfterCommit(t *testing.T) {
	f, mnt, _ := mount(t)
	write(t, mnt+"/target", "old", true)
	write(t, mnt+"/tmp", "new", true)
	if err := os.Rename(mnt+"/tmp", mnt+"/target"); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/target", "new")
	absent(t, dir+"/tmp")
}

func TestTruncateNeedsASyncOrACommit(t *testing.T) {
	f, mnt, _ := mount(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes, 4 pages
	if err := os.WriteFile(mnt+"/f", big, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := os.OpenFile(mnt+"/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Sync(); err != nil {
		t.Fatal(err)
	}
	// Shrink, grow back, sync: the cut-off pages read as zeros.
	if err := fd.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	if err := fd.Truncate(12000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(fd.Fd())); err != nil {
		t.Fatal(err)
	}
	// An unsynced truncate is lost.
	if err := fd.Truncate(10); err != nil {
		t.Fatal(err)
	}
	lost, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := append(append([]byte(nil), big[:5000]...), make([]byte, 7000)...)
	got, err := os.ReadFile(lost + "/f")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, exp) {
		t.Fatalf("got %d bytes, differing from the expected %d", len(got), len(exp))
	}
}

func TestTruncateIsDurableAtCommit(t *testing.T) {
	f, mnt, _ := mount(t)
	write(t, mnt+"/f", "0123456789", true)
	fd, err := os.OpenFile(mnt+"/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Truncate(3); err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("abc"), 1); err != nil {
		t.Fatal(err)
	}
	if err := fd.Truncate(6000); err != nil {
		t.Fatal(err)
	}
	write(t, mnt+"/g", "g", true) // a new file's fdatasync commits the journal
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The sizes are committed, the unsynced data is not.
	want(t, dir+"/f", "012"+string(make([]byte, 5997)))
}

func TestSharedMappingSurvivesOnlyWithMsync(t *testing.T) {
	f, mnt, _ := mount(t)
	runChild(t, "mmap", mnt+"/m")
	live, err := os.ReadFile(mnt + "/m")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(live[2*4096:], []byte("unsynced")) {
		t.Fatal("the mapping's unsynced page did not reach the file system on munmap")
	}
	dir, err := f.PowerLoss(rand.New(rand.NewPCG(1, 2))) // torn tails do not apply to mapped pages
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dir + "/m")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4*4096 {
		t.Fatalf("size %d", len(got))
	}
	if !bytes.HasPrefix(got[100:], []byte("synced")) {
		t.Fatal("msync'd page lost")
	}
	if !isZero(got[2*4096:]) {
		t.Fatal("page written back without a sync survived power loss")
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestTornTailsArePrefixes(t *testing.T) {
	var images []string
	for seed := uint64(0); seed < 8; seed++ {
		f, mnt, _ := mount(t)
		write(t, mnt+"/log", "base|", true)
		for i := 0; i < 5; i++ {
			write(t, mnt+"/log", fmt.Sprintf("%04d%s|", i, bytes.Repeat([]byte{'a' + byte(i)}, 600)), false)
		}
		full, _ := os.ReadFile(mnt + "/log")
		dir, err := f.PowerLoss(rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dir + "/log")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte("base|")) || !bytes.HasPrefix(full, got) {
			t.Fatalf("seed %d: image %q is not a prefix of the live file from the synced part on", seed, got)
		}
		images = append(images, string(got))
		// The same seed gives the same image.
		dir2, err := f.PowerLoss(rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		again, _ := os.ReadFile(dir2 + "/log")
		if !bytes.Equal(got, again) {
			t.Fatalf("seed %d: two images differ", seed)
		}
	}
	distinct := map[string]bool{}
	for _, s := range images {
		distinct[s] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("8 seeds gave only %d different torn images", len(distinct))
	}
}

func TestCutAfterFreezes(t *testing.T) {
	f, mnt, _ := mount(t)
	var seen []crashfs.Event
	f.CutAfter(func(e crashfs.Event) bool {
		seen = append(seen, e)
		return e.Op == crashfs.OpFdatasync && e.Path == "b"
	})
	write(t, mnt+"/a", "a", true)
	write(t, mnt+"/b", "b", true)
	select {
	case <-f.Frozen():
	default:
		t.Fatal("not frozen after the picked event")
	}
	if err := os.WriteFile(mnt+"/a", []byte("later"), 0o644); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after the cut: %v, want EIO", err)
	}
	if err := os.Mkdir(mnt+"/d", 0o755); !errors.Is(err, syscall.EIO) {
		t.Fatalf("mkdir after the cut: %v, want EIO", err)
	}
	want(t, mnt+"/a", "a") // reads still work
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/a", "a")
	want(t, dir+"/b", "b")
	last := seen[len(seen)-1]
	if last.Op != crashfs.OpFdatasync || !last.Commit || last.Seq != uint64(len(seen)) {
		t.Fatalf("last event %+v", last)
	}
}

func TestBackingContentAtMountIsDurable(t *testing.T) {
	backing := filepath.Join(t.TempDir(), "backing")
	if err := os.MkdirAll(backing+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backing+"/sub/x", []byte("before mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, mnt := crashfs.MountT(t, backing)
	write(t, mnt+"/sub/x", " and after", false)
	dir, err := f.PowerLoss(nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, dir+"/sub/x", "before mount")
}

func TestEventsNameFiles(t *testing.T) {
	f, mnt, _ := mount(t)
	var mu sync.Mutex // the predicate runs on the server's goroutines
	var got []string
	f.CutAfter(func(e crashfs.Event) bool {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%v %s", e.Op, e.Path))
		return false
	})
	if err := os.Mkdir(mnt+"/d", 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, mnt+"/d/f", "x", true)
	if err := os.Rename(mnt+"/d/f", mnt+"/d/g"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mnt + "/d/g"); err != nil {
		t.Fatal(err)
	}
	exp := []string{"create d", "create d/f", "write d/f", "fdatasync d/f", "rename d/f", "remove d/g"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Fatalf("events %q, want %q", got, exp)
	}
}
