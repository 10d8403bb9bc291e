package proto

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/logbuf"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// testServer is a Serve running on a bus endpoint in the test's directory.
type testServer struct {
	path string
	srv  *server // for its counters
	fs   *memFS
	logs *logBuffer
	stop func() // cancels Serve and waits for it to return
}

// logBuffer collects log output for tests that check what was logged.
type logBuffer = logbuf.Buffer

// trustAll is a TrustCallers that trusts every peer.
func trustAll(*unix.Ucred) bool { return true }

// nodePrincipal is the principal that test servers assign to local peers.
var nodePrincipal = testPrincipal(0x90)

// startServer serves fs on a new socket. With opts.Principal nil the server
// assigns nodePrincipal. Serve stops at the end of the test.
func startServer(t testing.TB, fs *memFS, opts ServerOptions) *testServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fs.sock")
	l, err := bus.Listen(path)
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Principal == nil {
		opts.Principal = func(*unix.Ucred) principal.Principal { return nodePrincipal }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *server, 1)
	testHookServe = func(s *server) { started <- s }
	go func() { done <- Serve(ctx, l, fs, opts) }()
	srv := <-started
	testHookServe = nil

	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v after its context ended", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Serve did not return within 10s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{path: path, srv: srv, fs: fs, logs: logs, stop: stop}
}

// dial connects a client that closes at the end of the test.
func dial(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(path, ClientOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// errnoOf returns the syscall.Errno inside err, or 0.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// eventually polls cond every millisecond for up to 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// within runs f and fails the test if it takes longer than d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s took longer than %v", what, d)
	}
}

// handleRequestsInDaemon makes clients in this test leave their requests
// to the daemon's goroutines, as a client in another process does.
func handleRequestsInDaemon(t *testing.T) {
	saved := receiveInline
	receiveInline = false
	t.Cleanup(func() { receiveInline = saved })
}
