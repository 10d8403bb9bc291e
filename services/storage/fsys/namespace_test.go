package fsys

import (
	"strings"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestNewRootDirectory(t *testing.T) {
	j := &memJournal{}
	e, err := New(testOptions(t, j))
	mustOK(t, err)

	attr := getattr(t, e, fsapi.RootIno)
	if attr.Mode != syscall.S_IFDIR|0o755 || attr.UID != 0 || attr.GID != 0 || attr.Nlink != 2 {
		t.Errorf("root = %+v, expected a directory 0755 owned by 0:0 with 2 links", attr)
	}
	if ent := j.lastEntry(t); ent.Op != OpInitRoot || len(j.snapshot()) != 1 {
		t.Errorf("journal holds %d entries, last %s, expected one init-root entry", len(j.snapshot()), ent.Op)
	}
	compareEngines(t, "replay of the root", e, replay(t, j.snapshot()))
}

func TestNewRootOwner(t *testing.T) {
	j := &memJournal{}
	opts := testOptions(t, j)
	opts.RootOwner, opts.RootGroup = 1000, 1000
	e, err := New(opts)
	mustOK(t, err)

	if attr := getattr(t, e, fsapi.RootIno); attr.UID != 1000 || attr.GID != 1000 {
		t.Errorf("root owned by %d:%d, expected 1000:1000", attr.UID, attr.GID)
	}
	// The owner may write in the root; another user may not.
	mkdir(t, e, userCaller, fsapi.RootIno, "mine", 0o755)
	_, err = e.Mkdir(ctx, otherCaller, fsapi.RootIno, "theirs", 0o755)
	wantErrno(t, err, syscall.EACCES)
	compareEngines(t, "replay of a root with an owner", e, replay(t, j.snapshot()))
}

func TestLookupDotAndDotDot(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, rootCaller, fsapi.RootIno, "d", 0o755)

	if got := lookup(t, e, dir, ".").Ino; got != dir {
		t.Errorf("Lookup(d, .) = %d, expected %d", got, dir)
	}
	if got := lookup(t, e, dir, "..").Ino; got != fsapi.RootIno {
		t.Errorf("Lookup(d, ..) = %d, expected the root", got)
	}
	if got := lookup(t, e, fsapi.RootIno, "..").Ino; got != fsapi.RootIno {
		t.Errorf("Lookup(/, ..) = %d, expected the root", got)
	}
}

func TestLookupErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	file := createFile(t, e, rootCaller, fsapi.RootIno, "f", 0o644, nil)
	private := mkdir(t, e, rootCaller, fsapi.RootIno, "private", 0o700)
	createFile(t, e, rootCaller, private, "secret", 0o644, nil)

	tests := []struct {
		name   string
		caller *fsapi.Caller
		parent fsapi.Ino
		lookup string
		want   syscall.Errno
	}{
		{"missing", userCaller, fsapi.RootIno, "nothing", syscall.ENOENT},
		{"parent is a file", userCaller, file, "x", syscall.ENOTDIR},
		{"empty name", userCaller, fsapi.RootIno, "", syscall.EINVAL},
		{"slash in name", userCaller, fsapi.RootIno, "a/b", syscall.EINVAL},
		{"name too long", userCaller, fsapi.RootIno, strings.Repeat("n", 256), syscall.ENAMETOOLONG},
		{"no search permission", userCaller, private, "secret", syscall.EACCES},
		{"unknown parent", userCaller, 999, "x", syscall.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Lookup(ctx, tt.caller, tt.parent, tt.lookup)
			wantErrno(t, err, tt.want)
		})
	}
	if _, err := e.Lookup(ctx, rootCaller, private, "secret"); err != nil {
		t.Errorf("root Lookup in a 0700 directory: %v, expected success", err)
	}
	if _, err := e.Lookup(ctx, userCaller, fsapi.RootIno, strings.Repeat("n", 255)); err != syscall.ENOENT {
		t.Errorf("Lookup of a 255-byte name: %v, expected ENOENT", err)
	}
}

func TestCreateErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, nil)
	readOnly := mkdir(t, e, rootCaller, fsapi.RootIno, "ro", 0o755)

	_, _, err := e.Create(ctx, userCaller, fsapi.RootIno, "f", 0o644, syscall.O_RDWR|syscall.O_EXCL)
	wantErrno(t, err, syscall.EEXIST)
	_, _, err = e.Create(ctx, userCaller, readOnly, "new", 0o644, syscall.O_RDWR)
	wantErrno(t, err, syscall.EACCES)
	_, _, err = e.Create(ctx, userCaller, fsapi.RootIno, strings.Repeat("x", 256), 0o644, syscall.O_RDWR)
	wantErrno(t, err, syscall.ENAMETOOLONG)
	_, _, err = e.Create(ctx, userCaller, fsapi.RootIno, ".", 0o644, syscall.O_RDWR)
	wantErrno(t, err, syscall.EEXIST)
	_, _, err = e.Create(ctx, userCaller, fsapi.RootIno, "dir", syscall.S_IFDIR|0o755, syscall.O_RDWR)
	wantErrno(t, err, syscall.EINVAL)

	// Without O_EXCL an existing file is opened.
	attr, h, err := e.Create(ctx, userCaller, fsapi.RootIno, "f", 0o644, syscall.O_RDWR)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, attr.Ino, h))
}

func TestCreateIgnoresModeForCreator(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h, err := e.Create(ctx, userCaller, fsapi.RootIno, "ro", 0o444, syscall.O_WRONLY)
	mustOK(t, err)
	if _, err := e.Write(ctx, userCaller, ino.Ino, h, 0, []byte("ok")); err != nil {
		t.Errorf("Write through the creating handle of a 0444 file: %v", err)
	}
	_, err = e.Open(ctx, userCaller, ino.Ino, syscall.O_WRONLY)
	wantErrno(t, err, syscall.EACCES)
}

func TestMkdirLinkCounts(t *testing.T) {
	e, j := newTestEngine(t)
	rootBefore := getattr(t, e, fsapi.RootIno)
	a := mkdir(t, e, userCaller, fsapi.RootIno, "a", 0o755)
	mkdir(t, e, userCaller, a, "b", 0o755)
	mkdir(t, e, userCaller, a, "c", 0o755)
	createFile(t, e, userCaller, a, "file", 0o644, nil)

	if got := getattr(t, e, fsapi.RootIno).Nlink; got != rootBefore.Nlink+1 {
		t.Errorf("root nlink = %d, expected %d", got, rootBefore.Nlink+1)
	}
	if got := getattr(t, e, a).Nlink; got != 4 {
		t.Errorf("a nlink = %d, expected 2 + 2 subdirectories", got)
	}
	rootAfter := getattr(t, e, fsapi.RootIno)
	if rootAfter.Mtime <= rootBefore.Mtime || rootAfter.Ctime <= rootBefore.Ctime {
		t.Errorf("root mtime/ctime did not advance on mkdir")
	}
	ent := j.lastEntry(t)
	if ent.Op != OpCreate || ent.Principal != userCaller.Principal || ent.UID != userCaller.UID {
		t.Errorf("last entry = %s by uid %d, expected a create by uid %d", ent.Op, ent.UID, userCaller.UID)
	}

	mustOK(t, e.Rmdir(ctx, userCaller, a, "b"))
	if got := getattr(t, e, a).Nlink; got != 3 {
		t.Errorf("a nlink after rmdir = %d, expected 3", got)
	}
	_, err := e.Mkdir(ctx, userCaller, fsapi.RootIno, "a", 0o755)
	wantErrno(t, err, syscall.EEXIST)
}

func TestMknodTypes(t *testing.T) {
	e, j := newTestEngine(t)
	tests := []struct {
		name   string
		caller *fsapi.Caller
		mode   uint32
		want   syscall.Errno
		op     Op
	}{
		{"fifo", userCaller, syscall.S_IFIFO | 0o644, 0, OpMknod},
		{"socket", userCaller, syscall.S_IFSOCK | 0o644, 0, OpMknod},
		{"regular", userCaller, syscall.S_IFREG | 0o644, 0, OpCreate},
		{"type zero", userCaller, 0o644, 0, OpCreate},
		{"char device by user", userCaller, syscall.S_IFCHR | 0o644, syscall.EPERM, 0},
		{"block device by user", userCaller, syscall.S_IFBLK | 0o644, syscall.EPERM, 0},
		{"char device by root", rootCaller, syscall.S_IFCHR | 0o644, 0, OpMknod},
		{"directory", rootCaller, syscall.S_IFDIR | 0o755, syscall.EPERM, 0},
		{"symlink", rootCaller, syscall.S_IFLNK | 0o777, syscall.EINVAL, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attr, err := e.Mknod(ctx, tt.caller, fsapi.RootIno, tt.name, tt.mode, 0x0103)
			if tt.want != 0 {
				wantErrno(t, err, tt.want)
				return
			}
			mustOK(t, err)
			wantType := tt.mode & syscall.S_IFMT
			if wantType == 0 {
				wantType = syscall.S_IFREG
			}
			if attr.Mode&syscall.S_IFMT != wantType {
				t.Errorf("type = %#o, expected %#o", attr.Mode&syscall.S_IFMT, wantType)
			}
			wantRdev := uint64(0)
			if wantType == syscall.S_IFCHR {
				wantRdev = 0x0103
			}
			if attr.Rdev != wantRdev {
				t.Errorf("rdev = %#x, expected %#x", attr.Rdev, wantRdev)
			}
			if ent := j.lastEntry(t); ent.Op != tt.op {
				t.Errorf("entry = %s, expected %s", ent.Op, tt.op)
			}
		})
	}
}

func TestSymlink(t *testing.T) {
	e, _ := newTestEngine(t)
	attr, err := e.Symlink(ctx, userCaller, fsapi.RootIno, "link", "../target")
	mustOK(t, err)
	if attr.Mode != syscall.S_IFLNK|0o777 || attr.Size != uint64(len("../target")) {
		t.Errorf("symlink attr = %+v, expected mode 0777 and size 9", attr)
	}
	target, err := e.Readlink(ctx, userCaller, attr.Ino)
	mustOK(t, err)
	if target != "../target" {
		t.Errorf("Readlink = %q, expected ../target", target)
	}

	_, err = e.Symlink(ctx, userCaller, fsapi.RootIno, "empty", "")
	wantErrno(t, err, syscall.ENOENT)
	_, err = e.Symlink(ctx, userCaller, fsapi.RootIno, "long", strings.Repeat("t", fsapi.MaxSymlinkLen+1))
	wantErrno(t, err, syscall.ENAMETOOLONG)
	_, err = e.Readlink(ctx, userCaller, fsapi.RootIno)
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.Open(ctx, userCaller, attr.Ino, syscall.O_RDONLY)
	wantErrno(t, err, syscall.ELOOP)
}

func TestLinkAndUnlink(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, []byte("data"))
	before := getattr(t, e, file)

	attr, err := e.Link(ctx, userCaller, file, dir, "g")
	mustOK(t, err)
	if attr.Nlink != 2 || attr.Ctime <= before.Ctime {
		t.Errorf("after link: nlink %d ctime %d, expected 2 and a later ctime than %d", attr.Nlink, attr.Ctime, before.Ctime)
	}
	_, err = e.Link(ctx, userCaller, file, dir, "g")
	wantErrno(t, err, syscall.EEXIST)
	_, err = e.Link(ctx, userCaller, dir, fsapi.RootIno, "dirlink")
	wantErrno(t, err, syscall.EPERM)

	mustOK(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "f"))
	if got := getattr(t, e, file).Nlink; got != 1 {
		t.Errorf("nlink after unlink = %d, expected 1", got)
	}
	if got := readAll(t, e, file); string(got) != "data" {
		t.Errorf("content through the other link = %q, expected data", got)
	}
	path, err := e.PathOf(file)
	mustOK(t, err)
	if path != "/d/g" {
		t.Errorf("PathOf = %q, expected /d/g", path)
	}

	wantErrno(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "f"), syscall.ENOENT)
	wantErrno(t, e.Unlink(ctx, userCaller, fsapi.RootIno, "d"), syscall.EISDIR)
	wantErrno(t, e.Unlink(ctx, userCaller, dir, "."), syscall.EISDIR)
	mustOK(t, e.Unlink(ctx, userCaller, dir, "g"))
	if _, err := e.GetAttr(ctx, userCaller, file); err != syscall.ENOENT {
		t.Errorf("GetAttr of a freed file: %v, expected ENOENT", err)
	}
}

func TestLinkProtectedHardlinks(t *testing.T) {
	e, _ := newTestEngine(t)
	secret := createFile(t, e, rootCaller, fsapi.RootIno, "secret", 0o600, nil)
	setuid := createFile(t, e, rootCaller, fsapi.RootIno, "setuid", 0o4755, nil)
	shared := createFile(t, e, rootCaller, fsapi.RootIno, "shared", 0o666, nil)

	_, err := e.Link(ctx, userCaller, secret, fsapi.RootIno, "mine")
	wantErrno(t, err, syscall.EPERM)
	_, err = e.Link(ctx, userCaller, setuid, fsapi.RootIno, "mine")
	wantErrno(t, err, syscall.EPERM)
	_, err = e.Link(ctx, userCaller, shared, fsapi.RootIno, "mine")
	mustOK(t, err)
}

func TestRmdirErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	createFile(t, e, userCaller, dir, "f", 0o644, nil)

	wantErrno(t, e.Rmdir(ctx, userCaller, fsapi.RootIno, "d"), syscall.ENOTEMPTY)
	wantErrno(t, e.Rmdir(ctx, userCaller, dir, "f"), syscall.ENOTDIR)
	wantErrno(t, e.Rmdir(ctx, userCaller, dir, "missing"), syscall.ENOENT)
	wantErrno(t, e.Rmdir(ctx, userCaller, dir, "."), syscall.EINVAL)
	wantErrno(t, e.Rmdir(ctx, userCaller, dir, ".."), syscall.ENOTEMPTY)
	wantErrno(t, e.Rmdir(ctx, otherCaller, dir, "f"), syscall.EACCES)
}

func TestStickyDirectory(t *testing.T) {
	e, _ := newTestEngine(t)
	tmp := mkdir(t, e, rootCaller, fsapi.RootIno, "tmp", 0o1777)
	createFile(t, e, userCaller, tmp, "mine", 0o644, nil)
	mkdir(t, e, userCaller, tmp, "mydir", 0o777)

	wantErrno(t, e.Unlink(ctx, otherCaller, tmp, "mine"), syscall.EPERM)
	wantErrno(t, e.Rmdir(ctx, otherCaller, tmp, "mydir"), syscall.EPERM)
	wantErrno(t, e.Rename(ctx, otherCaller, tmp, "mine", tmp, "stolen", 0), syscall.EPERM)
	createFile(t, e, otherCaller, tmp, "theirs", 0o644, nil)
	wantErrno(t, e.Rename(ctx, otherCaller, tmp, "theirs", tmp, "mine", 0), syscall.EPERM)

	mustOK(t, e.Unlink(ctx, userCaller, tmp, "mine"))
	mustOK(t, e.Rmdir(ctx, rootCaller, tmp, "mydir"))
}

func TestSetgidDirectoryInheritance(t *testing.T) {
	e, _ := newTestEngine(t)
	shared := mkdir(t, e, rootCaller, fsapi.RootIno, "shared", 0o777)
	_, err := e.SetAttr(ctx, rootCaller, shared, &fsapi.SetAttrIn{Valid: fsapi.SetMode | fsapi.SetGID, Mode: 0o2777, GID: 50})
	mustOK(t, err)

	file := createFile(t, e, userCaller, shared, "f", 0o2755, nil)
	sub := mkdir(t, e, userCaller, shared, "sub", 0o755)

	if attr := getattr(t, e, file); attr.GID != 50 || attr.Mode&syscall.S_ISGID != 0 {
		t.Errorf("file gid %d mode %#o, expected gid 50 and setgid cleared (creator is not in group 50)", attr.GID, attr.Mode)
	}
	if attr := getattr(t, e, sub); attr.GID != 50 || attr.Mode&syscall.S_ISGID == 0 {
		t.Errorf("subdirectory gid %d mode %#o, expected gid 50 and setgid set", attr.GID, attr.Mode)
	}
}

func TestParentTimesOnEntryChanges(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	steps := []struct {
		name string
		run  func() error
	}{
		{"create", func() error { createFile(t, e, userCaller, dir, "f", 0o644, nil); return nil }},
		{"link", func() error { _, err := e.Link(ctx, userCaller, lookup(t, e, dir, "f").Ino, dir, "g"); return err }},
		{"unlink", func() error { return e.Unlink(ctx, userCaller, dir, "g") }},
		{"rename", func() error { return e.Rename(ctx, userCaller, dir, "f", dir, "h", 0) }},
		{"symlink", func() error { _, err := e.Symlink(ctx, userCaller, dir, "s", "x"); return err }},
	}
	for _, step := range steps {
		before := getattr(t, e, dir)
		mustOK(t, step.run())
		after := getattr(t, e, dir)
		if after.Mtime <= before.Mtime || after.Ctime <= before.Ctime {
			t.Errorf("%s: directory mtime %d→%d ctime %d→%d, expected both to advance", step.name, before.Mtime, after.Mtime, before.Ctime, after.Ctime)
		}
	}
}

func TestAuthorizeChecksPaths(t *testing.T) {
	var paths []string
	e, _ := newTestEngineWith(t, func(o *Options) {
		o.Authorize = func(c *fsapi.Caller, path string) error {
			paths = append(paths, path)
			if strings.HasPrefix(path, "/locked") {
				return syscall.EPERM
			}
			return nil
		}
	})
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	file := createFile(t, e, userCaller, dir, "f", 0o644, nil)
	mustOK(t, e.Rename(ctx, userCaller, dir, "f", fsapi.RootIno, "g", 0))

	paths = nil
	_, err := e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: 0o600})
	mustOK(t, err)
	mustOK(t, e.Rename(ctx, userCaller, fsapi.RootIno, "g", dir, "h", 0))
	want := []string{"/g", "/g", "/d/h"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("authorized paths = %q, expected %q", paths, want)
	}

	_, err = e.Mkdir(ctx, userCaller, fsapi.RootIno, "locked", 0o755)
	wantErrno(t, err, syscall.EACCES)
	_, err = e.Lookup(ctx, userCaller, fsapi.RootIno, "locked")
	wantErrno(t, err, syscall.ENOENT)
	wantErrno(t, e.Rename(ctx, userCaller, dir, "h", fsapi.RootIno, "locked", 0), syscall.EACCES)
}

// TestDirAttrsAfterChange checks that each fsapi.DirReporter call of the
// engine returns the directory's attributes as GetAttr reads them right
// after the change.
func TestDirAttrsAfterChange(t *testing.T) {
	e, _ := newTestEngine(t)
	dir := mkdir(t, e, rootCaller, fsapi.RootIno, "dir", 0o755)
	wantDir := func(call string, got fsapi.Attr) {
		t.Helper()
		if want := getattr(t, e, dir); got != want {
			t.Errorf("%s returned directory attributes %+v, expected %+v", call, got, want)
		}
	}

	file, h, dirAfter, err := e.CreateAttrs(ctx, rootCaller, dir, "file", 0o644, syscall.O_RDWR)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, file.Ino, h))
	wantDir("CreateAttrs", dirAfter)

	_, dirAfter, err = e.MkdirAttrs(ctx, rootCaller, dir, "sub", 0o755)
	mustOK(t, err)
	wantDir("MkdirAttrs", dirAfter)
	if dirAfter.Nlink != 3 {
		t.Errorf("MkdirAttrs returned directory nlink %d, expected 3", dirAfter.Nlink)
	}

	dirAfter, err = e.UnlinkAttrs(ctx, rootCaller, dir, "file")
	mustOK(t, err)
	wantDir("UnlinkAttrs", dirAfter)

	dirAfter, err = e.RmdirAttrs(ctx, rootCaller, dir, "sub")
	mustOK(t, err)
	wantDir("RmdirAttrs", dirAfter)
	if dirAfter.Nlink != 2 {
		t.Errorf("RmdirAttrs returned directory nlink %d, expected 2", dirAfter.Nlink)
	}

	// Create of an existing name opens it and leaves the directory as it
	// was.
	createFile(t, e, rootCaller, dir, "again", 0o644, nil)
	before := getattr(t, e, dir)
	again, h, dirAfter, err := e.CreateAttrs(ctx, rootCaller, dir, "again", 0o644, syscall.O_RDWR)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, again.Ino, h))
	if dirAfter != before {
		t.Errorf("CreateAttrs of an existing name returned directory attributes %+v, expected unchanged %+v", dirAfter, before)
	}
}
