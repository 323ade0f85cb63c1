//go:build !race

package badgerstore_test

const raceEnabled = false
