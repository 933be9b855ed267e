//go:build race

package testenv

// raceEnabled tells Binary that the tests were built with -race.
const raceEnabled = true
