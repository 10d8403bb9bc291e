package hostmode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// btPath is the bt binary that TestMain builds for this test binary.
var btPath string

func TestMain(m *testing.M) {
	// The crash test runs its workload in a child process: this binary,
	// started again with workloadEnv set.
	if os.Getenv(workloadEnv) != "" {
		os.Exit(runWorkload())
	}

	dir, err := os.MkdirTemp("", "bt-hostmode-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "hostmode: create a directory for the bt binary: %v\n", err)
		os.Exit(1)
	}
	btPath = filepath.Join(dir, "bt")
	if err := buildBT(btPath); err != nil {
		fmt.Fprintf(os.Stderr, "hostmode: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBT builds ./cmd/bt from the module root into out.
func buildBT(out string) error {
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

// missing skips the test, or fails it when CI=true, because the machine
// lacks something the test needs. The message names what is missing and
// how to fix it.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this fails instead of skipping)", msg)
	}
	t.Skipf("skipping: %s", msg)
}

// requireHost checks what every host-mode test needs: root, /dev/fuse,
// fusermount3 and swtpm.
func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "not running as root: host-mode tests mount FUSE file systems with allow_other and chown files, so run them as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing(t, "/dev/fuse is not available (%v): run the tests where the fuse module is loaded", err)
	}
	requireTools(t, "fusermount3", "swtpm")
}

// requireTools checks that each program is in PATH.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			missing(t, "%s is not installed: run scripts/install-deps.sh as root", name)
		}
	}
}

// result is the outcome of one finished bt command.
type result struct {
	stdout, stderr string
	code           int
}

// runBT runs bt with args to completion and returns its output and exit
// code. It fails the test if bt leaves a process of its group or a new
// swtpm on its --state directory running.
func runBT(t testing.TB, args ...string) result {
	t.Helper()
	state := ""
	if i := slices.Index(args, "--state"); i >= 0 && i+1 < len(args) {
		state = args[i+1]
	}
	running := swtpmProcesses(state)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, btPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("bt %s: %v\nstderr:\n%s", strings.Join(args, " "), err, res.stderr)
	}
	if ctx.Err() != nil {
		t.Fatalf("bt %s did not exit within 2 minutes\nstderr:\n%s", strings.Join(args, " "), res.stderr)
	}

	if !waitGroupGone(cmd.Process.Pid, 5*time.Second) {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("bt %s exited but left processes of its process group running", strings.Join(args, " "))
	}
	if state == "" {
		return res
	}
	if left := waitSwtpmGone(state, running, 5*time.Second); len(left) > 0 {
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Errorf("bt %s exited but left swtpm (pids %v) running", strings.Join(args, " "), left)
	}
	return res
}

// waitGroupGone waits until no process of the process group pgid is left.
func waitGroupGone(pgid int, timeout time.Duration) bool {
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
