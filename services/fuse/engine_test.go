package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/posixsuite"
	"github.com/blocktree/blocktree/services/bus"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
	"github.com/blocktree/blocktree/services/storage/proto"
)

// memJournal is an in-memory fsys.Journal that counts Sync calls.
type memJournal struct {
	mu      sync.Mutex
	entries [][]byte
	syncs   int
}

func (j *memJournal) Append(tags []uint64, payload []byte) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, append([]byte(nil), payload...))
	return uint64(len(j.entries)), nil
}

func (j *memJournal) Sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.syncs++
	return nil
}

func (j *memJournal) entryCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries)
}

func (j *memJournal) syncCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

func newEngine(t *testing.T) (*fsys.Engine, *memJournal) {
	t.Helper()
	journal := &memJournal{}
	engine, err := fsys.New(fsys.Options{Journal: journal})
	if err != nil {
		t.Fatalf("fsys.New: %v", err)
	}
	return engine, journal
}

// engineDifferences are the known differences of the engine behind this
// FUSE server from ext4, as posixsuite.Options.
var engineDifferences = posixsuite.Options{
	// The kernel serves cached names without asking the daemon, and without
	// default_permissions it checks no search permission itself.
	LookupCacheTime: ShortTimeout,
	// The daemon drops a flock lock at RELEASE, which the kernel sends
	// after close(2) has returned. That usually takes well under a
	// millisecond; the bound is generous so that a loaded machine passes.
	FlockCloseDelay: 2 * time.Second,
}

func TestEnginePosixSuite(t *testing.T) {
	engine, _ := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{})
	posixsuite.Run(t, dir, engineDifferences)
}

// posixtestKnownWrong lists go-fuse posixtest cases that fail on every
// Linux file system, ext4 included, with the reason.
var posixtestKnownWrong = map[string]string{
	"FcntlFlockLocksFile": "expects two POSIX locks of one process to conflict, which they never do on Linux; go-fuse's own TestAll skips it",
}

func TestEnginePosixtest(t *testing.T) {
	engine, _ := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{})

	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if reason, ok := posixtestKnownWrong[name]; ok {
				t.Skipf("known wrong on Linux: %s", reason)
			}
			sub := filepath.Join(dir, name)
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, sub)
			if err := os.RemoveAll(sub); err != nil {
				t.Errorf("remove %s: %v", sub, err)
			}
		})
	}
}

func TestEngineFsyncReachesJournal(t *testing.T) {
	engine, journal := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{})

	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	before := journal.syncCount()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if got := journal.syncCount(); got <= before {
		t.Errorf("journal synced %d times after fsync, want more than %d", got, before)
	}
}

// TestEngineWriteVisibleAtOnce checks that an acknowledged write is in the
// engine before write(2) returns: no writeback cache holds it back.
func TestEngineWriteVisibleAtOnce(t *testing.T) {
	engine, journal := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{AttrTimeout: time.Hour, EntryTimeout: time.Hour})

	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entriesBefore := journal.entryCount()
	if _, err := f.Write([]byte("acknowledged")); err != nil {
		t.Fatal(err)
	}
	entriesAfter := journal.entryCount()
	if entriesAfter <= entriesBefore {
		t.Errorf("journal has %d entries after the write returned, want more than %d", entriesAfter, entriesBefore)
	}
}

// TestEngineNoEntryCacheChecksSearch runs the suite with the entry cache
// off, which makes the kernel look every name up again, so the daemon's
// search permission check applies at once (no LookupCacheTime).
func TestEngineNoEntryCacheChecksSearch(t *testing.T) {
	engine, _ := newEngine(t)
	_, dir, _ := mountForTest(t, engine, Options{EntryTimeout: -1})
	differences := engineDifferences
	differences.LookupCacheTime = 0
	posixsuite.Run(t, dir, differences)
}

// TestProtocolPosixSuite runs the suite through the whole host-mode stack:
// FUSE, the protocol client, the bus, the protocol server and the engine.
func TestProtocolPosixSuite(t *testing.T) {
	dir, _ := mountOverProtocol(t)
	posixsuite.Run(t, dir, engineDifferences)
}

// TestProtocolConcurrentLargeIO writes and reads 1 MiB at a time from many
// goroutines through the mount and the bus. go-fuse holds each read view
// until it has written it to the kernel, so the views fill the response
// ring while writes fill the request ring.
func TestProtocolConcurrentLargeIO(t *testing.T) {
	dir, client := mountOverProtocol(t)

	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			path := filepath.Join(dir, fmt.Sprintf("large-%d", w))
			chunk := bytes.Repeat([]byte{byte('a' + w)}, 1<<20)
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for i := range 4 {
				if _, err := f.WriteAt(chunk, int64(i)<<20); err != nil {
					errs <- fmt.Errorf("write %s: %w", path, err)
					return
				}
			}
			got := make([]byte, 1<<20)
			for round := range 3 {
				for i := range 4 {
					if _, err := f.ReadAt(got, int64(i)<<20); err != nil {
						errs <- fmt.Errorf("read %s: %w", path, err)
						return
					}
					if !bytes.Equal(got, chunk) {
						errs <- fmt.Errorf("read %s at MiB %d in round %d: other bytes than were written", path, i, round)
						return
					}
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("concurrent 1 MiB reads and writes through the mount did not finish within 2 minutes")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Views of the copy threshold (4 KiB) and more stay in shared memory,
	// as the protocol's own tests check.
	if client.largeViews.Load() == 0 {
		t.Error("no read through the mount returned a view of 4 KiB or more; the FUSE server did not use ReadView")
	}
}

// viewCountingClient is a protocol client that counts the views of 4 KiB
// or more that ReadView returns.
type viewCountingClient struct {
	*proto.Client
	largeViews atomic.Int64
}

func (c *viewCountingClient) ReadView(ctx context.Context, caller *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, size int) (fsapi.DataView, error) {
	view, err := c.Client.ReadView(ctx, caller, ino, h, off, size)
	if err == nil && len(view.Bytes()) >= 4<<10 {
		c.largeViews.Add(1)
	}
	return view, err
}

// mountOverProtocol serves a new engine on a bus endpoint and mounts it
// through a protocol client, which it returns with the mount's directory.
// The engine sends change notifications, as the storage daemon's does.
// Everything stops at the end of the test.
func mountOverProtocol(t *testing.T) (string, *viewCountingClient) {
	t.Helper()
	requireFUSE(t)
	socket := serveEngine(t)
	counting := &viewCountingClient{Client: dialEngine(t, socket)}
	_, dir, _ := mountForTest(t, counting, Options{})
	return dir, counting
}

// serveEngine serves a new engine, whose changes go to the server's
// Notifier, on a bus endpoint until the test ends, and returns the
// endpoint's path.
func serveEngine(t *testing.T) string {
	t.Helper()
	notifier := proto.NewNotifier(0)
	journal := &memJournal{}
	engine, err := fsys.New(fsys.Options{Journal: journal, Changed: notifier.Publish, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("fsys.New: %v", err)
	}
	socket := filepath.Join(t.TempDir(), "storage.sock")
	listener, err := bus.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- proto.Serve(ctx, listener, engine, proto.ServerOptions{
			TrustCallers: func(cred *unix.Ucred) bool { return int(cred.Uid) == os.Geteuid() },
			Notifier:     notifier,
			Logger:       slog.New(slog.DiscardHandler),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("proto.Serve: %v", err)
		}
	})
	return socket
}

// dialEngine connects a protocol client to socket until the test ends.
func dialEngine(t *testing.T, socket string) *proto.Client {
	t.Helper()
	client, err := proto.Dial(socket, proto.ClientOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}
