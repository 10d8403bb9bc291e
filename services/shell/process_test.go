package shell

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/bus"
)

// helperSocket names the environment variable that makes
// TestHelperClient run a client against the socket it contains.
const helperSocket = "BT_SHELL_TEST_SOCKET"

// TestHelperClient is the client process of TestKilledClientKillsCommand:
// it runs a command that prints its pid and sleeps, and copies its output
// to stdout, until it is killed.
func TestHelperClient(t *testing.T) {
	path := os.Getenv(helperSocket)
	if path == "" {
		t.Skip("runs only as the child process of TestKilledClientKillsCommand")
	}
	conn, err := bus.Dial(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	req := Request{Argv: []string{"sh", "-c", "echo $$; sleep 100"}, TTY: true}
	_, err = Run(context.Background(), conn, req, nil, os.Stdout, os.Stderr)
	fmt.Fprintln(os.Stderr, "the session ended although the test kills this process first:", err)
	os.Exit(1)
}

func TestKilledClientKillsCommand(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "shell.sock")
	l, err := bus.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveErr := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			serveErr <- err
			return
		}
		defer conn.Close()
		opts := ServerOptions{Authorize: allowAll, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
		serveErr <- Serve(context.Background(), conn, opts)
	}()

	helper := exec.Command(os.Args[0], "-test.run=^TestHelperClient$", "-test.count=1")
	helper.Env = append(os.Environ(), helperSocket+"="+path)
	helper.Stderr = testWriter{t}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the command's pid from the client: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("first line from the client = %q, want the command's pid", line)
	}
	if !processExists(pid) {
		t.Fatalf("command pid %d does not exist while the session runs", pid)
	}

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	select {
	case err := <-serveErr:
		if !errors.Is(err, bus.ErrPeerGone) {
			t.Errorf("Serve error = %v, want ErrPeerGone", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after its client was killed")
	}
	if processExists(pid) {
		t.Errorf("command pid %d still exists after its client was killed", pid)
	}
}

func TestServeListenerLimit(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "shell.sock")
	l, err := bus.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	opts := ServerOptions{Authorize: allowAll, MaxSessions: 1, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	go func() { done <- ServeListener(serveCtx, BusListener(l), opts) }()

	first, err := bus.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	firstResult := make(chan error, 1)
	stdinReader, stdinWriter := io.Pipe()
	var firstOut syncBuffer
	go func() {
		_, err := Run(ctx, first, Request{Argv: []string{"sh", "-c", "echo running; cat"}}, stdinReader, &firstOut, io.Discard)
		firstResult <- err
	}()
	waitFor(ctx, t, "the first session", func() bool { return firstOut.String() == "running\n" })

	second, err := bus.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_, err = Run(ctx, second, Request{Argv: []string{"true"}}, nil, io.Discard, io.Discard)
	var remote *RemoteError
	if !errors.As(err, &remote) || remote.Code != CodeBusy {
		t.Errorf("second session error = %v, want a RemoteError with CodeBusy", err)
	}

	// Stopping the listener ends the running session as a disconnect
	// would.
	stop()
	if err := <-done; err != nil {
		t.Errorf("ServeListener error = %v, want nil after its context ended", err)
	}
	if err := <-firstResult; !errors.Is(err, bus.ErrPeerGone) {
		t.Errorf("first session error = %v, want ErrPeerGone after the service stopped", err)
	}
	stdinWriter.Close()
}
