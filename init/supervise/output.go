//go:build linux

package supervise

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"unicode/utf8"
)

// maxLineBytes is the maximum length of an output line, not counting its
// line ending. A longer line keeps its first maxLineBytes bytes, or fewer
// at a UTF-8 boundary, followed by truncatedMark. The rest is dropped.
const maxLineBytes = 4096

const truncatedMark = " [truncated]"

// console serializes writes to Options.Console, one Write per line, so that
// lines of different services never interleave.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

// write writes line and drops it if the writer fails or panics, because the
// supervisor has nowhere else to report a broken console.
func (c *console) write(line string) {
	if c.w == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { _ = recover() }()
	_, _ = io.WriteString(c.w, line)
}

// event writes one supervisor event line.
func (c *console) event(format string, args ...any) {
	c.write("supervise: " + fmt.Sprintf(format, args...) + "\n")
}

// ring keeps the last lines of a service's output.
type ring struct {
	mu    sync.Mutex
	buf   []string
	next  int
	count int
}

func newRing(size int) *ring {
	return &ring{buf: make([]string, size)}
}

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = line
	r.next = (r.next + 1) % len(r.buf)
	r.count = min(r.count+1, len(r.buf))
}

// lines returns a copy of the kept lines, oldest first.
func (r *ring) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, r.count)
	start := (r.next - r.count + len(r.buf)) % len(r.buf)
	for i := range r.count {
		out = append(out, r.buf[(start+i)%len(r.buf)])
	}
	return out
}

// readOutput copies the child's output into the ring and to the console,
// line by line, until the pipe ends or is closed.
func (s *Supervisor) readOutput(svc *service, r *os.File, done chan struct{}) {
	defer close(done)
	defer s.recoverReader(svc, r)

	// The buffer also fits a "\r\n" ending, so that a line of exactly
	// maxLineBytes bytes arrives whole and is not marked as truncated.
	reader := bufio.NewReaderSize(r, maxLineBytes+len("\r\n"))
	for {
		line, err := reader.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// No line ending within the buffer, so the line is longer than
			// maxLineBytes.
			s.emitLine(svc, truncateLine(line[:maxLineBytes]))
			err = skipRestOfLine(reader)
		} else if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(line) > maxLineBytes {
				s.emitLine(svc, truncateLine(line[:maxLineBytes]))
			} else {
				s.emitLine(svc, string(line))
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *Supervisor) emitLine(svc *service, line string) {
	svc.ring.add(line)
	s.out.write(svc.Name + ": " + line + "\n")
}

// truncateLine drops an incomplete UTF-8 character that a cut left at the
// end of line and appends truncatedMark.
func truncateLine(line []byte) string {
	keep := len(line)
	for i := 1; i < utf8.UTFMax && i <= len(line); i++ {
		start := len(line) - i
		if utf8.RuneStart(line[start]) {
			if !utf8.FullRune(line[start:]) {
				keep = start
			}
			break
		}
	}
	return string(line[:keep]) + truncatedMark
}

func skipRestOfLine(reader *bufio.Reader) error {
	for {
		_, err := reader.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

// readReadiness sends eventReady for each "READY" line on the readiness
// pipe. It reads until the pipe ends, because a child that writes to a
// pipe whose read end is closed would get SIGPIPE.
func (s *Supervisor) readReadiness(svc *service, run uint64, r *os.File, done chan struct{}) {
	defer close(done)
	defer s.recoverReader(svc, r)

	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 0, 64), 64)
	for scanner.Scan() {
		if scanner.Text() == "READY" {
			s.send(event{kind: eventReady, svc: svc, run: run})
		}
	}
	if err := scanner.Err(); err != nil {
		s.log.Warn("readiness pipe: invalid message; ignoring the rest", "service", svc.Name, "err", err)
		_, _ = io.Copy(io.Discard, r)
	}
}

// recoverReader recovers a panic in a reader, logs it, and drains r so that
// the child does not block on a full pipe.
func (s *Supervisor) recoverReader(svc *service, r *os.File) {
	if p := recover(); p != nil {
		s.log.Error("supervisor panic", "service", svc.Name, "panic", p, "stack", string(debug.Stack()))
		_, _ = io.Copy(io.Discard, r)
	}
}
