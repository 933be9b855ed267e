// Command members measures bulk member import through the real CLI:
// `postlist members add LIST --file F` with 100,000 addresses into a fresh
// database, the way an admin migrating a big list would run it. It prints a
// table; the floor is 100,000 members in under 5 s.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

func main() {
	n := flag.Int("n", 100000, "members to import")
	runs := flag.Int("runs", 3, "repetitions")
	bin := flag.String("bin", "bin/postlist", "postlist binary")
	flag.Parse()
	if err := run(*bin, *n, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench members:", err)
		os.Exit(1)
	}
}

func run(bin string, n, runs int) error {
	dir, err := os.MkdirTemp("", "postlist-bench-members-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "members.txt")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		if i%3 == 0 {
			fmt.Fprintf(w, "Member Number %d <member%d@example%d.com>\n", i, i, i%97)
		} else {
			fmt.Fprintf(w, "member%d@example%d.com\n", i, i%97)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	f.Close()

	fmt.Printf("%-28s %10s %12s %14s\n", "benchmark", "members", "seconds", "members/s")
	for r := range runs {
		cfg := filepath.Join(dir, fmt.Sprintf("run%d.toml", r))
		db := filepath.Join(dir, fmt.Sprintf("run%d.db", r))
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[database]\npath = %q\n", db)), 0o644); err != nil {
			return err
		}
		if out, err := exec.Command(bin, "-c", cfg, "lists", "create", "big@lists.example.org").CombinedOutput(); err != nil {
			return fmt.Errorf("create list: %v: %s", err, out)
		}
		start := time.Now()
		out, err := exec.Command(bin, "-c", cfg, "members", "add", "big@lists.example.org", "--file", file).CombinedOutput()
		el := time.Since(start)
		if err != nil {
			return fmt.Errorf("members add: %v: %s", err, out)
		}
		fmt.Printf("%-28s %10d %12.2f %14.0f\n", fmt.Sprintf("members add --file (run %d)", r+1), n, el.Seconds(), float64(n)/el.Seconds())
	}
	return nil
}
