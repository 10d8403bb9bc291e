package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/bus/endpoint"
)

// helperOtherUser names the environment variable that makes
// TestHelperOtherUser dial the endpoint socket it contains, and the file
// that the command would create.
const helperOtherUser = "BT_SHELL_TEST_OTHER_USER"

// TestHelperOtherUser is the client process of
// TestEndpointRejectsOtherLocalUser, which runs it as another user. It
// exits 0 when the session failed and 1 when the command ran.
func TestHelperOtherUser(t *testing.T) {
	value := os.Getenv(helperOtherUser)
	if value == "" {
		t.Skip("runs only as the child process of TestEndpointRejectsOtherLocalUser")
	}
	socket, marker, _ := strings.Cut(value, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := endpoint.DialSocket(ctx, socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(2)
	}
	defer conn.Close()
	_, err = Run(ctx, conn, Request{Argv: []string{"touch", marker}}, nil, io.Discard, io.Discard)
	if err == nil {
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "session failed as expected:", err)
	os.Exit(0)
}

func TestEndpointRejectsOtherLocalUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "not running as root, which this test needs to run a process as another user")
	}
	node := newCredential(t).Principal()
	authorize, callers := recordingAuthorize()
	run, address, logs := serveEndpoint(t, node, authorize)
	socket, err := endpoint.SocketPath(run, address)
	if err != nil {
		t.Fatal(err)
	}
	// Let uid 65534 (nobody) connect, so that only the uid check stops it.
	for _, p := range []string{filepath.Dir(run), run, filepath.Dir(socket)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(socket, 0o777); err != nil {
		t.Fatal(err)
	}
	child := testenv.CopyTestBinary(t, run)
	marker := filepath.Join(run, "marker")

	cmd := exec.Command(child, "-test.run=^TestHelperOtherUser$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperOtherUser+"="+socket+","+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("client as uid 65534 exited with %d (1: the command ran, 2: the dial failed), expected 0:\n%s", code, out)
	}

	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command of uid 65534 ran: stat %s: %v", marker, err)
	}
	if got := callers(); len(got) != 0 {
		t.Errorf("Authorize saw %v, expected no caller", got)
	}
	ctx := testContext(t)
	waitFor(ctx, t, "the rejection in the log", func() bool { return strings.Contains(logs.String(), "shell connection rejected") })
	if lines := linesWith(logs.String(), "shell connection rejected", "uid 65534"); len(lines) != 1 {
		t.Errorf("log has %d rejections naming uid 65534, expected 1:\n%s", len(lines), logs)
	}
}
