package badgerstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync flushes the file's data (and only the metadata needed to read
// it back).
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
