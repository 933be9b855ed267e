package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary builds ./cmd/postlist once per test process and returns the path
// of the executable, so that end-to-end tests can run the real daemon (and
// SIGKILL it to test crash recovery). When the tests run with -race, so
// is the daemon built, to catch its data races under real traffic too.
//
// The build lives in a directory of its own, outside any one test's
// TempDir, because every test of the process shares it; a TestMain may
// delete it with RemoveBinary.
func Binary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() { binaryPath, binaryErr = buildBinary() })
	if binaryErr != nil {
		t.Fatalf("testenv: build postlist: %v", binaryErr)
	}
	return binaryPath
}

func buildBinary() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "postlist-bin-")
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	out := filepath.Join(dir, "postlist")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/postlist")...)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/postlist: %w\n%s", err, output)
	}
	return out, nil
}

// ModuleRoot returns the directory of the go.mod enclosing the working
// directory; `go test` runs each package in its own directory, so this is
// the repository root from any package's tests.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		_, err := os.Stat(filepath.Join(dir, "go.mod"))
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("look for go.mod: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RemoveBinary deletes the executable built by Binary, if any. Call it from
// TestMain after m.Run to leave no build behind in the temporary directory.
func RemoveBinary() error {
	if binaryPath == "" {
		return nil
	}
	if err := os.RemoveAll(filepath.Dir(binaryPath)); err != nil {
		return fmt.Errorf("remove postlist build: %w", err)
	}
	return nil
}
