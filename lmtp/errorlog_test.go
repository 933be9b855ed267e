package lmtp

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"postlist/internal/testenv"
)

func TestErrorLogLevels(t *testing.T) {
	tests := []struct {
		msg  string
		want zapcore.Level
	}{
		{"error handling 127.0.0.1:45016: read tcp 127.0.0.1:8024->127.0.0.1:45016: read: connection reset by peer", zapcore.DebugLevel},
		{"error handling 127.0.0.1:45016: write tcp 127.0.0.1:8024->127.0.0.1:45016: write: broken pipe", zapcore.DebugLevel},
		{"error handling 127.0.0.1:45016: EOF", zapcore.DebugLevel},
		{"handler panicked: runtime error: index out of range", zapcore.WarnLevel},
		{"accept error: too many open files", zapcore.WarnLevel},
		{"error handling 127.0.0.1:45016: EOF seen twice, then garbage", zapcore.WarnLevel},
	}
	for _, tc := range tests {
		core, logs := observer.New(zapcore.DebugLevel)
		errorLog{zap.New(core)}.Printf("%s", tc.msg)
		errorLog{zap.New(core)}.Println(tc.msg)
		for _, e := range logs.All() {
			if e.Level != tc.want || e.Message != tc.msg {
				t.Errorf("%q logged as %v %q, want %v", tc.msg, e.Level, e.Message, tc.want)
			}
		}
		if logs.Len() != 2 {
			t.Errorf("%q: %d entries, want 2", tc.msg, logs.Len())
		}
	}
}

// TestHealthProbeIsNotAWarning connects and resets the connection, as a
// TCP health check does: the server must not log a warning for it.
func TestHealthProbeIsNotAWarning(t *testing.T) {
	h := startServer(t, nil)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the greeting so the server is in its read loop, then
	// reset rather than close.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	if !testenv.Eventually(5*time.Second, func() bool {
		found := false
		for _, e := range h.logs.All() {
			if e.LoggerName == "smtp" && strings.Contains(e.Message, "127.0.0.1") {
				if e.Level != zapcore.DebugLevel {
					t.Fatalf("probe logged at %v: %q", e.Level, e.Message)
				}
				found = true
			}
		}
		return found
	}) {
		t.Fatalf("the reset connection was not logged at all; logs: %v", h.logs.All())
	}
}
