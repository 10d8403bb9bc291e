package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/node/state"
	"github.com/blocktree/blocktree/services/shell"
)

// startHostNode starts bt node on a new state directory with a software
// TPM, waits for its ready line and returns the state directory. The
// cleanup stops the node with SIGTERM and requires exit 0.
func startHostNode(t *testing.T) string {
	t.Helper()
	testenv.RequireNodeHost(t)
	dir := t.TempDir()
	stateDir, mount := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	for _, d := range []string{stateDir, mount} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	cmd := btCommand("node", "--state", stateDir, "--mount", mount, "--tpm", "software")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	cmd.Stderr = logs
	// swtpm stays in the node's process group, so a cleanup can end both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, exited := testenv.WatchReady(cmd, stdout)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Errorf("bt node did not stop within a minute of SIGTERM:\n%s", logs)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("bt node exited with %d after SIGTERM, want 0:\n%s", code, logs)
		}
		testenv.WaitGroupGone(cmd.Process.Pid, 10*time.Second)
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("bt node exited before it was ready:\n%s", logs)
	case <-time.After(2 * time.Minute):
		t.Fatalf("bt node printed no ready line within 2 minutes:\n%s", logs)
	}
	return stateDir
}

func TestShellThroughNode(t *testing.T) {
	stateDir := startHostNode(t)
	_, node, err := state.ReadPrincipals(stateDir)
	if err != nil {
		t.Fatal(err)
	}

	r := runBTProcess(t, "shell", "--state", stateDir, node.String(), "--", "sh", "-c", "exit 3")
	if r.code != 3 {
		t.Errorf("bt shell --state DIR NODE: exit code = %d, want 3; stderr: %s", r.code, r.stderr)
	}
	address := endpoint.Service(node, node, shell.ServiceName).String()
	r = runBTProcess(t, "shell", "--state", stateDir, "--tty", "never", address, "--", "sh", "-c", "echo out; echo err >&2")
	if r.code != 0 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("bt shell %s: exit code %d, stdout %q, stderr %q; want 0, %q and %q", address, r.code, r.stdout, r.stderr, "out\n", "err\n")
	}
}

func TestShellThroughNodeErrors(t *testing.T) {
	stateDir := startHostNode(t)
	_, node, err := state.ReadPrincipals(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var other principal.Principal
	other[0] = 9
	otherShell := endpoint.Service(other, other, shell.ServiceName).String()
	noService := endpoint.Service(node, node, "nothing").String()
	tests := []struct {
		name string
		args []string
		want string
	}{
		// The node's netd has no peers, so no other node is reachable.
		{"unreachable", []string{"shell", "--state", stateDir, other.String(), "--", "true"}, "bt shell: " + otherShell + " is unreachable"},
		{"no endpoint", []string{"shell", "--state", stateDir, noService, "--", "true"}, "bt shell: no shell service at " + noService},
	}
	for _, tt := range tests {
		r := runBTProcess(t, tt.args...)
		t.Logf("%s: %s", tt.name, r.stderr)
		if r.code != 1 {
			t.Errorf("%s: exit code = %d, want 1; stderr: %s", tt.name, r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, tt.want) {
			t.Errorf("%s: stderr = %q, want it to start with %q", tt.name, r.stderr, tt.want)
		}
	}
}
