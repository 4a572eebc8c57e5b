package focustest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// LogEnv names a file that receives a test's whole focus log at cleanup,
// for runs where the tail printed on failure is not enough.
const LogEnv = "FOCUS_E2E_LOG"

// failureTail is how many log lines a failed test prints.
const failureTail = 80

// Log keeps a focus's log in memory for one test: the whole of it goes
// to the file named by $FOCUS_E2E_LOG, and its tail is printed if the
// test failed, when Report runs.
type Log struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

// NewLog returns an empty log for t. The caller runs Report at cleanup,
// after whatever writes to the log has stopped.
func NewLog(t testing.TB) *Log { return &Log{t: t} }

// Logger writes JSON lines to the log at debug level (pion's own debug
// chatter goes out at trace), each stamped to the microsecond so that
// it lines up with the clients' packet times.
func (l *Log) Logger() zerolog.Logger {
	return zerolog.New(l).Level(zerolog.DebugLevel).Hook(clock{})
}

// Write implements io.Writer, for many goroutines.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Log) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// String is the whole log so far, one JSON object a line.
func (l *Log) String() string { return string(l.bytes()) }

// Tail is the last n lines of the log.
func (l *Log) Tail(n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(l.bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Report writes the log to $FOCUS_E2E_LOG, and prints its tail if the
// test failed.
func (l *Log) Report() {
	if path := os.Getenv(LogEnv); path != "" {
		// Appended: a test with several foci writes each one's log.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = f.Write(l.bytes())
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			l.t.Errorf("write focus log: %v", err)
		}
	}
	if l.t.Failed() {
		l.t.Logf("focus log (last lines; set %s=file for all):\n%s", LogEnv, l.Tail(failureTail))
	}
}

// clock stamps log lines without touching zerolog's global format.
type clock struct{}

func (clock) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str("at", time.Now().Format("15:04:05.000000"))
}
