//go:build !linux

package badgerstore

import "os"

func datasync(f *os.File) error { return f.Sync() }
