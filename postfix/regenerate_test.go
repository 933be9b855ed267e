package postfix

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postlist/internal/testenv"
)

func lookPostmap(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("postmap")
	if err != nil {
		t.Fatal("postmap not found: install postfix (make test installs it when run as root)")
	}
	return p
}

// TestRegenerateConcurrent runs many writers at once, each adding a list
// to a shared "database" and then regenerating, as parallel admin commands
// do. None may fail, the state is never read by two writers at once, and
// the maps left behind hold every list, in the text and in the .db.
func TestRegenerateConcurrent(t *testing.T) {
	postmap := lookPostmap(t)
	etc := testenv.PostmapConfigDir(t)
	cmd := postmap + " -c " + etc
	dir := t.TempDir()

	var (
		mu      sync.Mutex
		db      []List
		inLoad  atomic.Int32
		overlap atomic.Bool
	)
	load := func(context.Context) (Maps, error) {
		if inLoad.Add(1) > 1 {
			overlap.Store(true)
		}
		defer inLoad.Add(-1)
		mu.Lock()
		m := testMaps("hash")
		m.Lists = append([]List(nil), db...)
		mu.Unlock()
		// Hold the lock a little so that writers really queue up.
		time.Sleep(2 * time.Millisecond)
		return m, nil
	}

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			db = append(db, List{Name: fmt.Sprintf("l%02d", i), Domain: "example.com"})
			mu.Unlock()
			if _, err := Regenerate(context.Background(), dir, cmd, load); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent regenerate: %v", err)
	}
	if overlap.Load() {
		t.Error("two writers read the state at the same time: the lock does not exclude")
	}
	text, err := os.ReadFile(filepath.Join(dir, "postfix_lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		addr := fmt.Sprintf("l%02d-bounces@example.com", i)
		if !bytes.Contains(text, []byte(addr)) {
			t.Errorf("text map lacks %s", addr)
		}
		out, err := exec.Command(postmap, "-c", etc, "-q", addr, "hash:"+filepath.Join(dir, "postfix_lmtp")).Output()
		if err != nil || strings.TrimSpace(string(out)) != "lmtp:[127.0.0.1]:9024" {
			t.Errorf("postmap -q %s = %q, %v", addr, out, err)
		}
	}
	assertNoTemps(t, dir)
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestRegenerateFailureKeepsOldMaps: when postmap fails nothing is renamed,
// so Postfix keeps the previous, consistent pair of text and .db, and the
// error names the map.
func TestRegenerateFailureKeepsOldMaps(t *testing.T) {
	postmap := lookPostmap(t)
	etc := testenv.PostmapConfigDir(t)
	dir := t.TempDir()
	if _, err := testMaps("hash").Write(context.Background(), dir, postmap+" -c "+etc); err != nil {
		t.Fatal(err)
	}
	before := map[string][]byte{}
	for _, f := range []string{"postfix_lmtp", "postfix_lmtp.db", "postfix_domains", "postfix_domains.db"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}
	changed := testMaps("hash")
	changed.Lists = append(changed.Lists, List{Name: "new", Domain: "example.com"})
	for _, c := range []struct {
		name, postmap, want string
	}{
		{"missing postmap", "/nonexistent/postmap", "postmap failed for " + filepath.Join(dir, "postfix_lmtp")},
		{"postmap exits 1", "false", "postmap failed for " + filepath.Join(dir, "postfix_lmtp")},
		{"empty command", " ", "empty postmap command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := changed.Write(context.Background(), dir, c.postmap)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
			for f, b := range before {
				now, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil || !bytes.Equal(now, b) {
					t.Errorf("%s changed by a failed regeneration (err %v)", f, err)
				}
			}
			assertNoTemps(t, dir)
		})
	}
}

// TestRegenerateCleansStaleTemps: a writer killed mid-way leaves its
// temporary files; the next lock holder removes them, and the maps stay
// readable by Postfix's users (CreateTemp makes 0600 files).
func TestRegenerateCleansStaleTemps(t *testing.T) {
	postmap := lookPostmap(t)
	etc := testenv.PostmapConfigDir(t)
	dir := t.TempDir()
	stale := []string{"postfix_lmtp.tmp-123", "postfix_lmtp.tmp-123.db", "postfix_domains.new"}
	for _, f := range stale {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := testMaps("hash").Write(context.Background(), dir, postmap+" -c "+etc); err != nil {
		t.Fatal(err)
	}
	for _, f := range stale {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("stale %s still there (err %v)", f, err)
		}
	}
	for _, f := range []string{"postfix_lmtp", "postfix_domains"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("%s mode %v: not readable by group and others", f, st.Mode().Perm())
		}
	}
}

// TestRegenerateHonoursContext: a writer waiting for a lock another
// process holds gives up when its context ends, naming the lock file.
func TestRegenerateHonoursContext(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	loaded := false
	_, err = Regenerate(ctx, dir, "postmap", func(context.Context) (Maps, error) {
		loaded = true
		return testMaps("regex"), nil
	})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, LockName)) {
		t.Errorf("err = %v, want a lock error naming %s", err, LockName)
	}
	if loaded {
		t.Error("state was read without the lock")
	}
	unlock()
	if _, err := testMaps("regex").Write(context.Background(), dir, "postmap"); err != nil {
		t.Errorf("after unlock: %v", err)
	}
}
