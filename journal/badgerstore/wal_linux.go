package badgerstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// preallocate reserves the file's blocks up to size, so that writes within
// it change no metadata.
func preallocate(f *os.File, size int64) error {
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return f.Truncate(size)
	}
	return nil
}

// datasync flushes the file's data (and only the metadata needed to read
// it back).
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
