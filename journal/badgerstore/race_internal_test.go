//go:build race

package badgerstore

const raceDetector = true
