// Package logbuf collects log output in memory for tests that check what
// a component logged. Several goroutines may write to one Buffer.
package logbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer that is safe for concurrent use. Its zero value
// is ready to use, for example as the writer of a slog handler.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the lines written so far that contain every one of words.
func (b *Buffer) Lines(words ...string) []string {
	var out []string
	for line := range strings.Lines(b.String()) {
		matches := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				matches = false
				break
			}
		}
		if matches {
			out = append(out, line)
		}
	}
	return out
}
