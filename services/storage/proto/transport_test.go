package proto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestConcurrentMixedRequests(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			if err := mixedRequests(ctx, client, c, w); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	h, err := client.OpenDir(ctx, c, fsapi.RootIno, 0)
	if err != nil {
		t.Fatalf("OpenDir: %v", err)
	}
	entries, err := client.ReadDir(ctx, c, fsapi.RootIno, h, 0, MaxDirEntries)
	if err != nil || len(entries) != workers {
		t.Errorf("ReadDir of the root = %d entries, %v; expected %d", len(entries), err, workers)
	}
}

// mixedRequests creates a file of its own, writes and reads it in several
// sizes, and mixes in metadata requests.
func mixedRequests(ctx context.Context, client *Client, c *fsapi.Caller, worker int) error {
	name := fmt.Sprintf("file-%02d", worker)
	attr, h, err := client.Create(ctx, c, fsapi.RootIno, name, 0o644, syscall.O_RDWR)
	if err != nil {
		return err
	}
	sizes := []int{1, 4096, 65536 + 3}
	if worker%8 == 0 {
		sizes = append(sizes, fsapi.MaxWrite)
	}
	for i, size := range sizes {
		data := bytes.Repeat([]byte{byte(worker), byte(i)}, size/2+1)[:size]
		if n, err := client.Write(ctx, c, attr.Ino, h, 0, data); err != nil || n != size {
			return fmt.Errorf("write of %d bytes = %d, %w", size, n, err)
		}
		dest := make([]byte, size)
		if n, err := client.Read(ctx, c, attr.Ino, h, 0, dest); err != nil || n != size || !bytes.Equal(dest, data) {
			return fmt.Errorf("read of %d bytes = %d, %v, equal %t", size, n, err, bytes.Equal(dest, data))
		}
		got, err := client.Lookup(ctx, c, fsapi.RootIno, name)
		if err != nil || got.Ino != attr.Ino {
			return fmt.Errorf("lookup = ino %d, %w; expected ino %d", got.Ino, err, attr.Ino)
		}
		value := []byte(fmt.Sprintf("%d/%d", worker, i))
		if err := client.SetXattr(ctx, c, attr.Ino, "user.v", value, 0); err != nil {
			return err
		}
		if got, err := client.GetXattr(ctx, c, attr.Ino, "user.v"); err != nil || !bytes.Equal(got, value) {
			return fmt.Errorf("getxattr = %q, %v; expected %q", got, err, value)
		}
		if _, err := client.GetAttr(ctx, c, fsapi.RootIno); err != nil {
			return err
		}
		if _, err := client.Lookup(ctx, c, fsapi.RootIno, "missing"); !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("lookup of a missing name: %v, expected ENOENT", err)
		}
	}
	return client.Release(ctx, attr.Ino, h)
}

// lockedFile creates a file and takes a write lock on [0, 99] for owner 1.
func lockedFile(t *testing.T, client *Client) (fsapi.Attr, fsapi.HandleID, fsapi.Lock) {
	t.Helper()
	ctx := context.Background()
	attr, h, err := client.Create(ctx, &fsapi.Caller{}, fsapi.RootIno, "locked", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	lock := fsapi.Lock{Start: 0, End: 99, Type: syscall.F_WRLCK}
	if err := client.SetLk(ctx, &fsapi.Caller{}, attr.Ino, h, 1, lock, false); err != nil {
		t.Fatalf("SetLk: %v", err)
	}
	return attr, h, lock
}

func TestWaitingSetLkDoesNotBlockOthers(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	attr, h, lock := lockedFile(t, client)

	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan error, 1)
	go func() { waited <- client.SetLk(waitCtx, c, attr.Ino, h, 2, lock, true) }()
	eventually(t, "the file system has the waiting SetLk", func() bool { return len(srv.fs.callsOf(OpSetLk)) == 2 })

	within(t, 5*time.Second, "requests while a SetLk waits", func() {
		for range 50 {
			if _, err := client.GetAttr(ctx, c, attr.Ino); err != nil {
				t.Errorf("GetAttr while a SetLk waits: %v", err)
				return
			}
		}
		if _, err := client.Write(ctx, c, attr.Ino, h, 0, []byte("still served")); err != nil {
			t.Errorf("Write while a SetLk waits: %v", err)
		}
	})
	select {
	case err := <-waited:
		t.Fatalf("SetLk returned %v while the lock is held", err)
	default:
	}

	cancel()
	var err error
	within(t, 5*time.Second, "SetLk after its context ended", func() { err = <-waited })
	if !errors.Is(err, syscall.EINTR) || !errors.Is(err, context.Canceled) {
		t.Errorf("SetLk after cancel = %v, expected EINTR and context.Canceled", err)
	}
	eventually(t, "the server cancels the waiting SetLk", func() bool { return srv.fs.interruptedWaits() == 1 })

	// The connection still works after the interrupt and its late response.
	if _, err := client.GetAttr(ctx, c, attr.Ino); err != nil {
		t.Errorf("GetAttr after the interrupt: %v", err)
	}
}

func TestWaitingSetLkIsGranted(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	attr, h, lock := lockedFile(t, client)

	waited := make(chan error, 1)
	go func() { waited <- client.SetLk(ctx, c, attr.Ino, h, 2, lock, true) }()
	eventually(t, "the file system has the waiting SetLk", func() bool { return len(srv.fs.callsOf(OpSetLk)) == 2 })

	unlock := lock
	unlock.Type = syscall.F_UNLCK
	if err := client.SetLk(ctx, c, attr.Ino, h, 1, unlock, false); err != nil {
		t.Fatalf("SetLk unlock: %v", err)
	}
	var err error
	within(t, 5*time.Second, "the waiting SetLk after the unlock", func() { err = <-waited })
	if err != nil {
		t.Errorf("waiting SetLk = %v, expected the lock", err)
	}
}

func TestServerStopFailsClientCalls(t *testing.T) {
	// A call that its own goroutine runs in the daemon cannot fail early.
	handleRequestsInDaemon(t)
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	letGo := srv.fs.hold(OpGetAttr)
	defer letGo()
	pending := make(chan error, 1)
	go func() {
		_, err := client.GetAttr(ctx, c, fsapi.RootIno)
		pending <- err
	}()
	eventually(t, "the file system has the GetAttr", func() bool { return len(srv.fs.callsOf(OpGetAttr)) == 1 })

	// Serve returns only once the held GetAttr ends, so stop in the
	// background.
	go srv.stop()

	var err error
	within(t, 2*time.Second, "the pending call after the server stopped", func() { err = <-pending })
	checkConnDown(t, "pending GetAttr", err)

	within(t, 2*time.Second, "a new call after the server stopped", func() {
		_, err = client.Lookup(ctx, c, fsapi.RootIno, "x")
	})
	checkConnDown(t, "new Lookup", err)
}

func checkConnDown(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("%s = %v, expected EIO", what, err)
	}
	if !errors.Is(err, ErrConnDown) || !strings.Contains(fmt.Sprint(err), "storage daemon connection is down") {
		t.Errorf("%s = %v, expected it to say the connection is down", what, err)
	}
}

func TestClientCloseFailsLaterCalls(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client, err := Dial(srv.path, ClientOptions{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := client.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = client.GetAttr(context.Background(), &fsapi.Caller{}, fsapi.RootIno)
	checkConnDown(t, "GetAttr after Close", err)
}

func TestDialMissingSocket(t *testing.T) {
	path := t.TempDir() + "/none.sock"
	_, err := Dial(path, ClientOptions{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Dial of a missing socket = %v, expected an error naming %s", err, path)
	}
}

func TestCancelledContextSendsNothing(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := client.GetAttr(ctx, &fsapi.Caller{}, fsapi.RootIno)
	if !errors.Is(err, syscall.EINTR) || !errors.Is(err, context.Canceled) {
		t.Errorf("GetAttr with a cancelled context = %v, expected EINTR", err)
	}
	if n := len(srv.fs.allCalls()); n != 0 {
		t.Errorf("file system saw %d calls, expected none", n)
	}
}

func TestDisconnectReleasesHandlesAndLocks(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	ctx := context.Background()
	c := &fsapi.Caller{}
	a := dial(t, srv.path)

	attr, h1, err := a.Create(ctx, c, fsapi.RootIno, "f", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	h2, err := a.Open(ctx, c, attr.Ino, syscall.O_RDONLY)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	hd, err := a.OpenDir(ctx, c, fsapi.RootIno, 0)
	if err != nil {
		t.Fatalf("OpenDir: %v", err)
	}
	h3, err := a.Open(ctx, c, attr.Ino, syscall.O_RDONLY)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := a.Release(ctx, attr.Ino, h3); err != nil {
		t.Fatalf("Release: %v", err)
	}
	lock := fsapi.Lock{Start: 10, End: 20, Type: syscall.F_WRLCK}
	if err := a.SetLk(ctx, c, attr.Ino, h1, 7, lock, false); err != nil {
		t.Fatalf("SetLk: %v", err)
	}
	if err := a.Flock(ctx, c, attr.Ino, h2, syscall.LOCK_EX, false); err != nil {
		t.Fatalf("Flock: %v", err)
	}

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want := []fsapi.HandleID{h1, h2, h3, hd}
	slices.Sort(want)
	eventually(t, "the server releases the handles", func() bool {
		return len(srv.fs.releasedHandles()) >= len(want)
	})
	time.Sleep(20 * time.Millisecond) // let a wrong extra release show up
	got := srv.fs.releasedHandles()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("released handles %v, expected each of %v once", got, want)
	}

	unlocks := 0
	for _, r := range srv.fs.callsOf(OpSetLk) {
		if r.Lock.Type == syscall.F_UNLCK && r.Owner == 7 && r.Handle == h1 {
			unlocks++
		}
	}
	if unlocks != 1 {
		t.Errorf("server unlocked owner 7 %d times, expected once", unlocks)
	}

	// Another connection now gets both locks without waiting.
	b := dial(t, srv.path)
	hb, err := b.Open(ctx, c, attr.Ino, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := b.SetLk(ctx, c, attr.Ino, hb, 8, lock, false); err != nil {
		t.Errorf("SetLk after the holder disconnected: %v", err)
	}
	if err := b.Flock(ctx, c, attr.Ino, hb, syscall.LOCK_EX, false); err != nil {
		t.Errorf("Flock after the holder disconnected: %v", err)
	}
	if !strings.Contains(srv.logs.String(), "connection closed") {
		t.Errorf("server did not log the closed connection; logs:\n%s", srv.logs)
	}
}

func TestForeignHandleIsEBADF(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	ctx := context.Background()
	c := &fsapi.Caller{}
	a := dial(t, srv.path)
	b := dial(t, srv.path)

	attr, h, err := a.Create(ctx, c, fsapi.RootIno, "f", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	hd, err := a.OpenDir(ctx, c, fsapi.RootIno, 0)
	if err != nil {
		t.Fatalf("OpenDir: %v", err)
	}
	lock := fsapi.Lock{Start: 0, End: 1, Type: syscall.F_RDLCK}
	cases := []struct {
		name string
		err  error
	}{
		{"read on another connection", errOnly(b.Read(ctx, c, attr.Ino, h, 0, make([]byte, 8)))},
		{"write on another connection", errOnly(b.Write(ctx, c, attr.Ino, h, 0, []byte("x")))},
		{"setattr on another connection", errOnly(b.SetAttr(ctx, c, attr.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Handle: h}))},
		{"setlk on another connection", b.SetLk(ctx, c, attr.Ino, h, 1, lock, false)},
		{"flock on another connection", b.Flock(ctx, c, attr.Ino, h, syscall.LOCK_SH, false)},
		{"copy into another connection's handle", errOnly(b.CopyFileRange(ctx, c, attr.Ino, h, 0, attr.Ino, h, 1, 1, 0))},
		{"readdir on another connection", errOnly(b.ReadDir(ctx, c, fsapi.RootIno, hd, 0, 10))},
		{"release on another connection", b.Release(ctx, attr.Ino, h)},
		{"releasedir on another connection", b.ReleaseDir(ctx, fsapi.RootIno, hd)},
		{"handle with another inode", errOnly(a.Read(ctx, c, fsapi.RootIno, h, 0, make([]byte, 8)))},
		{"file handle as a directory", errOnly(a.ReadDir(ctx, c, attr.Ino, h, 0, 10))},
		{"directory handle as a file", errOnly(a.Read(ctx, c, fsapi.RootIno, hd, 0, make([]byte, 8)))},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, syscall.EBADF) {
			t.Errorf("%s = %v, expected EBADF", tc.name, tc.err)
		}
	}
	for _, op := range []Op{OpRead, OpWrite, OpSetAttr, OpSetLk, OpFlock, OpCopyFileRange, OpReadDir, OpRelease, OpReleaseDir} {
		if calls := srv.fs.callsOf(op); len(calls) != 0 {
			t.Errorf("file system saw %d %s calls with a foreign handle", len(calls), op)
		}
	}

	// The owner can still use and release the handle, and not after that.
	if _, err := a.Write(ctx, c, attr.Ino, h, 0, []byte("x")); err != nil {
		t.Errorf("Write by the owner: %v", err)
	}
	if err := a.Release(ctx, attr.Ino, h); err != nil {
		t.Errorf("Release by the owner: %v", err)
	}
	if _, err := a.Write(ctx, c, attr.Ino, h, 0, []byte("x")); !errors.Is(err, syscall.EBADF) {
		t.Errorf("Write after Release = %v, expected EBADF", err)
	}
}

func TestAbandonedOpenIsReleased(t *testing.T) {
	// A call that its own goroutine runs in the daemon cannot be abandoned.
	handleRequestsInDaemon(t)
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	attr, h, err := client.Create(ctx, c, fsapi.RootIno, "f", 0o644, 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	letGo := srv.fs.hold(OpOpen)
	defer letGo()
	openCtx, cancel := context.WithCancel(ctx)
	opened := make(chan error, 1)
	go func() {
		_, err := client.Open(openCtx, c, attr.Ino, 0)
		opened <- err
	}()
	eventually(t, "the file system has the Open", func() bool { return len(srv.fs.callsOf(OpOpen)) == 1 })
	cancel()
	within(t, 2*time.Second, "Open after its context ended", func() { err = <-opened })
	if !errors.Is(err, syscall.EINTR) {
		t.Errorf("abandoned Open = %v, expected EINTR", err)
	}

	// The file system opens the file after all, and the client releases
	// the handle that no caller received.
	letGo()
	eventually(t, "the client releases the late handle", func() bool {
		return slices.Contains(srv.fs.releasedHandles(), h+1)
	})
}

func TestErrorWithoutErrnoBecomesEIO(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	_, err := client.Lookup(context.Background(), &fsapi.Caller{}, fsapi.RootIno, "bad-error")
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("Lookup = %v, expected EIO", err)
	}
	if errors.Is(err, ErrConnDown) {
		t.Errorf("Lookup = %v, which says the connection is down", err)
	}
	if len(srv.logs.Lines("without an errno", "op=lookup")) != 1 {
		t.Errorf("server did not log the error once; logs:\n%s", srv.logs)
	}
}

// TestQuickRequestsRunInline checks that a quick request on an idle
// connection runs in the reading goroutine, and that one arriving while
// another request runs gets its own goroutine, so that the reader stays
// free for interrupts.
func TestQuickRequestsRunInline(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}

	const rounds = 10
	for range rounds {
		if _, err := client.GetAttr(ctx, c, fsapi.RootIno); err != nil {
			t.Fatalf("GetAttr: %v", err)
		}
	}
	if n := srv.srv.inline.Load(); n != rounds {
		t.Errorf("%d of %d GetAttr requests on an idle connection ran inline", n, rounds)
	}

	letGo := srv.fs.hold(OpSyncFS)
	defer letGo()
	synced := make(chan error, 1)
	go func() { synced <- client.SyncFS(ctx, c) }()
	eventually(t, "the file system has the SyncFS", func() bool { return len(srv.fs.callsOf(OpSyncFS)) == 1 })
	before := srv.srv.inline.Load()
	if _, err := client.GetAttr(ctx, c, fsapi.RootIno); err != nil {
		t.Fatalf("GetAttr beside a running SyncFS: %v", err)
	}
	if n := srv.srv.inline.Load() - before; n != 0 {
		t.Errorf("GetAttr beside a running SyncFS ran inline")
	}
	letGo()
	if err := <-synced; err != nil {
		t.Errorf("SyncFS: %v", err)
	}
}
