package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procStat holds the fields of /proc/PID/stat the harness needs.
type procStat struct {
	state byte // 'Z' for a zombie
	pgrp  int
}

func readProcStat(pid string) (procStat, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may itself contain spaces
	// and parentheses, so fields are counted from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat for %s", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 3 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed stat for %s", pid)
	}
	pgrp, err := strconv.Atoi(fields[2])
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat for %s: %w", pid, err)
	}
	return procStat{state: fields[0][0], pgrp: pgrp}, nil
}

// isProcessGroupLeader reports whether pid is a live process leading its
// own process group, as Postfix's master does.
func isProcessGroupLeader(pid int) bool {
	st, err := readProcStat(strconv.Itoa(pid))
	return err == nil && st.state != 'Z' && st.pgrp == pid
}

// groupMembers lists the running processes of group pgrp. Zombies do not
// count: they hold no files open, and once their parent, the master, is
// gone it is up to init to reap them, which may take a while.
func groupMembers(pgrp int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process directory
		}
		st, err := readProcStat(e.Name())
		if err != nil {
			continue // exited meanwhile
		}
		if st.pgrp == pgrp && st.state != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// groupAlive reports whether any process of group pgrp is still running.
func groupAlive(pgrp int) bool {
	return len(groupMembers(pgrp)) > 0
}

// running reports whether pid is a live, non-zombie process of group pgrp.
func running(pid, pgrp int) bool {
	st, err := readProcStat(strconv.Itoa(pid))
	return err == nil && st.pgrp == pgrp && st.state != 'Z'
}

// waitGroupGone polls until no process of group pgrp runs any more.
func waitGroupGone(pgrp int, timeout time.Duration) bool {
	return Eventually(timeout, func() bool { return !groupAlive(pgrp) })
}
