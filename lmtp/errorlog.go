package lmtp

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// errorLog carries go-smtp's own messages (connection errors, recovered
// panics) into zap. A client that hangs up without QUIT is routine - a
// TCP health check, a Postfix being stopped - and is logged at debug, so
// that monitoring probes do not fill the log with warnings; anything else
// is a warning.
type errorLog struct{ log *zap.Logger }

func (e errorLog) Printf(format string, v ...any) { e.write(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.write(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) write(msg string) {
	if hungUp(msg) {
		e.log.Debug(msg)
		return
	}
	e.log.Warn(msg)
}

// hungUp reports whether a go-smtp message says only that the peer went
// away. go-smtp gives the error as text, so the text is what is matched.
func hungUp(msg string) bool {
	for _, s := range []string{"connection reset by peer", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return strings.HasSuffix(msg, ": EOF")
}
