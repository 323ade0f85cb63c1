//go:build race

package badgerstore_test

const raceEnabled = true
