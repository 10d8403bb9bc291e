package proto

import (
	"bytes"
	"context"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestLocalClientHandlesOwnRequest(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	// The daemon accepts the connection after Dial returns, and a client
	// hands its requests over only once it has.
	eventually(t, "the daemon has accepted the connection", func() bool { return client.localServer() != nil })

	letGo := srv.fs.hold(OpGetAttr)
	defer letGo()
	done := make(chan error, 1)
	go func() {
		_, err := client.GetAttr(ctx, c, fsapi.RootIno)
		done <- err
	}()
	eventually(t, "the file system has the GetAttr", func() bool { return len(srv.fs.callsOf(OpGetAttr)) == 1 })

	var stack string
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "(*memFS).GetAttr") {
			stack = g
		}
	}
	if !strings.Contains(stack, "(*Client).do") {
		t.Errorf("GetAttr runs in a goroutine of the daemon, expected the caller's:\n%s", stack)
	}
	letGo()
	if err := <-done; err != nil {
		t.Errorf("GetAttr: %v", err)
	}
}

// TestLocalClientUnderLoad runs many callers at once on one connection,
// with reads whose views stay held for a while, so that the response ring
// fills up and senders wait for space while the receivers sleep. With only
// quick requests, every response goes out quietly. Larger reads run in
// goroutines of the daemon, whose responses wake the client's reader.
func TestLocalClientUnderLoad(t *testing.T) {
	t.Run("quick", func(t *testing.T) { testLocalClientUnderLoad(t, 2) })
	t.Run("mixed", func(t *testing.T) { testLocalClientUnderLoad(t, 3) })
}

func testLocalClientUnderLoad(t *testing.T, kinds int) {
	srv := startServer(t, newMemFS(), ServerOptions{})
	client := dial(t, srv.path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &fsapi.Caller{}
	eventually(t, "the daemon has accepted the connection", func() bool { return client.localServer() != nil })

	const chunk = 64 << 10
	content := make([]byte, 32*chunk)
	for i := range content {
		content[i] = byte(i / chunk)
	}
	attr, h, err := client.Create(ctx, c, fsapi.RootIno, "f", 0o644, 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for off := 0; off < len(content); off += chunk {
		if _, err := client.Write(ctx, c, attr.Ino, h, int64(off), content[off:off+chunk]); err != nil {
			t.Fatalf("Write at %d: %v", off, err)
		}
	}

	const callers, rounds = 96, 40
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for range rounds {
				n := rng.IntN(len(content) / chunk)
				switch rng.IntN(kinds) {
				case 0:
					view, err := client.ReadView(ctx, c, attr.Ino, h, int64(n*chunk), chunk)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(view.Bytes(), content[n*chunk:(n+1)*chunk]) {
						t.Errorf("chunk %d read back different", n)
					}
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					view.Release()
				case 1:
					if _, err := client.GetAttr(ctx, c, attr.Ino); err != nil {
						errs <- err
						return
					}
				case 2:
					dest := make([]byte, 4*chunk)
					if _, err := client.Read(ctx, c, attr.Ino, h, 0, dest); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		t.Fatal("callers still running after 20 s")
	}
	close(errs)
	for err := range errs {
		t.Errorf("request failed: %v", err)
	}
}

// With every slot taken, a request may have to wait for one. The caller
// then leaves its request to a goroutine of the daemon, so that its context
// still ends its wait.
func TestLocalClientWaitsForSlotInterruptibly(t *testing.T) {
	srv := startServer(t, newMemFS(), ServerOptions{MaxInflight: 1})
	client := dial(t, srv.path)
	ctx := context.Background()
	c := &fsapi.Caller{}
	eventually(t, "the daemon has accepted the connection", func() bool { return client.localServer() != nil })
	attr, h, err := client.Create(ctx, c, fsapi.RootIno, "f", 0o644, 0)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	letGo := srv.fs.hold(OpFsync)
	defer letGo()
	synced := make(chan error, 1)
	go func() { synced <- client.Fsync(ctx, c, attr.Ino, h, false) }()
	eventually(t, "the file system has the Fsync", func() bool { return len(srv.fs.callsOf(OpFsync)) == 1 })

	lookupCtx, cancel := context.WithCancel(ctx)
	looked := make(chan error, 1)
	go func() {
		_, err := client.Lookup(lookupCtx, c, fsapi.RootIno, "f")
		looked <- err
	}()
	select {
	case err := <-looked:
		t.Fatalf("Lookup returned %v while the only slot was taken", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	within(t, 2*time.Second, "Lookup after its context ended", func() { err = <-looked })
	if errnoOf(err) != syscall.EINTR {
		t.Errorf("Lookup after its context ended = %v, expected EINTR", err)
	}

	letGo()
	if err := <-synced; err != nil {
		t.Errorf("Fsync: %v", err)
	}
	if _, err := client.Lookup(ctx, c, fsapi.RootIno, "f"); err != nil {
		t.Errorf("Lookup after the slot came free: %v", err)
	}
}
