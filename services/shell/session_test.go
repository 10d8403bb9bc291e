package shell

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func TestTerminalSizeAndName(t *testing.T) {
	req := Request{Argv: []string{"/bin/sh", "-c", "stty size; tty"}, TTY: true, Size: WindowSize{Rows: 33, Cols: 101}}
	status, stdout, stderr, err := runSession(t, ServerOptions{}, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if status != (ExitStatus{}) {
		t.Errorf("status = %+v, want exit 0", status)
	}
	if !strings.Contains(stdout, "33 101\r\n") {
		t.Errorf("stdout = %q, want the size 33 101", stdout)
	}
	if !strings.Contains(stdout, "/dev/pts/") {
		t.Errorf("stdout = %q, want a /dev/pts/ terminal name", stdout)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing: a terminal merges it into stdout", stderr)
	}
}

func TestResizeInteractiveShell(t *testing.T) {
	ctx := testContext(t)
	client, _ := startServer(t, ServerOptions{})
	stdinReader, stdinWriter := io.Pipe()
	defer stdinWriter.Close()
	resizes := make(chan WindowSize, 1)
	var stdout syncBuffer
	req := Request{Argv: []string{"/bin/sh", "-i"}, TTY: true, Size: WindowSize{Rows: 24, Cols: 80}, Resizes: resizes}
	result := make(chan error, 1)
	go func() {
		_, err := Run(ctx, client, req, stdinReader, &stdout, io.Discard)
		result <- err
	}()

	io.WriteString(stdinWriter, "stty size\n")
	waitFor(ctx, t, "the first size", func() bool { return strings.Contains(stdout.String(), "24 80\r\n") })
	resizes <- WindowSize{Rows: 50, Cols: 132}
	// The resize and the input travel on different goroutines, so the
	// shell may run the next stty before the server applies the size.
	// Run stty again until the new size shows.
	for !strings.Contains(stdout.String(), "50 132\r\n") {
		// Count the lines before the command goes out: its echo and its
		// output may arrive before a count taken after the write.
		before := strings.Count(stdout.String(), "\r\n")
		io.WriteString(stdinWriter, "stty size\n")
		waitFor(ctx, t, "stty output", func() bool { return strings.Count(stdout.String(), "\r\n") >= before+2 })
	}
	io.WriteString(stdinWriter, "exit 0\n")
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

func TestResizeSendsSIGWINCH(t *testing.T) {
	ctx := testContext(t)
	client, _ := startServer(t, ServerOptions{})
	resizes := make(chan WindowSize, 1)
	var stdout syncBuffer
	script := `trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 1; done`
	req := Request{Argv: []string{"/bin/sh", "-c", script}, TTY: true, Size: WindowSize{Rows: 24, Cols: 80}, Resizes: resizes}
	result := make(chan error, 1)
	var status ExitStatus
	go func() {
		var err error
		status, err = Run(ctx, client, req, nil, &stdout, io.Discard)
		result <- err
	}()

	waitFor(ctx, t, "the trap", func() bool { return strings.Contains(stdout.String(), "ready") })
	resizes <- WindowSize{Rows: 40, Cols: 100}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if status != (ExitStatus{}) {
		t.Errorf("status = %+v, want exit 0 from the WINCH trap", status)
	}
	if !strings.Contains(stdout.String(), "40 100") {
		t.Errorf("stdout = %q, want the size 40 100 printed by the WINCH trap", stdout.String())
	}
}

func TestSignalInterruptsSleep(t *testing.T) {
	signals := make(chan os.Signal, 1)
	signals <- syscall.SIGINT
	req := Request{Argv: []string{"sleep", "100"}, Signals: signals}
	status, _, _, err := runSession(t, ServerOptions{}, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if status.Signal != syscall.SIGINT {
		t.Errorf("status = %+v, want killed by SIGINT", status)
	}
	if status.ShellCode() != 130 {
		t.Errorf("ShellCode = %d, want 130", status.ShellCode())
	}
}

func TestSignalNotAllowedIsIgnored(t *testing.T) {
	signals := make(chan os.Signal, 2)
	signals <- syscall.SIGUSR1
	signals <- syscall.SIGTERM
	req := Request{Argv: []string{"sleep", "100"}, Signals: signals}
	status, _, _, err := runSession(t, ServerOptions{}, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if status.Signal != syscall.SIGTERM {
		t.Errorf("status = %+v, want killed by SIGTERM, not SIGUSR1", status)
	}
}

func TestExitStatus(t *testing.T) {
	for _, tty := range []bool{false, true} {
		req := Request{Argv: []string{"sh", "-c", "exit 7"}, TTY: tty}
		status, _, _, err := runSession(t, ServerOptions{}, req, "")
		if err != nil {
			t.Fatal(err)
		}
		if status != (ExitStatus{Code: 7}) {
			t.Errorf("tty %v: status = %+v, want exit 7", tty, status)
		}
	}
}

func TestStdoutStderrApart(t *testing.T) {
	req := Request{Argv: []string{"sh", "-c", "echo out; echo err >&2; echo out2"}}
	_, stdout, stderr, err := runSession(t, ServerOptions{}, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "out\nout2\n" {
		t.Errorf("stdout = %q, want %q", stdout, "out\nout2\n")
	}
	if stderr != "err\n" {
		t.Errorf("stderr = %q, want %q", stderr, "err\n")
	}
}

func TestStdinEOFEndsCat(t *testing.T) {
	input := strings.Repeat("line of input\n", 10000)
	status, stdout, _, err := runSession(t, ServerOptions{}, Request{Argv: []string{"cat"}}, input)
	if err != nil {
		t.Fatal(err)
	}
	if status != (ExitStatus{}) {
		t.Errorf("status = %+v, want exit 0", status)
	}
	if stdout != input {
		t.Errorf("stdout has %d bytes, want the %d bytes of input", len(stdout), len(input))
	}
}

func TestEnvironmentAndDirectory(t *testing.T) {
	dir := t.TempDir()
	opts := ServerOptions{Env: []string{"PATH=/usr/bin:/bin", "BASE=base"}, Dir: dir}
	req := Request{Argv: []string{"sh", "-c", "echo $BASE $TERM $LANG; pwd"}, Env: []string{"TERM=vt100", "LANG=C.UTF-8"}}
	_, stdout, _, err := runSession(t, opts, req, "")
	if err != nil {
		t.Fatal(err)
	}
	want := "base vt100 C.UTF-8\n" + dir + "\n"
	if stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
}

func TestLoginShellWhenNoArgv(t *testing.T) {
	opts := ServerOptions{Shell: []string{"/bin/sh", "-c", "echo login shell"}}
	_, stdout, _, err := runSession(t, opts, Request{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "login shell\n" {
		t.Errorf("stdout = %q, want the output of opts.Shell", stdout)
	}
}

func TestLargeOutputComplete(t *testing.T) {
	const size = 8 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	client, _ := startServer(t, ServerOptions{})
	if client.MaxPayload() >= size {
		t.Fatalf("MaxPayload %d, want it below the output of %d bytes", client.MaxPayload(), size)
	}

	// The client writes nothing until the child is blocked in write(2)
	// with only part of the data written: the server stopped reading its
	// pipe instead of buffering the output.
	stdout := &gatedWriter{gate: make(chan struct{})}
	result := make(chan error, 1)
	go func() {
		_, err := Run(ctx, client, Request{Argv: []string{"head", "-c", "8388608", path}}, nil, stdout, io.Discard)
		result <- err
	}()
	var pids []int
	waitFor(ctx, t, "the head process", func() bool {
		pids = childrenNamed(t, "head")
		return len(pids) == 1
	})
	waitFor(ctx, t, "head to block in write", func() bool {
		syscallLine, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/syscall")
		if err != nil {
			t.Fatalf("head exited while the client read nothing, so the server buffered its output: %v", err)
		}
		return strings.HasPrefix(string(syscallLine), strconv.Itoa(int(syscall.SYS_WRITE))+" ")
	})
	close(stdout.gate)

	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stdout.buf.Bytes(), data) {
		t.Errorf("stdout has %d bytes, want the file's %d bytes unchanged", stdout.buf.Len(), size)
	}
}

// gatedWriter blocks every Write until gate is closed.
type gatedWriter struct {
	gate chan struct{}
	buf  bytes.Buffer
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.gate
	return w.buf.Write(p)
}

func TestClientCloseKillsCommand(t *testing.T) {
	ctx := testContext(t)
	// The shell ignores SIGHUP, so only the SIGKILL after the grace period
	// ends it.
	client, wait := startServer(t, ServerOptions{KillGrace: 1})
	open := encodeOpen(Open{Argv: []string{"sh", "-c", "trap '' HUP; echo ready; sleep 100; exit 0"}})
	if err := client.Send(ctx, KindOpen, open); err != nil {
		t.Fatal(err)
	}
	pid := 0
	for output := ""; output != "ready\n"; {
		msg, err := client.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch msg.Kind {
		case KindStarted:
			pid, err = decodeStarted(msg.Data)
		case KindStdout:
			var data []byte
			data, err = decodeData(msg.Data)
			output += string(data)
		default:
			t.Fatalf("message of kind %#x before the command is ready", msg.Kind)
		}
		msg.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !processExists(pid) {
		t.Fatalf("command pid %d does not exist while the session runs", pid)
	}

	client.Close()
	if err := wait(); !errors.Is(err, bus.ErrPeerGone) {
		t.Errorf("Serve error = %v after the client went away, want ErrPeerGone", err)
	}
	if processExists(pid) {
		t.Errorf("command pid %d still exists after the client went away", pid)
	}
}

func TestUnauthorizedStartsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	var checkedCaller principal.Principal
	caller := principal.Principal{1, 2, 3}
	opts := ServerOptions{
		Caller: caller,
		Authorize: func(p principal.Principal) error {
			checkedCaller = p
			return errors.New("caller holds no writecap over the shell address")
		},
	}
	client, wait := startServer(t, opts)

	_, err := Run(testContext(t), client, Request{Argv: []string{"touch", marker}}, nil, io.Discard, io.Discard)
	var remote *RemoteError
	if !errors.As(err, &remote) || remote.Code != CodeUnauthorized {
		t.Fatalf("Run error = %v, want a RemoteError with CodeUnauthorized", err)
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("errors.Is(%v, ErrUnauthorized) = false", err)
	}
	if !strings.HasPrefix(remote.Text, "unauthorized") {
		t.Errorf("error text = %q, want it to start with unauthorized", remote.Text)
	}
	if serveErr := wait(); !errors.Is(serveErr, ErrUnauthorized) {
		t.Errorf("Serve error = %v, want ErrUnauthorized", serveErr)
	}
	if checkedCaller != caller {
		t.Errorf("Authorize got %v, want the caller %v", checkedCaller, caller)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command ran although the caller was rejected: stat %s: %v", marker, err)
	}
}

func TestNoAuthorizePolicyRejects(t *testing.T) {
	client, server := connPair(t)
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), server, ServerOptions{}) }()
	_, err := Run(testContext(t), client, Request{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Run error = %v, want ErrUnauthorized without an Authorize hook", err)
	}
	if err := <-done; !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Serve error = %v, want ErrUnauthorized", err)
	}
}

func TestCommandStartFailures(t *testing.T) {
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(notExecutable, []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		command string
		want    ErrorCode
	}{
		{"name not on PATH", "no-such-command-here", CodeNotFound},
		{"missing path", filepath.Join(dir, "missing"), CodeNotFound},
		{"file without execute permission", notExecutable, CodeNotExecutable},
		{"directory", dir, CodeNotExecutable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := runSession(t, ServerOptions{}, Request{Argv: []string{c.command}}, "")
			var remote *RemoteError
			if !errors.As(err, &remote) || remote.Code != c.want {
				t.Fatalf("Run error = %v, expected a RemoteError with %v", err, c.want)
			}
			if !strings.Contains(remote.Text, c.command) {
				t.Errorf("error text = %q, expected the command %s", remote.Text, c.command)
			}
		})
	}
}

func TestStartTimeout(t *testing.T) {
	// The server end exists but never serves, as a hung service would.
	client, _ := connPair(t)
	req := Request{Argv: []string{"true"}, StartTimeout: 50 * time.Millisecond}
	_, err := Run(testContext(t), client, req, nil, io.Discard, io.Discard)
	if !errors.Is(err, ErrStartTimeout) {
		t.Errorf("Run error = %v, want ErrStartTimeout", err)
	}
}
