package image

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	readyTimeout   = 120 * time.Second
	commandTimeout = 30 * time.Second
	poweroffWait   = 30 * time.Second

	// promptSettle is a guessed pause for gosh to redraw its prompt before
	// the next input.
	promptSettle = 500 * time.Millisecond
)

var (
	readyLine = regexp.MustCompile(`blocktree: ready \(pid1 start to ready: (\d+) ms\)`)
	// ansiEscape matches the CSI and OSC sequences gosh's line editor
	// writes, so that checks see plain text.
	ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\))`)
)

// requireImageTest skips the test unless CI=true or BT_IMAGE_TEST=1. Under
// CI a missing tool fails the test instead.
func requireImageTest(t testing.TB, tools ...string) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if !ci && os.Getenv("BT_IMAGE_TEST") != "1" {
		t.Skip("image boot test: set BT_IMAGE_TEST=1 (needs apt-get, dpkg-deb, depmod and qemu-system-x86_64)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if _, serr := os.Stat(filepath.Join("/usr/sbin", tool)); serr == nil {
				continue
			}
			if ci {
				t.Fatalf("%s not found: %v", tool, err)
			}
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

// consoleLog collects QEMU's serial output for concurrent readers.
type consoleLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// text returns the output after offset with terminal escapes removed.
func (c *consoleLog) text(offset int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ansiEscape.ReplaceAllString(string(c.buf.Bytes()[offset:]), "")
}

func (c *consoleLog) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Len()
}

// waitFor polls the whole console output until match returns true.
func (c *consoleLog) waitFor(timeout time.Duration, match func(string) bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if match(c.text(0)) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// runConsoleCommand types input into the shell and waits for want in the
// output that follows.
func runConsoleCommand(t testing.TB, console *consoleLog, stdin io.Writer, input, want string) {
	t.Helper()
	offset := console.len()
	if _, err := io.WriteString(stdin, input+"\r"); err != nil {
		t.Fatalf("type %q: %v", input, err)
	}
	deadline := time.Now().Add(commandTimeout)
	for time.Now().Before(deadline) {
		if strings.Contains(console.text(offset), want) {
			time.Sleep(promptSettle)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%q: output does not contain %q within %s", input, want, commandTimeout)
}

// testWriter sends build progress to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
