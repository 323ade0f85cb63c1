package badgerstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// osSync flushes a file's data and, unless dataOnly, all its metadata.
// fdatasync (dataOnly) flushes only the metadata needed to read the data
// back.
func osSync(f *os.File, dataOnly bool) error {
	if dataOnly {
		return unix.Fdatasync(int(f.Fd()))
	}
	return f.Sync()
}

// freeBytes returns the space available to unprivileged users on the
// file system holding dir.
func freeBytes(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
