package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/init/supervise"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/endpoint"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/shell"
)

// runAsBT names the environment variable that makes the test binary run
// bt's main instead of the tests, so that tests can start bt as a process.
const runAsBT = "BT_TEST_RUN_AS_BT"

func TestMain(m *testing.M) {
	if os.Getenv(runAsBT) == "1" {
		os.Unsetenv(runAsBT)
		main()
		return
	}
	os.Exit(m.Run())
}

// btCommand returns a command that runs bt with args.
func btCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsBT+"=1")
	return cmd
}

// shelld is a bt shelld process that a test started.
type shelld struct {
	run    string // run directory
	node   principal.Principal
	socket string
}

// newRunDir returns a new run directory whose node and root files name a
// new node that is the root of its own tree.
func newRunDir(t *testing.T) (string, principal.Principal) {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := endpoint.WriteIdentity(run, cred.Principal(), cred.Principal()); err != nil {
		t.Fatal(err)
	}
	return run, cred.Principal()
}

// startShelld starts bt shelld on a new run directory and waits until it
// reports readiness.
func startShelld(t *testing.T) shelld {
	t.Helper()
	run, node := newRunDir(t)
	socket, err := endpoint.SocketPath(run, endpoint.Service(node, node, shell.ServiceName))
	if err != nil {
		t.Fatal(err)
	}
	ready, readyWriter, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()

	var logs bytes.Buffer
	cmd := btCommand("shelld", "--run", run)
	cmd.Env = append(cmd.Env, supervise.ReadyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{readyWriter}
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyWriter.Close()

	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("bt shelld exited with %v after SIGTERM, want 0; log:\n%s", err, logs.String())
		}
		if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bt shelld left its socket %s: %v", socket, err)
		}
	})
	line, err := bufio.NewReader(ready).ReadString('\n')
	if line != "READY\n" {
		t.Fatalf("bt shelld readiness = %q, %v; log:\n%s", line, err, logs.String())
	}
	return shelld{run: run, node: node, socket: socket}
}

// runBTProcess runs bt with args as a process, so that its exit code
// can be any status of a remote command.
func runBTProcess(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := btCommand(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run bt %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func TestShellExitStatus(t *testing.T) {
	s := startShelld(t)
	r := runBTProcess(t, "shell", "--endpoint", s.socket, "--", "sh", "-c", "exit 3")
	if r.code != 3 {
		t.Errorf("exit code = %d, want 3; stderr: %s", r.code, r.stderr)
	}
}

func TestShellResolvesFromRunDir(t *testing.T) {
	s := startShelld(t)
	r := runBTProcess(t, "shell", "--run", s.run, s.node.String(), "--", "sh", "-c", "exit 3")
	if r.code != 3 {
		t.Errorf("bt shell NODE: exit code = %d, want 3; stderr: %s", r.code, r.stderr)
	}
	address := endpoint.Service(s.node, s.node, shell.ServiceName).String()
	r = runBTProcess(t, "shell", "--run", s.run, "--tty", "never", address, "--", "sh", "-c", "echo out")
	if r.code != 0 || r.stdout != "out\n" {
		t.Errorf("bt shell %s: exit code %d, stdout %q; want 0 and %q; stderr: %s", address, r.code, r.stdout, "out\n", r.stderr)
	}
}

func TestShellOutputAndSignal(t *testing.T) {
	socket := startShelld(t).socket
	r := runBTProcess(t, "shell", "--endpoint", socket, "--tty", "never", "--", "sh", "-c", "echo out; echo err >&2")
	if r.code != 0 {
		t.Errorf("exit code = %d, want 0; stderr: %s", r.code, r.stderr)
	}
	if r.stdout != "out\n" {
		t.Errorf("stdout = %q, want %q", r.stdout, "out\n")
	}
	if r.stderr != "err\n" {
		t.Errorf("stderr = %q, want %q", r.stderr, "err\n")
	}

	r = runBTProcess(t, "shell", "--endpoint", socket, "--", "sh", "-c", "kill -TERM $$")
	if r.code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit code = %d after SIGTERM, want %d; stderr: %s", r.code, 128+int(syscall.SIGTERM), r.stderr)
	}
}

func TestShellErrors(t *testing.T) {
	socket := startShelld(t).socket
	emptyRun := t.TempDir()
	idleRun, idleNode := newRunDir(t)
	var other principal.Principal
	other[0] = 7
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no socket", []string{"shell", "--endpoint", filepath.Join(t.TempDir(), "none.sock"), "--", "true"}, 1, "no shell service at"},
		{"no node file", []string{"shell", "--run", emptyRun, idleNode.String(), "--", "true"}, 1, filepath.Join(emptyRun, "node") + " not found"},
		{"no shell service", []string{"shell", "--run", idleRun, idleNode.String(), "--", "true"}, 1, "no shell service at /" + idleNode.String() + "/dev/" + idleNode.String() + "/svc/shell"},
		{"no netd", []string{"shell", "--run", idleRun, other.String(), "--", "true"}, 1, "/svc/shell is unreachable"},
		{"invalid address", []string{"shell", "--run", idleRun, "/btroot/dev/btnode/svc/shell", "--", "true"}, 2, "invalid bus address"},
		{"not found", []string{"shell", "--endpoint", socket, "--", "no-such-command-here"}, 127, "no-such-command-here"},
		{"not executable", []string{"shell", "--endpoint", socket, "--", t.TempDir()}, 126, "permission denied"},
		{"missing address", []string{"shell", "--", "true"}, 2, "missing ADDRESS"},
		{"bad tty", []string{"shell", "--endpoint", socket, "--tty", "sometimes"}, 2, "invalid --tty"},
		{"empty command", []string{"shell", "--endpoint", socket, "--"}, 2, "no command after --"},
	}
	for _, tt := range tests {
		r := runBTProcess(t, tt.args...)
		if r.code != tt.code {
			t.Errorf("%s: exit code = %d, want %d; stderr: %s", tt.name, r.code, tt.code, r.stderr)
		}
		if !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: stderr = %q, want it to contain %q", tt.name, r.stderr, tt.want)
		}
		if strings.Contains(strings.TrimSpace(r.stderr), "\n") {
			t.Errorf("%s: stderr has several lines, want one: %q", tt.name, r.stderr)
		}
	}
}

func TestShellTimeout(t *testing.T) {
	// A listening socket whose owner never runs the bus setup.
	socket := filepath.Join(t.TempDir(), "silent.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	r := runBTProcess(t, "shell", "--endpoint", socket, "--timeout", "200ms", "--", "true")
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1", r.code)
	}
	if !strings.Contains(r.stderr, "timed out") {
		t.Errorf("stderr = %q, want a timeout", r.stderr)
	}
}

func TestShellHangupStopsCommand(t *testing.T) {
	socket := startShelld(t).socket
	cmd := btCommand("shell", "--endpoint", socket, "--", "sh", "-c", "echo $$; exec sleep 100")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the remote pid: %v; stderr: %s", err, stderr.String())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("remote pid line %q: %v", line, err)
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("bt shell exit code = %d after SIGHUP (%v), want 1", cmd.ProcessState.ExitCode(), err)
	}
	if !strings.Contains(stderr.String(), "hung up") {
		t.Errorf("stderr = %q, want it to name the hang-up", stderr.String())
	}
	// The service stops the command once the bus reports the peer gone.
	waitUntil(t, "the remote command to end after the hang-up", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}

// waitUntil calls cond until it returns true, and fails the test when that
// takes more than 30 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestShellTerminalRawModeRestored(t *testing.T) {
	socket := startShelld(t).socket
	master, terminal, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer terminal.Close()
	if err := pty.Setsize(terminal, &pty.Winsize{Rows: 30, Cols: 90}); err != nil {
		t.Fatal(err)
	}
	before, err := unix.IoctlGetTermios(int(terminal.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}

	cmd := btCommand("shell", "--endpoint", socket)
	cmd.Env = append(cmd.Env, "SHELL=/bin/sh", "TERM=vt100")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = terminal, terminal, terminal
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var output bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&output, master)
		close(copied)
	}()

	// Once the local terminal is in raw mode, the remote terminal echoes
	// the input and turns \r into the end of the line.
	waitUntil(t, "bt shell to put the terminal in raw mode", func() bool {
		current, err := unix.IoctlGetTermios(int(terminal.Fd()), unix.TCGETS)
		return err == nil && current.Lflag&unix.ICANON == 0
	})
	io.WriteString(master, "stty size; echo $TERM; exit 3\r")
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("bt shell exit code = %d (%v), want 3; output: %q", code, err, output.String())
	}
	after, err := unix.IoctlGetTermios(int(terminal.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("terminal settings after bt shell = %+v, want them restored to %+v", *after, *before)
	}
	terminal.Close()
	<-copied
	if !strings.Contains(output.String(), "30 90") {
		t.Errorf("output = %q, want the window size 30 90", output.String())
	}
	if !strings.Contains(output.String(), "vt100") {
		t.Errorf("output = %q, want TERM=vt100 passed on", output.String())
	}
}

func TestShellErrorDescriptions(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&shell.RemoteError{Code: shell.CodeUnauthorized, Text: "unauthorized: no writecap"}, "rejected this principal: shell service: unauthorized: no writecap"},
		{fmt.Errorf("wait: %w", shell.ErrStartTimeout), "timed out after 2s"},
		{context.DeadlineExceeded, "timed out after 2s"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "is unreachable"},
		{fmt.Errorf("receive: %w", bus.ErrPeerGone), "connection to the shell service at /x.sock was lost"},
		{&shell.RemoteError{Code: shell.CodeBusy, Text: "maximum of 16 sessions"}, "/x.sock: shell service: maximum of 16 sessions"},
	}
	for _, tt := range tests {
		got := describeShellError("/x.sock", 2*time.Second, tt.err).Error()
		if !strings.Contains(got, tt.want) {
			t.Errorf("describeShellError(%v) = %q, want it to contain %q", tt.err, got, tt.want)
		}
	}
}

func TestShellDialErrorDescriptions(t *testing.T) {
	var node principal.Principal
	node[0] = 4
	address := "/btr/dev/btn/svc/shell"
	tests := []struct {
		err  error
		want string
	}{
		{&endpoint.RemoteError{Code: endpoint.CodeUnauthorized, Reason: "the chain covers svc/echo"}, "bt shell: " + address + " refused principal " + node.String() + " (unauthorized): the chain covers svc/echo"},
		{fmt.Errorf("dial: %w", &endpoint.RemoteError{Code: endpoint.CodeUnreachable}), "bt shell: " + address + " is unreachable: destination node unreachable"},
		{&endpoint.RemoteError{Code: endpoint.CodeNoEndpoint}, "bt shell: no shell service at " + address},
		{fmt.Errorf("open: %w: %w", endpoint.ErrTimedOut, context.DeadlineExceeded), "bt shell: " + address + " timed out after 2s"},
		{fmt.Errorf("receive: %w", bus.ErrPeerGone), "connection to the shell service at " + address + " was lost"},
	}
	for _, tt := range tests {
		got := describeDialError(address, node, 2*time.Second, tt.err).Error()
		if !strings.Contains(got, tt.want) {
			t.Errorf("describeDialError(%v) = %q, want it to contain %q", tt.err, got, tt.want)
		}
	}
}
