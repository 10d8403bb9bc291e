// Package testenv holds what the end-to-end tests under tests/ share:
// building the bt binary, skipping for a missing tool, and waiting for
// the processes of a node to end. Unit tests use its page cache check too.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildBT builds ./cmd/bt from the module root into out.
func BuildBT(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	path := strings.TrimSpace(string(gomod))
	if path == "" || path == os.DevNull {
		return fmt.Errorf("go env GOMOD is %q: run the tests with go test from inside the module", path)
	}
	root := filepath.Dir(path)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/bt")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s ./cmd/bt in %s: %w\n%s", out, root, err, output)
	}
	return nil
}

// Missing skips the test, or fails it when CI=true, because the machine
// lacks something the test needs. The message names what is missing and
// how to fix it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this fails instead of skipping)", msg)
	}
	t.Skipf("skipping: %s", msg)
}

// WaitGroupGone waits until no process of the process group pgid is
// left, and reports whether that happened within timeout.
func WaitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunWithBT builds bt into a temporary directory, stores its path in
// *btPath, runs the tests and returns their exit code, for a TestMain.
// pkg names the test package in errors.
func RunWithBT(m *testing.M, pkg string, btPath *string) int {
	dir, err := os.MkdirTemp("", "bt-"+pkg+"-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: create a directory for the bt binary: %v\n", pkg, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*btPath = filepath.Join(dir, "bt")
	if err := BuildBT(*btPath); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", pkg, err)
		return 1
	}
	return m.Run()
}

// Poll calls check until it returns nil. If that takes longer than
// timeout, it fails the test with what and check's last error.
func Poll(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
