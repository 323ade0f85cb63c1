package badgerstore

import "github.com/dgraph-io/badger/v4"

// SetBadgerOptionsForTest makes Open pass Badger's options through adjust
// (nil restores the defaults). Tests only; not safe to call while a store
// is opening.
func SetBadgerOptionsForTest(adjust func(badger.Options) badger.Options) {
	testBadgerOptions = adjust
}

// SetWALSizeForTest sets the write-ahead log's preallocated size (which
// decides how often the store checkpoints) and returns the previous one.
// Tests only; not safe to call while a store is open.
func SetWALSizeForTest(n int64) int64 {
	old := walSize
	walSize = n
	return old
}
