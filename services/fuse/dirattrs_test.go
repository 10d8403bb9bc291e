package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestDirAttrsKeepLoneChange(t *testing.T) {
	d := newDirAttrs()
	attr := fsapi.Attr{Ino: 5, Mode: syscall.S_IFDIR | 0o755, Mtime: 42}
	d.begin(5)(attr)
	got, ok := d.take(5, time.Hour)
	if !ok || got != attr {
		t.Fatalf("take after a lone change = %+v, %v; expected %+v, true", got, ok, attr)
	}
	if _, ok := d.take(5, time.Hour); ok {
		t.Error("a second take found the attributes again")
	}
}

func TestDirAttrsDropOverlappingChanges(t *testing.T) {
	d := newDirAttrs()
	endFirst := d.begin(5)
	endSecond := d.begin(5)
	endSecond(fsapi.Attr{Ino: 5, Mtime: 2})
	endFirst(fsapi.Attr{Ino: 5, Mtime: 1})
	if got, ok := d.take(5, time.Hour); ok {
		t.Errorf("take after two overlapping changes = %+v; expected nothing", got)
	}
	// The next lone change is kept again.
	d.begin(5)(fsapi.Attr{Ino: 5, Mtime: 3})
	if got, ok := d.take(5, time.Hour); !ok || got.Mtime != 3 {
		t.Errorf("take after the next lone change = %+v, %v; expected mtime 3", got, ok)
	}
}

func TestDirAttrsDropDuringChange(t *testing.T) {
	d := newDirAttrs()
	end := d.begin(5)
	d.drop(5)
	end(fsapi.Attr{Ino: 5, Mtime: 1})
	if got, ok := d.take(5, time.Hour); ok {
		t.Errorf("take after a drop during the change = %+v; expected nothing", got)
	}
}

func TestDirAttrsDropAll(t *testing.T) {
	d := newDirAttrs()
	d.begin(5)(fsapi.Attr{Ino: 5})
	d.begin(6)(fsapi.Attr{Ino: 6})
	d.dropAll()
	for _, dir := range []fsapi.Ino{5, 6} {
		if _, ok := d.take(dir, time.Hour); ok {
			t.Errorf("take of directory %d after dropAll found attributes", dir)
		}
	}
}

func TestDirAttrsExpire(t *testing.T) {
	d := newDirAttrs()
	d.begin(5)(fsapi.Attr{Ino: 5})
	time.Sleep(time.Millisecond)
	if _, ok := d.take(5, time.Millisecond); ok {
		t.Error("take returned attributes older than maxAge")
	}
}

func TestDirAttrsIgnoreOtherInode(t *testing.T) {
	d := newDirAttrs()
	d.begin(5)(fsapi.Attr{}) // the change returned none
	d.begin(6)(fsapi.Attr{Ino: 7})
	for _, dir := range []fsapi.Ino{5, 6} {
		if _, ok := d.take(dir, time.Hour); ok {
			t.Errorf("take of directory %d found attributes that do not describe it", dir)
		}
	}
}

// reportingFS is a memFS that returns a directory's attributes with each
// change of its entries, as fsapi.DirReporter.
type reportingFS struct{ *memFS }

var _ fsapi.DirReporter = reportingFS{}

func (f reportingFS) dirAttr(ino fsapi.Ino) fsapi.Attr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inodes[ino].attr
}

func (f reportingFS) CreateAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, flags uint32) (fsapi.Attr, fsapi.HandleID, fsapi.Attr, error) {
	attr, h, err := f.Create(ctx, c, parent, name, mode, flags)
	if err != nil {
		return fsapi.Attr{}, 0, fsapi.Attr{}, err
	}
	return attr, h, f.dirAttr(parent), nil
}

func (f reportingFS) MkdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, fsapi.Attr, error) {
	attr, err := f.Mkdir(ctx, c, parent, name, mode)
	if err != nil {
		return fsapi.Attr{}, fsapi.Attr{}, err
	}
	return attr, f.dirAttr(parent), nil
}

func (f reportingFS) UnlinkAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	if err := f.Unlink(ctx, c, parent, name); err != nil {
		return fsapi.Attr{}, err
	}
	return f.dirAttr(parent), nil
}

func (f reportingFS) RmdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	if err := f.Rmdir(ctx, c, parent, name); err != nil {
		return fsapi.Attr{}, err
	}
	return f.dirAttr(parent), nil
}

// TestGetAttrAfterChangeStaysLocal checks on a mount that the server
// replies to the kernel's GETATTR of a directory after a create, mkdir,
// unlink or rmdir in it with the attributes that the change returned. The
// file system gets no GetAttr of the directory, and stat shows its new
// attributes.
func TestGetAttrAfterChangeStaysLocal(t *testing.T) {
	fs := reportingFS{newMemFS()}
	_, mnt, _ := mountForTest(t, fs, Options{})
	dir := filepath.Join(mnt, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dirIno := fsapi.Ino(st.Ino)
	getattrs := func() int {
		n := 0
		for _, c := range fs.callsOf("getattr") {
			if c.ino == dirIno {
				n++
			}
		}
		return n
	}

	for _, change := range []struct {
		name string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(filepath.Join(dir, "file"), nil, 0o644) }},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(dir, "sub"), 0o755) }},
		{"unlink", func() error { return os.Remove(filepath.Join(dir, "file")) }},
		{"rmdir", func() error { return os.Remove(filepath.Join(dir, "sub")) }},
	} {
		before := getattrs()
		if err := change.do(); err != nil {
			t.Fatalf("%s: %v", change.name, err)
		}
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatalf("stat after %s: %v", change.name, err)
		}
		if got := getattrs() - before; got != 0 {
			t.Errorf("%s and stat sent %d GetAttr calls of the directory to the file system, expected none", change.name, got)
		}
		want := fs.dirAttr(dirIno)
		if sec, nsec := splitNanos(want.Mtime); st.Mtim.Sec != int64(sec) || st.Mtim.Nsec != int64(nsec) {
			t.Errorf("mtime after %s %d.%09d, expected the file system's %d.%09d", change.name, st.Mtim.Sec, st.Mtim.Nsec, sec, nsec)
		}
		if st.Nlink != uint64(want.Nlink) {
			t.Errorf("nlink after %s %d, expected the file system's %d", change.name, st.Nlink, want.Nlink)
		}
	}
}

// TestOtherClientChangeDropsDirAttrs checks that the attributes a change
// through the mount returned are not served after another client changed
// the directory too: the notification drops them.
func TestOtherClientChangeDropsDirAttrs(t *testing.T) {
	_, mnt, other := notifiedMount(t, Options{EntryTimeout: time.Hour, AttrTimeout: time.Hour})
	ctx := context.Background()
	root := &fsapi.Caller{}
	dir := filepath.Join(mnt, "dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The unlink leaves the directory's new attributes in the server, and
	// no GETATTR has taken them yet.
	if err := os.Remove(filepath.Join(dir, "file")); err != nil {
		t.Fatal(err)
	}

	attr, err := other.Lookup(ctx, root, fsapi.RootIno, "dir")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Mkdir(ctx, root, attr.Ino, "sub", 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other client's mkdir in the directory's link count", func() error {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return err
		}
		if st.Nlink != 3 {
			return fmt.Errorf("nlink %d, expected 3", st.Nlink)
		}
		return nil
	})
}

// TestRmdirDropsRemovedDirAttrs checks that the attributes kept for a
// directory are not served after the directory itself was removed through
// the mount: fstat of an open descriptor of it reports no links.
func TestRmdirDropsRemovedDirAttrs(t *testing.T) {
	fs := reportingFS{newMemFS()}
	_, mnt, _ := mountForTest(t, fs, Options{})
	sub := filepath.Join(mnt, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(sub, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The unlink leaves the attributes of sub in the server.
	if err := os.Remove(filepath.Join(sub, "file")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 0 {
		t.Errorf("fstat of the removed directory reports %d links, expected 0", st.Nlink)
	}
}
