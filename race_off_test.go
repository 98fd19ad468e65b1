//go:build !race

package main

// raceEnabled says the race detector is on: it slows the pure-Go SQLite
// down some twentyfold, so load tests scale down.
const raceEnabled = false
