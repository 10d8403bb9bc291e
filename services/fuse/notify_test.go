package fusefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/internal/testenv"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/proto"
)

// notifiedMount mounts an engine through the storage protocol, with change
// notifications and the given options, and returns the mount's directory
// and a second client of the same daemon.
func notifiedMount(t *testing.T, opts Options) (*Server, string, *proto.Client) {
	t.Helper()
	requireFUSE(t)
	socket := serveEngine(t)
	srv, dir, _ := mountForTest(t, dialEngine(t, socket), opts)
	return srv, dir, dialEngine(t, socket)
}

// waitFor polls check until it returns nil, for at most 10 seconds, far
// below the hour for which the tests let the kernel cache. A change that
// shows within that time was therefore invalidated, not expired.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	testenv.Poll(t, 10*time.Second, what, check)
}

// statIs returns a check that path exists with the mode and size wanted.
func statIs(path string, mode uint32, size int64) func() error {
	return func() error {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return err
		}
		if st.Mode&0o7777 != mode || st.Size != size {
			return fmt.Errorf("mode %#o and size %d, want %#o and %d", st.Mode&0o7777, st.Size, mode, size)
		}
		return nil
	}
}

// statMissing returns a check that path does not exist.
func statMissing(path string) func() error {
	return func() error {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err == nil {
			return errors.New("exists")
		}
		return err
	}
}

func TestMountSeesOtherClientChanges(t *testing.T) {
	srv, dir, other := notifiedMount(t, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour})
	if !srv.Notified() {
		t.Fatal("mount over a notifying daemon does not follow changes")
	}
	ctx := context.Background()
	root := &fsapi.Caller{}
	a := filepath.Join(dir, "a")

	// The failed lookup is cached as a negative entry for an hour.
	if err := statMissing(a)(); err != nil {
		t.Fatalf("stat a before create: %v", err)
	}
	attr, h, err := other.Create(ctx, root, fsapi.RootIno, "a", 0o644, syscall.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Write(ctx, root, attr.Ino, h, 0, []byte("one")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client created a", statIs(a, 0o644, 3))

	// The mount reads the file, so the kernel caches its data and size.
	if got, err := os.ReadFile(a); err != nil || string(got) != "one" {
		t.Fatalf("read a = %q, %v; want one", got, err)
	}
	if _, err := other.Write(ctx, root, attr.Ino, h, 0, []byte("two!")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client wrote", statIs(a, 0o644, 4))
	waitFor(t, "read after another client wrote", func() error {
		got, err := os.ReadFile(a)
		if err == nil && string(got) != "two!" {
			err = fmt.Errorf("content %q, want two!", got)
		}
		return err
	})

	if _, err := other.SetAttr(ctx, root, attr.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client chmodded", statIs(a, 0o600, 4))

	if _, err := other.SetAttr(ctx, root, attr.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client truncated", statIs(a, 0o600, 1))
	if err := other.Release(ctx, attr.Ino, h); err != nil {
		t.Fatal(err)
	}

	// b is looked up, and cached as missing, before the rename.
	b := filepath.Join(dir, "b")
	if err := statMissing(b)(); err != nil {
		t.Fatalf("stat b before rename: %v", err)
	}
	if err := other.Rename(ctx, root, fsapi.RootIno, "a", fsapi.RootIno, "b", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat of the old name after another client renamed", statMissing(a))
	waitFor(t, "stat of the new name after another client renamed", statIs(b, 0o600, 1))
	if _, err := os.Open(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open of the old name after the rename: %v, want ENOENT", err)
	}
	f, err := os.Open(b)
	if err != nil {
		t.Fatalf("open of the new name after the rename: %v", err)
	}
	f.Close()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != "b" {
		t.Errorf("readdir after the rename = %v, want only b", names)
	}

	if err := other.Unlink(ctx, root, fsapi.RootIno, "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client removed the file", statMissing(b))
	if _, err := os.Open(b); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open after the removal: %v, want ENOENT", err)
	}
}

func TestMountSeesOtherClientDirectoryChanges(t *testing.T) {
	_, dir, other := notifiedMount(t, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour})
	ctx := context.Background()
	root := &fsapi.Caller{}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "d"), &st); err != nil {
		t.Fatal(err)
	}
	d := fsapi.Ino(st.Ino)
	nested := filepath.Join(dir, "d", "sub")
	if err := statMissing(nested)(); err != nil {
		t.Fatalf("stat d/sub before mkdir: %v", err)
	}

	if _, err := other.Mkdir(ctx, root, d, "sub", 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client made a directory", func() error {
		var st unix.Stat_t
		if err := unix.Stat(nested, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return errors.New("not a directory")
		}
		return nil
	})
	waitFor(t, "link count of d after another client made a directory in it", func() error {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, "d"), &st); err != nil {
			return err
		}
		if st.Nlink != 3 {
			return fmt.Errorf("link count %d, want 3", st.Nlink)
		}
		return nil
	})

	if err := other.Rmdir(ctx, root, d, "sub"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stat after another client removed the directory", statMissing(nested))
}

func TestMountOfPlainFSUsesShortTimeouts(t *testing.T) {
	srv, _, _ := mountForTest(t, newMemFS(), Options{})
	if srv.Notified() {
		t.Error("mount of a file system without notifications claims to follow changes")
	}
	entry, attr := srv.timeouts.entryOut()
	if entry != ShortTimeout || attr != ShortTimeout {
		t.Errorf("timeouts %v and %v, want %v", entry, attr, ShortTimeout)
	}
	if got := srv.timeouts.negative(); got != 0 {
		t.Errorf("negative entry timeout %v, want 0", got)
	}
}

func TestMountOverProtocolDefaultsToLongTimeouts(t *testing.T) {
	srv, _, _ := notifiedMount(t, Options{})
	entry, attr := srv.timeouts.entryOut()
	if entry != NamedEntryTimeout || attr != DefaultTimeout {
		t.Errorf("timeouts %v and %v, want %v and %v", entry, attr, NamedEntryTimeout, DefaultTimeout)
	}
	if got := srv.timeouts.negative(); got != DefaultTimeout {
		t.Errorf("negative entry timeout %v, want %v", got, DefaultTimeout)
	}
}

// lookupReply runs the LOOKUP handler for name in the root.
func lookupReply(r *rawFS, name string) (fuse.Status, fuse.EntryOut) {
	var out fuse.EntryOut
	h := fuse.InHeader{NodeId: uint64(fsapi.RootIno)}
	st := r.Lookup(nil, &h, name, &out)
	return st, out
}

func TestLostChangesShortenTimeouts(t *testing.T) {
	fs := newMemFS()
	if _, _, err := fs.Create(context.Background(), &fsapi.Caller{}, fsapi.RootIno, "f", 0o644, 0); err != nil {
		t.Fatal(err)
	}
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Hour}
	timeouts.notified.Store(true)
	r := &rawFS{fs: fs, logger: slog.New(slog.DiscardHandler), timeouts: timeouts, groups: newGroupCache(groupCacheTTL), pages: newPageCache(), dirAttrs: newDirAttrs(), noCap: newNoCapability(), setID: newSetIDFiles(), names: newKnownNames(maxKnownNames)}

	st, out := lookupReply(r, "f")
	if st != fuse.OK || out.EntryTimeout() != time.Hour || out.AttrTimeout() != time.Hour {
		t.Errorf("lookup while notified: %v, timeouts %v and %v, want OK and an hour", st, out.EntryTimeout(), out.AttrTimeout())
	}
	st, out = lookupReply(r, "missing")
	if st != fuse.OK || out.NodeId != 0 || out.EntryTimeout() != DefaultTimeout {
		t.Errorf("lookup of a missing name while notified: %v, node %d, timeout %v; want a negative entry for %v", st, out.NodeId, out.EntryTimeout(), DefaultTimeout)
	}

	// What Server.forgetAll does at a loss, before it invalidates the names.
	keys, inos := r.names.takeAll(timeouts.lost)
	if len(keys) != 1 || keys[0] != (nameKey{fsapi.RootIno, "f"}) || len(inos) != 1 {
		t.Errorf("names known before the loss: %v and inodes %v, want f in the root", keys, inos)
	}
	st, out = lookupReply(r, "f")
	if st != fuse.OK || out.EntryTimeout() != ShortTimeout || out.AttrTimeout() != ShortTimeout {
		t.Errorf("lookup after lost changes: %v, timeouts %v and %v, want OK and %v", st, out.EntryTimeout(), out.AttrTimeout(), ShortTimeout)
	}
	if st, _ := lookupReply(r, "missing"); st != fuse.ENOENT {
		t.Errorf("lookup of a missing name after lost changes: %v, want ENOENT", st)
	}

	// Once every long timeout given out before the loss has expired, the
	// long timeouts return.
	timeouts.shortUntil.Store(time.Now().Add(-time.Second).UnixNano())
	if st, out := lookupReply(r, "f"); st != fuse.OK || out.EntryTimeout() != time.Hour {
		t.Errorf("lookup after the short period: %v, timeout %v, want an hour", st, out.EntryTimeout())
	}
}

// endedSubscription reports one batch of changes and then ends.
type endedSubscription struct{ batches [][]fsapi.Change }

func (s *endedSubscription) Next(ctx context.Context) ([]fsapi.Change, error) {
	if len(s.batches) == 0 {
		return nil, errors.New("connection down")
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

func TestEndedSubscriptionShortensTimeouts(t *testing.T) {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Hour}
	timeouts.notified.Store(true)
	s := &Server{raw: &rawFS{dirAttrs: newDirAttrs(), noCap: newNoCapability(), setID: newSetIDFiles(), names: newKnownNames(maxKnownNames)}, logger: slog.New(slog.DiscardHandler), timeouts: timeouts}
	s.raw.noCap.add(5, s.raw.noCap.current())
	s.raw.dirAttrs.begin(6)(fsapi.Attr{Ino: 6})
	s.followChanges(context.Background(), &endedSubscription{batches: [][]fsapi.Change{{{Kind: fsapi.ChangeAll}}}}, timeouts)
	if s.raw.noCap.has(5, time.Hour) {
		t.Error("inode 5 is still known to have no capability after the subscription ended")
	}
	if _, ok := s.raw.dirAttrs.take(6, time.Hour); ok {
		t.Error("the attributes of directory 6 are still kept after the subscription ended")
	}
	if s.Notified() {
		t.Error("Notified after the subscription ended")
	}
	if entry, _ := timeouts.entryOut(); entry != ShortTimeout {
		t.Errorf("entry timeout %v after the subscription ended, want %v", entry, ShortTimeout)
	}
}

// manualSubscription reports the batches that the test sends on its
// channel.
type manualSubscription struct{ batches chan []fsapi.Change }

func (s *manualSubscription) Next(ctx context.Context) ([]fsapi.Change, error) {
	select {
	case b := <-s.batches:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// manuallyNotifiedFS is a memFS whose subscription reports only what the
// test sends, so that the test can change the tree without a report.
type manuallyNotifiedFS struct {
	*memFS
	sub *manualSubscription
}

func (f manuallyNotifiedFS) Subscribe(context.Context) (fsapi.Subscription, error) {
	return f.sub, nil
}

// TestLostChangesInvalidateNames checks that after lost notifications the
// kernel drops every name it cached with the long entry timeout, at once
// and not an hour later.
func TestLostChangesInvalidateNames(t *testing.T) {
	fs := manuallyNotifiedFS{memFS: newMemFS(), sub: &manualSubscription{batches: make(chan []fsapi.Change)}}
	srv, dir, _ := mountForTest(t, fs, Options{})
	if !srv.Notified() {
		t.Fatal("the mount does not follow the file system's changes")
	}
	root := &fsapi.Caller{}
	d, err := fs.Mkdir(context.Background(), root, fsapi.RootIno, "d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone", "moved"} {
		if _, _, err := fs.Create(context.Background(), root, d.Ino, name, 0o644, 0); err != nil {
			t.Fatal(err)
		}
		if err := statIs(filepath.Join(dir, "d", name), 0o644, 0)(); err != nil {
			t.Fatal(err)
		}
	}

	// Changes that no notification reports: the kernel keeps the names.
	if err := fs.Unlink(context.Background(), root, d.Ino, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(context.Background(), root, d.Ino, "moved", fsapi.RootIno, "moved", 0); err != nil {
		t.Fatal(err)
	}
	if err := statIs(filepath.Join(dir, "d", "gone"), 0o644, 0)(); err != nil {
		t.Fatalf("the kernel did not cache the removed name: %v", err)
	}

	fs.sub.batches <- []fsapi.Change{{Kind: fsapi.ChangeAll}}
	for _, name := range []string{"gone", "moved"} {
		waitFor(t, "d/"+name+" is gone after lost notifications", statMissing(filepath.Join(dir, "d", name)))
	}
	if err := statIs(filepath.Join(dir, "moved"), 0o644, 0)(); err != nil {
		t.Errorf("moved after lost notifications: %v", err)
	}
}
