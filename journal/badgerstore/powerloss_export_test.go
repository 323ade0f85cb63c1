package badgerstore

import "github.com/dgraph-io/badger/v4"

// SetBadgerOptionsForTest makes Open pass Badger's options through adjust
// (nil restores the defaults). Tests only; not safe to call while a store
// is opening.
func SetBadgerOptionsForTest(adjust func(badger.Options) badger.Options) {
	testBadgerOptions = adjust
}
