package testenv

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireNodeHost checks what a test that runs bt node needs: root,
// /dev/fuse, fusermount3, swtpm and each of tools in PATH. It calls
// Missing for the first requirement that is not met.
func RequireNodeHost(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "not running as root: bt node mounts its tree through FUSE, so run the tests as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		Missing(t, "/dev/fuse is not available (%v): run the tests where the fuse module is loaded", err)
	}
	for _, name := range append([]string{"fusermount3", "swtpm"}, tools...) {
		if _, err := exec.LookPath(name); err != nil {
			Missing(t, "%s is not installed: run scripts/install-deps.sh as root", name)
		}
	}
}

// WatchReady reads a started bt node's standard output. It closes ready
// at the first line that starts with "ready:", and exited once the output
// ended and cmd.Wait returned.
func WatchReady(cmd *exec.Cmd, stdout io.Reader) (ready, exited <-chan struct{}) {
	readyCh, exitedCh := make(chan struct{}), make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stdout)
		signaled := false
		for scanner.Scan() {
			if !signaled && strings.HasPrefix(scanner.Text(), "ready:") {
				close(readyCh)
				signaled = true
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(exitedCh)
	}()
	return readyCh, exitedCh
}

// CopyTestBinary copies the running test binary into dir and returns the
// copy's path. A test that runs itself as another user needs the copy,
// because the binary's own directory may be private to root.
func CopyTestBinary(t testing.TB, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binary, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	child := filepath.Join(dir, "child")
	if err := os.WriteFile(child, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	return child
}
