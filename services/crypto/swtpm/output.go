package swtpm

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

const (
	// maxLoggedLines caps how many lines of swtpm output reach the logger,
	// so a looping error cannot flood the log. Later lines are counted.
	maxLoggedLines = 200
	// tailLines is how many of the last output lines error messages quote.
	tailLines = 8
	// maxLineLen truncates a single output line.
	maxLineLen = 512
)

// outputLog receives swtpm's stdout and stderr, logs each line and keeps the
// last few lines for error messages.
type outputLog struct {
	logger *slog.Logger

	mu         sync.Mutex
	partial    []byte
	tail       []string
	logged     int
	suppressed int
}

func newOutputLog(logger *slog.Logger) *outputLog {
	return &outputLog{logger: logger}
}

func (o *outputLog) Write(data []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()

	o.partial = append(o.partial, data...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.addLine(string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	if len(o.partial) > maxLineLen {
		o.addLine(string(o.partial))
		o.partial = nil
	}
	return len(data), nil
}

func (o *outputLog) addLine(line string) {
	line = strings.TrimSpace(line)
	// swtpm 0.7 prints this line after every client connection, and the
	// go-tpm socket transport connects once per command.
	if line == "" || line == "swtpm: Data client disconnected" {
		return
	}
	if len(line) > maxLineLen {
		line = line[:maxLineLen] + "..."
	}

	o.tail = append(o.tail, line)
	if len(o.tail) > tailLines {
		o.tail = o.tail[len(o.tail)-tailLines:]
	}

	if o.logged < maxLoggedLines {
		o.logged++
		o.logger.Warn("swtpm output", "line", line)
		return
	}
	o.suppressed++
	if o.suppressed%1000 == 1 {
		o.logger.Warn("swtpm output suppressed", "suppressed_lines", o.suppressed)
	}
}

// tailSuffix returns the last output lines formatted to end an error
// message, or "" when swtpm printed nothing.
func (o *outputLog) tailSuffix() string {
	o.mu.Lock()
	defer o.mu.Unlock()

	lines := o.tail
	if len(o.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], strings.TrimSpace(string(o.partial)))
	}
	if len(lines) == 0 {
		return ""
	}
	return "; swtpm output: " + strings.Join(lines, " | ")
}
