package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type env struct {
	t   *testing.T
	dir string
	cfg string
	db  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, cfg: filepath.Join(dir, "postlist.toml"), db: filepath.Join(dir, "var", "postlist.db")}
	text := fmt.Sprintf("[database]\npath = %q\n[postfix]\nmap_dir = %q\n", e.db, filepath.Join(dir, "data"))
	if err := os.WriteFile(e.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// run executes the CLI in-process and returns exit code, stdout, stderr.
func (e *env) run(stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(append([]string{"-c", e.cfg}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	code, out, errs := e.run("", args...)
	if code != 0 {
		e.t.Fatalf("postlist %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestListLifecycle(t *testing.T) {
	e := newEnv(t)
	out := e.mustRun("lists", "create", "Test@Lists.Example.org")
	if !strings.Contains(out, "created test@lists.example.org") {
		t.Errorf("create output: %q", out)
	}
	code, _, errs := e.run("", "lists", "create", "test@lists.example.org")
	if code != ExitFailure || !strings.Contains(errs, "already exists") || strings.Count(errs, "\n") != 1 {
		t.Errorf("duplicate create: exit %d, stderr %q", code, errs)
	}
	e.mustRun("lists", "set", "test@lists.example.org", "default_nonmember_action", "reject")
	e.mustRun("lists", "set", "test@lists.example.org", "moderator_password", "s3cret")
	show := e.mustRun("lists", "show", "test@lists.example.org")
	for _, want := range []string{`default_nonmember_action\s+reject\n`, `list_id\s+test\.lists\.example\.org\n`, `moderator_password\s+set\n`} {
		if !regexp.MustCompile(want).MatchString(show) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "s3cret") {
		t.Error("show prints the moderator password")
	}
	var js struct {
		Address  string            `json:"address"`
		Settings map[string]string `json:"settings"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "lists", "show", "test@lists.example.org")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Address != "test@lists.example.org" || js.Settings["default_nonmember_action"] != "reject" || js.Settings["moderator_password"] != "(set)" {
		t.Errorf("json show = %+v", js)
	}
	code, _, errs = e.run("", "lists", "set", "test@lists.example.org", "default_nonmember_action", "maybe")
	if code == 0 || !strings.Contains(errs, "want one of accept, hold, reject, discard, defer") {
		t.Errorf("bad value: exit %d %q", code, errs)
	}
	ls := e.mustRun("lists", "ls")
	if !strings.Contains(ls, "test@lists.example.org") {
		t.Errorf("ls: %s", ls)
	}
	e.mustRun("lists", "remove", "test@lists.example.org")
	code, _, _ = e.run("", "lists", "show", "test@lists.example.org")
	if code != ExitFailure {
		t.Errorf("show removed list: exit %d", code)
	}
}

func TestMembersBulkAddReportsBadLines(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	input := strings.Join([]string{
		"# members exported from the old server",
		"alice@example.com",
		"Bob Example <BOB@EXAMPLE.COM>",
		"not an address",
		"",
		"\"Carol, C.\" <carol@example.net>",
		"dave@",
		"alice@example.com",
	}, "\n")
	code, out, errs := e.run(input, "members", "add", "test@lists.example.org", "--file", "-")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1 because of bad lines", code)
	}
	if !strings.Contains(errs, "stdin:4:") || !strings.Contains(errs, "stdin:7:") {
		t.Errorf("bad lines not reported with numbers: %q", errs)
	}
	if !strings.Contains(out, "added 3 member(s)") || !strings.Contains(out, "1 already there") {
		t.Errorf("summary: %q", out)
	}
	var ms []struct {
		Address     string `json:"address"`
		DisplayName string `json:"display_name"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "members", "ls", "test@lists.example.org")), &ms); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range ms {
		got[m.Address] = m.DisplayName
	}
	want := map[string]string{"alice@example.com": "", "BOB@example.com": "Bob Example", "carol@example.net": "Carol, C."}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("members = %v, want %v", got, want)
	}
}

func TestMembersFileAndRoles(t *testing.T) {
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	f := filepath.Join(e.dir, "owners.txt")
	os.WriteFile(f, []byte("owner@example.com\n"), 0o644)
	e.mustRun("members", "add", "test@lists.example.org", "--file", f, "--role", "owner")
	e.mustRun("members", "add", "test@lists.example.org", "m1@example.com", "m2@example.com")
	out := e.mustRun("members", "ls", "test@lists.example.org", "--role", "owner")
	if !strings.Contains(out, "owner@example.com") || strings.Contains(out, "m1@example.com") {
		t.Errorf("owners: %s", out)
	}
	e.mustRun("members", "set", "test@lists.example.org", "m1@example.com", "moderation_action", "hold")
	e.mustRun("members", "ban", "test@lists.example.org", "^.*@spam\\.example$")
	code, _, errs := e.run("", "members", "remove", "test@lists.example.org", "m2@example.com", "nobody@example.com")
	if code != ExitFailure || !strings.Contains(errs, "nobody@example.com") {
		t.Errorf("remove with a missing address: exit %d %q", code, errs)
	}
	out = e.mustRun("members", "ls", "test@lists.example.org")
	if strings.Contains(out, "m2@example.com") || !strings.Contains(out, "hold") {
		t.Errorf("after remove/set: %s", out)
	}
	code, _, errs = e.run("", "members", "add", "test@lists.example.org", "x@example.com", "--role", "king")
	if code != ExitUsage || !strings.Contains(errs, "--role") {
		t.Errorf("bad role: exit %d %q", code, errs)
	}
}

func TestBadConfigExitsTwoNamingLine(t *testing.T) {
	e := newEnv(t)
	os.WriteFile(e.cfg, []byte("[mta]\nlmtp_port = 8024\nsmtp_prot = 25\n"), 0o644)
	code, _, errs := e.run("", "check")
	if code != ExitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	if want := e.cfg + ":3: mta.smtp_prot: unknown key"; !strings.Contains(errs, want) {
		t.Errorf("stderr %q lacks %q", errs, want)
	}
}

func TestCheckGood(t *testing.T) {
	e := newEnv(t)
	out := e.mustRun("check")
	if !strings.Contains(out, "config OK") || !strings.Contains(out, "database OK") {
		t.Errorf("check: %s", out)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"lists", "create"},
		{"lists", "create", "a@b.org", "extra"},
		{"lists", "create", "not-an-address"},
		{"members", "add", "--nope"},
	} {
		if code, _, _ := e.run("", args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestDomainsAndAliases(t *testing.T) {
	e := newEnv(t)
	e.mustRun("domains", "add", "lists.example.org", "--alias", "lists.example.net")
	e.mustRun("lists", "create", "test@lists.example.org")
	out := e.mustRun("domains", "ls")
	if !strings.Contains(out, "lists.example.net") || !strings.Contains(out, "lists.example.org") {
		t.Errorf("domains ls: %s", out)
	}
	code, _, errs := e.run("", "lists", "create", "x@lists.example.net")
	if code == 0 || !strings.Contains(errs, "alias of lists.example.org") {
		t.Errorf("list in alias domain: exit %d %q", code, errs)
	}
}

// TestReadmeQueries runs the admin queries the README shows through the real
// sqlite3 tool, so the documentation cannot drift from the schema.
func TestReadmeQueries(t *testing.T) {
	sqlite, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatal("sqlite3 not found: install it (make test installs it when run as root)")
	}
	e := newEnv(t)
	e.mustRun("lists", "create", "test@lists.example.org")
	e.mustRun("members", "add", "test@lists.example.org", "alice@example.com")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var queries []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "sqlite3 var/postlist.db ") {
			queries = append(queries, line)
		}
	}
	if len(queries) < 4 {
		t.Fatalf("found %d sqlite3 queries in README.md, want at least 4", len(queries))
	}
	// Run each line exactly as an admin would paste it, from the directory
	// that holds var/postlist.db.
	for _, q := range queries {
		cmd := exec.Command("sh", "-c", q)
		cmd.Dir = e.dir
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "Error") {
			t.Errorf("README query %q: %v: %s", q, err, out)
		}
	}
	out, _ := exec.Command(sqlite, e.db, "select address, list_id, default_nonmember_action from lists").Output()
	if strings.TrimSpace(string(out)) != "test@lists.example.org|test.lists.example.org|hold" {
		t.Errorf("lists row = %q", out)
	}
}

func TestGenaliasesAfterCreate(t *testing.T) {
	e := newEnv(t)
	usePrivatePostmap(t, e)
	e.mustRun("lists", "create", "test@lists.example.org")
	out := e.mustRun("genaliases")
	if !strings.Contains(out, "postfix_lmtp") {
		t.Errorf("genaliases: %s", out)
	}
	// Now that the maps exist, creating a list regenerates them.
	e.mustRun("lists", "create", "second@lists.example.org")
	b, err := os.ReadFile(filepath.Join(e.dir, "data", "postfix_lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "second-bounces@lists.example.org") {
		t.Errorf("map not regenerated:\n%s", b)
	}
}
