// Package benchenv holds what the benchmark programs share: a database
// directory whose fsyncs reach a disk, a process's peak memory and CPU
// time, and Postfix's smtp-sink as a cheap loopback sink.
package benchenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dir makes a fresh directory under dir (default: the temporary directory,
// or the working directory when that is tmpfs). fsync on tmpfs costs
// nothing and would make every figure meaningless, so tmpfs is refused.
func Dir(dir, prefix string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
		if IsTmpfs(dir) {
			dir = "."
		}
	}
	if IsTmpfs(dir) {
		return "", fmt.Errorf("%s is tmpfs: fsync would be free there; pass -dir on a real disk", dir)
	}
	d, err := os.MkdirTemp(dir, prefix)
	if err != nil {
		return "", fmt.Errorf("benchmark directory: %w", err)
	}
	return d, nil
}

// IsTmpfs reports whether dir lives on tmpfs.
func IsTmpfs(dir string) bool {
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}

// PeakRSSMB reads a process's peak resident set size (VmHWM) in MiB;
// pid 0 means this process.
func PeakRSSMB(pid int) (float64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return 0, fmt.Errorf("peak RSS: VmHWM %q: %w", v, err)
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("peak RSS: no VmHWM in %s", path)
}

// CPUSeconds is a process's user plus system time so far, from
// /proc/PID/stat; pid 0 means this process.
func CPUSeconds(pid int) (float64, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, fmt.Errorf("cpu time: %w", err)
		}
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time: odd /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// After ')': state is field 3, utime 14 and stime 15 (1-based).
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu time: bad /proc/%d/stat", pid)
	}
	const clockTicks = 100 // USER_HZ, fixed at 100 on Linux
	return float64(ut+st) / clockTicks, nil
}

// SMTPSinkPath finds Postfix's smtp-sink, which lives in an sbin
// directory that is not always on PATH; "" when it is not installed.
func SMTPSinkPath() string {
	if p, err := exec.LookPath("smtp-sink"); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, "smtp-sink")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// StartSMTPSink runs Postfix's smtp-sink on a free loopback port with the
// extra options given, its standard output going to stdout (nil:
// discarded), and returns its address once it accepts connections. The
// caller kills the process when done.
func StartSMTPSink(ctx context.Context, stdout io.Writer, extra ...string) (string, *exec.Cmd, error) {
	path := SMTPSinkPath()
	if path == "" {
		return "", nil, errors.New("smtp-sink not found (it comes with Postfix)")
	}
	// smtp-sink takes a port, not a listener: find a free one.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"-4", "-h", "sink.bench.test"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // it refuses to run as root
	}
	args = append(append(args, extra...), addr, "256")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
			return addr, cmd, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return "", nil, fmt.Errorf("smtp-sink on %s: %w", addr, err)
		}
	}
}
