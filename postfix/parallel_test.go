package postfix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postlist/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := testenv.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// TestParallelAdminCommands runs `lists create` and `domains add` as
// separate processes of the real binary all at once, as provisioning
// scripts do. Every one exits 0, and the maps left behind, the text and
// what Postfix finds in the .db, hold every list and domain.
func TestParallelAdminCommands(t *testing.T) {
	bin := testenv.Binary(t)
	postmap := lookPostmap(t)
	etc := testenv.PostmapConfigDir(t)
	dir := t.TempDir()
	mapDir := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "postlist.toml")
	text := fmt.Sprintf("[database]\npath = %q\n[mta]\nlmtp_port = 8024\n[postfix]\nmap_dir = %q\npostmap_command = %q\n",
		filepath.Join(dir, "var", "postlist.db"), mapDir, postmap+" -c "+etc)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, bin, append([]string{"-c", cfg}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("postlist %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	// The first genaliases creates the database and the map directory;
	// from then on every change regenerates the maps.
	if err := run("genaliases"); err != nil {
		t.Fatal(err)
	}

	var cmds [][]string
	var lists, domains []string
	for i := range 20 {
		l := fmt.Sprintf("list%02d@lists.example.org", i)
		lists = append(lists, l)
		cmds = append(cmds, []string{"lists", "create", l})
	}
	for i := range 5 {
		d := fmt.Sprintf("d%d.example.net", i)
		domains = append(domains, d)
		cmds = append(cmds, []string{"domains", "add", d})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cmds))
	start := make(chan struct{})
	for _, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := run(c...); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	lmtpText, err := os.ReadFile(filepath.Join(mapDir, "postfix_lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	domainsText, err := os.ReadFile(filepath.Join(mapDir, "postfix_domains"))
	if err != nil {
		t.Fatal(err)
	}
	query := func(key, file string) string {
		out, _ := exec.Command(postmap, "-c", etc, "-q", key, "hash:"+filepath.Join(mapDir, file)).Output()
		return strings.TrimSpace(string(out))
	}
	for _, l := range lists {
		bounces := strings.Replace(l, "@", "-bounces@", 1)
		for _, key := range []string{l, bounces} {
			if !strings.Contains(string(lmtpText), key+" ") {
				t.Errorf("postfix_lmtp text lacks %s", key)
			}
			if got := query(key, "postfix_lmtp"); got != "lmtp:[127.0.0.1]:8024" {
				t.Errorf("postmap -q %s postfix_lmtp = %q", key, got)
			}
		}
	}
	for _, d := range append(domains, "lists.example.org") {
		if !strings.Contains(string(domainsText), d+" "+d) {
			t.Errorf("postfix_domains text lacks %s", d)
		}
		if got := query(d, "postfix_domains"); got != d {
			t.Errorf("postmap -q %s postfix_domains = %q", d, got)
		}
	}
	assertNoTemps(t, mapDir)
}
