//go:build !race

package reliability

// raceBuild tells memory checks that the daemon under test was built with
// -race (testenv builds it like the tests), whose shadow memory multiplies
// its footprint.
const raceBuild = false
