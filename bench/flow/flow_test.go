package main

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"postlist/internal/testenv"
)

// TestMain lets the test binary stand in for the benchmark's sink child,
// which the orchestrator starts as "SELF -role sink -n N".
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "-role" && os.Args[2] == "sink" && os.Args[3] == "-n" {
		n, err := strconv.Atoi(os.Args[4])
		if err == nil {
			err = runSink(n)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if err := testenv.RemoveBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// TestFlowDeliversEveryMember runs the benchmark small, with each sink, so
// that it keeps working: the real daemon must get every member's copy to
// the sink and commit every row as sent. It asserts no speed.
func TestFlowDeliversEveryMember(t *testing.T) {
	bin := testenv.Binary(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const members = 300
	for _, sink := range []string{"go", "smtp-sink"} {
		t.Run(sink, func(t *testing.T) {
			c := config{workers: 4, body: 3000, sink: sink, oneClick: true, timeout: 2 * time.Minute}
			r, err := runSize(c, bin, self, members)
			if err != nil {
				t.Fatal(err)
			}
			if r.members != members || r.failed != 0 {
				t.Errorf("%d members, %d failed; want %d, 0", r.members, r.failed, members)
			}
			if !(0 < r.firstSecs && r.firstSecs <= r.lastSecs && r.lastSecs <= r.sentSecs) {
				t.Errorf("times out of order: first RCPT %v, last %v, all sent %v", r.firstSecs, r.lastSecs, r.sentSecs)
			}
			if r.peakRSSMB <= 0 || r.cpuSecs <= 0 {
				t.Errorf("daemon peak RSS %v MB, CPU %v s: not measured", r.peakRSSMB, r.cpuSecs)
			}
		})
	}
}
