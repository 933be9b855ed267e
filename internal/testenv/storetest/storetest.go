// Package storetest opens stores for tests: a throwaway database in the
// test's temporary directory with the lists the test names already
// created, or a second connection to one a daemon under test uses; either
// is closed when the test ends.
//
// It lives apart from testenv because it imports store, and testenv is
// imported by tests that store itself must not depend on. store's own
// tests, inside package store, cannot import it and keep their helper.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"postlist/store"
)

// Open opens a new store in a temporary directory and creates lists in
// it; the store is closed when the test and its subtests end.
func Open(t testing.TB, lists ...string) *store.Store {
	t.Helper()
	ctx := context.Background()
	st := OpenPath(t, filepath.Join(t.TempDir(), "postlist.db"))
	for _, l := range lists {
		if _, err := st.CreateList(ctx, l); err != nil {
			t.Fatalf("create list %s: %v", l, err)
		}
	}
	return st
}

// OpenPath opens the database at path, usually one a daemon under test
// already uses, as a second process (the CLI, an admin) would; it is
// closed when the test ends.
func OpenPath(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open store %s: %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// OpenList is Open for a test about one list, returned along with the
// store as CreateList returned it.
func OpenList(t testing.TB, list string) (*store.Store, *store.List) {
	t.Helper()
	st := Open(t, list)
	l, err := st.GetList(context.Background(), list)
	if err != nil {
		t.Fatalf("read back list %s: %v", list, err)
	}
	return st, l
}
