package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestSearchableByAll(t *testing.T) {
	for _, tc := range []struct {
		mode uint32
		want bool
	}{
		{0o755, true},
		{0o711, true},
		{0o1777, true},
		{0o750, false},
		{0o700, false},
		{0o705, false}, // the group may not search
		{0o655, false}, // the owner may not search
		{0o000, false},
	} {
		if got := searchableByAll(syscall.S_IFDIR | tc.mode); got != tc.want {
			t.Errorf("searchableByAll(%#o) = %v, want %v", tc.mode, got, tc.want)
		}
	}
}

// notifiedRawFS is a rawFS over fs whose replies use hour-long timeouts,
// as with change notifications.
func notifiedRawFS(fs fsapi.FS) *rawFS {
	timeouts := &cacheTimeouts{entry: time.Hour, attr: time.Hour}
	timeouts.notified.Store(true)
	return &rawFS{fs: fs, logger: slog.New(slog.DiscardHandler), timeouts: timeouts, groups: newGroupCache(groupCacheTTL), pages: newPageCache(), dirs: newDirModes(), closed: newClosedDirs()}
}

func lookupIn(r *rawFS, dir fsapi.Ino, name string) (fuse.Status, fuse.EntryOut) {
	var out fuse.EntryOut
	h := fuse.InHeader{NodeId: uint64(dir)}
	st := r.Lookup(nil, &h, name, &out)
	return st, out
}

// TestEntryTimeoutFollowsSearchPermission checks that the kernel may cache
// a name, or the absence of one, only in a directory that every user may
// search.
func TestEntryTimeoutFollowsSearchPermission(t *testing.T) {
	fs := newMemFS()
	ctx := context.Background()
	c := &fsapi.Caller{}
	for _, d := range []struct {
		name      string
		mode      uint32
		cacheable bool
	}{
		{"open", 0o755, true},
		{"search-only", 0o711, true},
		{"group", 0o750, false},
		{"private", 0o700, false},
	} {
		t.Run(d.name, func(t *testing.T) {
			r := notifiedRawFS(fs)
			dir, err := fs.Mkdir(ctx, c, fsapi.RootIno, d.name, d.mode)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fs.Mkdir(ctx, c, dir.Ino, "child", 0o755); err != nil {
				t.Fatal(err)
			}
			want := time.Duration(0)
			if d.cacheable {
				want = time.Hour
			}
			st, out := lookupIn(r, dir.Ino, "child")
			if st != fuse.OK || out.NodeId == 0 {
				t.Fatalf("lookup of child: %v, node %d", st, out.NodeId)
			}
			if got := out.EntryTimeout(); got != want {
				t.Errorf("entry timeout of a name in a %#o directory %v, want %v", d.mode, got, want)
			}
			if got := out.AttrTimeout(); got != time.Hour {
				t.Errorf("attribute timeout %v, want an hour in every directory", got)
			}
			st, out = lookupIn(r, dir.Ino, "missing")
			switch {
			case d.cacheable && (st != fuse.OK || out.NodeId != 0 || out.EntryTimeout() != time.Hour):
				t.Errorf("lookup of a missing name: %v, node %d, timeout %v; want a negative entry for an hour", st, out.NodeId, out.EntryTimeout())
			case !d.cacheable && st != fuse.ENOENT:
				t.Errorf("lookup of a missing name in a %#o directory: %v, want ENOENT without a negative entry", d.mode, st)
			}
		})
	}
}

// TestClosingDirectoryQueuesIt checks that a directory whose new mode no
// longer lets every user search it is queued for invalidating its names,
// and that other mode changes are not.
func TestClosingDirectoryQueuesIt(t *testing.T) {
	r := notifiedRawFS(newMemFS())
	dir := fsapi.Attr{Ino: 7, Mode: syscall.S_IFDIR | 0o755}
	r.noteAttr(&dir)
	dir.Mode = syscall.S_IFDIR | 0o711
	r.noteAttr(&dir)
	if got := r.closed.take(); len(got) != 0 {
		t.Fatalf("queued %v after 0755 became 0711, want nothing", got)
	}
	dir.Mode = syscall.S_IFDIR | 0o700
	r.noteAttr(&dir)
	if got := r.closed.take(); len(got) != 1 || got[0] != 7 {
		t.Fatalf("queued %v after 0711 became 0700, want [7]", got)
	}
	r.noteAttr(&dir)
	if got := r.closed.take(); len(got) != 0 {
		t.Errorf("queued %v for a directory that stayed 0700, want nothing", got)
	}
	// A directory first seen closed may have names cached from before the
	// kernel forgot and found it again.
	r.noteAttr(&fsapi.Attr{Ino: 8, Mode: syscall.S_IFDIR | 0o700})
	if got := r.closed.take(); len(got) != 1 || got[0] != 8 {
		t.Errorf("queued %v for a 0700 directory seen for the first time, want [8]", got)
	}
	r.noteAttr(&fsapi.Attr{Ino: 9, Mode: syscall.S_IFREG | 0o600})
	if got := r.closed.take(); len(got) != 0 {
		t.Errorf("queued %v for a regular file, want nothing", got)
	}
}

// TestChmodForgetsCachedNames checks on a mount that a chmod taking search
// permission away from a directory invalidates the names the kernel cached
// there, so that the next path walk sends a LOOKUP to the file system.
func TestChmodForgetsCachedNames(t *testing.T) {
	fs := newMemFS()
	_, dir, _ := mountForTest(t, quietFS{fs}, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour})
	sub, file := makeOpenDirWithFile(t, dir)
	// lookups counts the LOOKUPs of file's name; the kernel may look sub
	// up again after its chmod.
	lookups := func() int {
		n := 0
		for _, c := range fs.callsOf("lookup") {
			if c.name == "file" {
				n++
			}
		}
		return n
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	before := lookups()
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if got := lookups(); got != before {
		t.Fatalf("stat of a cached name in a 0755 directory sent %d lookups, want none", got-before)
	}

	if err := os.Chmod(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	// The server invalidates the names after the chmod has returned, in far
	// less than the hour for which the kernel caches here.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before = lookups()
		if _, err := os.Stat(file); err != nil {
			t.Fatal(err)
		}
		if lookups() > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stat after chmod 0700 still used the cached name after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	// Names that the kernel learns now are not cached at all.
	before = lookups()
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	if got := lookups(); got == before {
		t.Error("a second stat in the 0700 directory used a cached name")
	}
}

// quietFS is a memFS that claims to report changes and never reports one,
// so that the mount lets the kernel cache for the configured timeouts.
type quietFS struct{ *memFS }

func (quietFS) Subscribe(context.Context) (fsapi.Subscription, error) {
	return quietSubscription{}, nil
}

type quietSubscription struct{}

func (quietSubscription) Next(ctx context.Context) ([]fsapi.Change, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// makeOpenDirWithFile makes the 0755 directory sub under dir with the
// empty file sub/file, and returns both paths.
func makeOpenDirWithFile(t *testing.T, dir string) (sub, file string) {
	t.Helper()
	sub = filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(sub, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return sub, file
}

// statAsUser1000 runs stat(1) on path as uid 1000 and returns its error
// with its output.
func statAsUser1000(t *testing.T, path string) error {
	t.Helper()
	statBinary, err := exec.LookPath("stat")
	if err != nil {
		t.Fatalf("find stat(1): %v", err)
	}
	cmd := exec.Command(statBinary, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}}
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(output))
	}
	return nil
}

// TestOtherClientsChmodForgetsCachedNames checks that a chmod made through
// another client of the daemon, which the mount learns from a change
// notification, also makes the kernel forget the names it cached in the
// directory: a user who may no longer search it is refused.
func TestOtherClientsChmodForgetsCachedNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run stat(1) as uid 1000")
	}
	_, dir, other := notifiedMount(t, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour})
	ctx := context.Background()
	root := &fsapi.Caller{}
	_, file := makeOpenDirWithFile(t, dir)
	if err := statAsUser1000(t, file); err != nil {
		t.Fatalf("stat as uid 1000 in a 0755 directory: %v", err)
	}

	attr, err := other.Lookup(ctx, root, fsapi.RootIno, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.SetAttr(ctx, root, attr.Ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "uid 1000 refused in the directory another client closed", func() error {
		err := statAsUser1000(t, file)
		if err == nil {
			return errors.New("stat as uid 1000 still succeeds")
		}
		if !strings.Contains(err.Error(), "Permission denied") {
			return fmt.Errorf("stat as uid 1000: %v, want Permission denied", err)
		}
		return nil
	})
}
