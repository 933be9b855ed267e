package storetest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"postlist/internal/testenv/storetest"
	"postlist/store"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name  string
		lists []string
	}{
		{"no list", nil},
		{"one list", []string{"test@lists.example.org"}},
		{"several lists", []string{"test@lists.example.org", "open@lists.example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st *store.Store
			t.Run("inner", func(t *testing.T) { st = storetest.Open(t, tt.lists...) })
			// The inner test ended: its store is closed, and its file was
			// in a directory of its own that is gone now.
			if _, err := st.Lists(context.Background()); err == nil {
				t.Error("store still open after its test ended")
			}
			if _, err := os.Stat(filepath.Dir(st.Path())); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("store directory left behind: %v", err)
			}

			st = storetest.Open(t, tt.lists...)
			got, err := st.Lists(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, l := range got {
				addrs = append(addrs, l.Address)
			}
			want := slices.Sorted(slices.Values(tt.lists))
			if !slices.Equal(addrs, want) {
				t.Errorf("lists %v, want %v", addrs, want)
			}
		})
	}
}

func TestOpenList(t *testing.T) {
	st, l := storetest.OpenList(t, "test@lists.example.org")
	if l.Address != "test@lists.example.org" {
		t.Errorf("list %q, want test@lists.example.org", l.Address)
	}
	again, err := st.GetList(context.Background(), "test@lists.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != l.ID {
		t.Errorf("returned list has id %d, the store's %d", l.ID, again.ID)
	}
}

// TestOpenPath: a second connection sees what the first wrote, and is
// closed when its test ends.
func TestOpenPath(t *testing.T) {
	first := storetest.Open(t, "test@lists.example.org")
	var second *store.Store
	t.Run("inner", func(t *testing.T) {
		second = storetest.OpenPath(t, first.Path())
		if _, err := second.GetList(context.Background(), "test@lists.example.org"); err != nil {
			t.Errorf("second connection does not see the list: %v", err)
		}
	})
	if _, err := second.Lists(context.Background()); err == nil {
		t.Error("second connection still open after its test ended")
	}
	if _, err := first.Lists(context.Background()); err != nil {
		t.Errorf("first connection closed along with the second: %v", err)
	}
}
