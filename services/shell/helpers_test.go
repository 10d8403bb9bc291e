package shell

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/bus/bustest"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

func allowAll(principal.Principal) error { return nil }

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connPair returns both ends of a new bus connection.
func connPair(t testing.TB) (client, server *bus.Conn) {
	t.Helper()
	return bustest.Pair(t, bus.Dialer{}, bus.ListenConfig{})
}

// startServer runs Serve on a new connection and returns the client end
// and a function that waits for Serve's result.
func startServer(t testing.TB, opts ServerOptions) (*bus.Conn, func() error) {
	t.Helper()
	client, server := connPair(t)
	if opts.Authorize == nil {
		opts.Authorize = allowAll
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var serveErr error
	go func() {
		serveErr = Serve(ctx, server, opts)
		close(finished)
	}()
	wait := func() error {
		<-finished
		return serveErr
	}
	t.Cleanup(func() {
		cancel()
		wait()
	})
	return client, wait
}

// runSession runs req against a new server and returns the status and the
// output.
func runSession(t testing.TB, opts ServerOptions, req Request, stdin string) (ExitStatus, string, string, error) {
	t.Helper()
	client, _ := startServer(t, opts)
	var stdout, stderr bytes.Buffer
	status, err := Run(testContext(t), client, req, strings.NewReader(stdin), &stdout, &stderr)
	return status, stdout.String(), stderr.String(), err
}

// testWriter sends log output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// syncBuffer is a bytes.Buffer that a test reads while Run writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor calls cond until it returns true or ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// processExists reports whether pid is a process that has not been reaped.
func processExists(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// childrenNamed returns the pids of this process's children whose command
// name is name.
func childrenNamed(t testing.TB, name string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name is in parentheses and may contain spaces, so the
		// fields after it start at the last ')'.
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(string(stat[end+1:]))
		if len(fields) < 2 || string(stat[open+1:end]) != name {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}
