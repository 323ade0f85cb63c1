// Package crashfs is a FUSE file system for tests that simulates power
// loss. It passes every operation through to a backing directory and keeps,
// beside it, the durable image of the tree: what a disk would still hold if
// power were cut now. PowerLoss cuts the power and writes that image into a
// new directory, which the code under test then opens with real syscalls,
// without FUSE.
//
// Only tests import this package (go list -deps ./cmd/starflow does not
// show it).
//
// # Use
//
//	fsys, mnt, err := crashfs.Mount(backing)
//	// ... run the code under test on mnt, in another process ...
//	dir, err := fsys.PowerLoss(rng) // rng nil: exactly the durable image
//	// ... open dir with the real code, check what survived ...
//	fsys.Close()
//
// CutAfter freezes the file system right after an operation a predicate
// picks (the 100th fsync, the first fsync of a given file, ...): from then
// on every operation that would change the tree fails with EIO, as on a
// disk that lost power, and Frozen is closed. Reads still work, so the
// process under test does not hang or fault on its mappings; kill it, then
// call PowerLoss.
//
// Files are opened without direct I/O and keep their page cache across
// opens (FOPEN_KEEP_CACHE), as on a local file system, so shared writable
// mappings work and their dirty pages reach the file system as writes when
// the kernel writes them back (munmap, msync, fsync, memory pressure). The
// kernel's passthrough mode is never offered: it would bypass the model.
//
// The code under test must run in another process than the one serving
// the mount when it mmaps files on it: a goroutine that faults on a page of
// a FUSE-backed mapping holds its thread inside the kernel, where the Go
// runtime can neither preempt it nor stop it for garbage collection, and a
// stop-the-world that waits for it while the server goroutines are
// stopped deadlocks the process. Plain syscalls are safe from the same
// process.
//
// # What is durable
//
// File content (bytes and size) is durable as of the file's last fsync or
// fdatasync, through any descriptor. msync(MS_SYNC) of a shared mapping
// arrives as an fdatasync, after the kernel has written the mapping's dirty
// pages to the file system, so it counts too. Nothing else makes content
// durable: not close, not munmap, not the kernel's own writeback of dirty
// pages, not a sync of another file. A file created through the mount
// starts with empty durable content.
//
// Size changes by truncate/ftruncate/O_TRUNC and fallocate, and holes
// punched or zeroed by fallocate, are metadata: they become durable at the
// file's next fsync/fdatasync, or at the next namespace commit (below),
// whichever comes first. A commit gives the file its new size (zeros where
// it grew) but none of the data written since its last sync. This is
// ext4's behaviour: i_size set by truncate and extents freed by a punch are
// journaled, while data written by write(2) or through a mapping reach the
// disk only by writeback (delayed allocation), and appends extend the
// on-disk size only when their data is written.
//
// The namespace (create, mkdir, unlink, rmdir, rename, link, symlink), like
// that metadata, is modelled on ext4's journal, the file system starflow runs on: metadata
// changes are journaled in order, and the journal commits them all at
// once. A commit happens here only when a syscall forces one:
//
//   - fsync of a directory;
//   - fsync of a file;
//   - fdatasync (or msync) of a file whose size or allocation changed since
//     it was last synced (ext4's fdatasync commits the journal then, because
//     the size is needed to read the data back; an fdatasync of data
//     overwritten in place commits nothing).
//
// A commit makes the whole current namespace durable. Namespace changes not
// followed by a commit are all lost. This is harsher than ext4, which also
// commits every few seconds on its own; it never commits on its own here, so
// the result does not depend on timing. It is not as harsh as "durable only
// after an fsync of the directory itself" (POSIX's minimum): ext4 cannot
// make a file's data durable by fsync without committing the journal that
// holds the file's directory entry and every earlier namespace change, and
// programs that run on ext4 rely on that (Badger fsyncs its MANIFEST, not
// the directory, after it adds a table file). Modelling the POSIX minimum
// would report losses ext4 cannot produce.
//
// # Torn tails
//
// PowerLoss(rng) with a non-nil rng also lets part of what was written
// after the last sync reach the disk: for each file, a random prefix of its
// unsynced write(2) requests (and truncations, and fallocate zeroing) is
// applied in order on top of the durable content, the last one possibly
// torn at a 512-byte sector boundary. (A file whose truncation was
// committed since its last sync keeps exactly its durable content.) Pages the kernel writes back from a
// shared mapping (FUSE_WRITE_CACHE) are never applied: a file written
// through mmap keeps exactly its durable content. The choices depend only
// on rng and on the sequence of requests each file received.
//
// # Limitations
//
//   - Disks reorder writes; the torn prefix model keeps each file's
//     unsynced writes in order and does not mix files.
//   - Directories have no content of their own: a directory is durable when
//     the namespace that contains it is. Permissions, owners, times and
//     extended attributes are passed through but not modelled (the image
//     gets the permission bits the tree had at the last commit).
//   - copy_file_range is refused (ENOSYS), so the kernel falls back to
//     read and write. O_TMPFILE and special files are not supported in the
//     image.
//   - The backing directory's content at Mount is taken as durable, and it
//     must not be changed except through the mount.
//   - Durable content is kept in memory (only pages that are not zero).
package crashfs
