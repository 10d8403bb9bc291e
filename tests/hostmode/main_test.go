package hostmode

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
)

// btPath is the bt binary that TestMain builds for this test binary.
var btPath string

func TestMain(m *testing.M) {
	// The crash test runs its workload in a child process: this binary,
	// started again with workloadEnv set.
	if os.Getenv(workloadEnv) != "" {
		os.Exit(runWorkload())
	}

	os.Exit(testenv.RunWithBT(m, "hostmode", &btPath))
}

// requireHost checks what every host-mode test needs: root, /dev/fuse,
// fusermount3 and swtpm.
func requireHost(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "not running as root: host-mode tests mount FUSE file systems with allow_other and chown files, so run them as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Missing(t, "/dev/fuse is not available (%v): run the tests where the fuse module is loaded", err)
	}
	requireTools(t, "fusermount3", "swtpm")
}

// requireTools checks that each program is in PATH.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			testenv.Missing(t, "%s is not installed: run scripts/install-deps.sh as root", name)
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

	if !testenv.WaitGroupGone(cmd.Process.Pid, 5*time.Second) {
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
