package posixsuite

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Subtests on names: lookup, creation, removal, rename, links.
var nameTests = []subtest{
	{"stat", testStat},
	{"open flags", testOpenFlags},
	{"create mode", testCreateMode},
	{"mkdir", testMkdir},
	{"mknod fifo", testMknodFifo},
	{"mknod socket", testMknodSocket},
	{"mknod device", testMknodDevice},
	{"unlink", testUnlink},
	{"rmdir", testRmdir},
	{"rename replace", testRenameReplace},
	{"rename noreplace", testRenameNoReplace},
	{"rename exchange", testRenameExchange},
	{"rename errors", testRenameErrors},
	{"rename directories", testRenameDirectories},
	{"link", testLink},
	{"symlink", testSymlink},
}

func testStat(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("12345"), 0o644)
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("file type %o, want regular file", st.Mode&unix.S_IFMT)
	}
	if st.Size != 5 {
		t.Errorf("size %d, want 5", st.Size)
	}
	if st.Nlink != 1 {
		t.Errorf("nlink %d, want 1", st.Nlink)
	}
	if st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
		t.Errorf("owner %d:%d, want the creator %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if st.Ino == 0 {
		t.Errorf("inode number 0")
	}

	var dirSt unix.Stat_t
	wantOK(t, "stat the directory", unix.Stat(e.dir, &dirSt))
	if dirSt.Ino == st.Ino {
		t.Errorf("file and directory share inode number %d", st.Ino)
	}
	if dirSt.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("directory file type %o, want directory", dirSt.Mode&unix.S_IFMT)
	}

	var scratch unix.Stat_t
	wantErrno(t, "stat of a missing name", unix.Stat(e.path("missing"), &scratch), unix.ENOENT)
	wantErrno(t, "stat below a regular file", unix.Stat(e.path("file/x"), &scratch), unix.ENOTDIR)
	wantErrno(t, "stat of a 256-byte name", unix.Stat(e.path(strings.Repeat("n", 256)), &scratch), unix.ENAMETOOLONG)

	long := strings.Repeat("l", 255)
	e.writeFile(t, long, nil, 0o644)
	wantOK(t, "stat of a 255-byte name", unix.Stat(e.path(long), &scratch))
}

func testOpenFlags(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("content"), 0o644)
	dir := e.mkdir(t, "dir", 0o755)

	_, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
	wantErrno(t, "O_CREAT|O_EXCL on an existing file", err, unix.EEXIST)

	fd, err := unix.Open(e.path("new"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	wantOK(t, "O_CREAT|O_EXCL on a new name", err)
	unix.Close(fd)

	_, err = unix.Open(e.path("missing"), unix.O_RDONLY, 0)
	wantErrno(t, "open of a missing name without O_CREAT", err, unix.ENOENT)

	_, err = unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	wantErrno(t, "O_DIRECTORY on a regular file", err, unix.ENOTDIR)

	fd = open(t, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if st := fstat(t, fd); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("O_DIRECTORY opened file type %o", st.Mode&unix.S_IFMT)
	}

	_, err = unix.Open(dir, unix.O_WRONLY, 0)
	wantErrno(t, "O_WRONLY on a directory", err, unix.EISDIR)

	fd = open(t, p, unix.O_WRONLY|unix.O_TRUNC, 0)
	if st := fstat(t, fd); st.Size != 0 {
		t.Errorf("size after O_TRUNC %d, want 0", st.Size)
	}
	if got := readFile(t, p); got != "" {
		t.Errorf("content after O_TRUNC %q, want empty", got)
	}

	// O_APPEND writes go to the end even after a seek to the start.
	e.writeFile(t, "log", []byte("one "), 0o644)
	fd = open(t, e.path("log"), unix.O_WRONLY|unix.O_APPEND, 0)
	_, err = unix.Seek(fd, 0, unix.SEEK_SET)
	wantOK(t, "seek", err)
	_, err = unix.Write(fd, []byte("two "))
	wantOK(t, "append write", err)
	_, err = unix.Seek(fd, 0, unix.SEEK_SET)
	wantOK(t, "seek", err)
	_, err = unix.Write(fd, []byte("three"))
	wantOK(t, "append write", err)
	if got := readFile(t, e.path("log")); got != "one two three" {
		t.Errorf("content after O_APPEND writes %q, want %q", got, "one two three")
	}

	// A file opened read-only cannot be written, and write-only not read.
	fd = open(t, p, unix.O_RDONLY, 0)
	_, err = unix.Write(fd, []byte("x"))
	wantErrno(t, "write to an O_RDONLY descriptor", err, unix.EBADF)
	fd = open(t, p, unix.O_WRONLY, 0)
	_, err = unix.Read(fd, make([]byte, 1))
	wantErrno(t, "read from an O_WRONLY descriptor", err, unix.EBADF)

	_, err = unix.Open(e.path("file/child"), unix.O_CREAT|unix.O_WRONLY, 0o644)
	wantErrno(t, "O_CREAT below a regular file", err, unix.ENOTDIR)
}

func testCreateMode(t *testing.T, e *env) {
	mask := umask(t)
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o666)
	st := fstat(t, fd)
	if want := 0o666 &^ mask; st.Mode&0o7777 != want {
		t.Errorf("mode %o, want %o (0666 without umask %o)", st.Mode&0o7777, want, mask)
	}

	// The mode applies to later opens, not to the descriptor that created
	// the file: O_CREAT with mode 0 still returns a writable descriptor.
	fd = open(t, e.path("readonly"), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR, 0)
	_, err := unix.Write(fd, []byte("data"))
	wantOK(t, "write through the creating descriptor of a mode-0 file", err)
	if st := fstat(t, fd); st.Mode&0o7777 != 0 {
		t.Errorf("mode %o, want 0", st.Mode&0o7777)
	}
}

func testMkdir(t *testing.T, e *env) {
	mask := umask(t)
	p := e.path("dir")
	wantOK(t, "mkdir", unix.Mkdir(p, 0o777))
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("file type %o, want directory", st.Mode&unix.S_IFMT)
	}
	if want := 0o777 &^ mask; st.Mode&0o7777 != want {
		t.Errorf("mode %o, want %o", st.Mode&0o7777, want)
	}
	if st.Nlink != 2 {
		t.Errorf("nlink of an empty directory %d, want 2", st.Nlink)
	}

	parentBefore := lstat(t, e.dir).Nlink
	wantOK(t, "mkdir child", unix.Mkdir(e.path("dir/child"), 0o755))
	if got := lstat(t, p).Nlink; got != 3 {
		t.Errorf("nlink with one subdirectory %d, want 3", got)
	}
	if got := lstat(t, e.dir).Nlink; got != parentBefore {
		t.Errorf("grandparent nlink changed from %d to %d", parentBefore, got)
	}

	wantErrno(t, "mkdir of an existing directory", unix.Mkdir(p, 0o755), unix.EEXIST)
	e.writeFile(t, "file", nil, 0o644)
	wantErrno(t, "mkdir of an existing file name", unix.Mkdir(e.path("file"), 0o755), unix.EEXIST)
	wantErrno(t, "mkdir below a missing directory", unix.Mkdir(e.path("missing/child"), 0o755), unix.ENOENT)
	wantErrno(t, "mkdir below a regular file", unix.Mkdir(e.path("file/child"), 0o755), unix.ENOTDIR)

	// In a set-group-ID directory, new entries get the directory's group,
	// and new directories inherit the bit. Root can give the directory a
	// group it is not in, which makes the inherited group visible.
	wantGID := uint32(os.Getegid())
	if isRoot() {
		wantGID = 1000
		wantOK(t, "chown the directory to group 1000", unix.Chown(p, -1, int(wantGID)))
	}
	wantOK(t, "chmod g+s", unix.Chmod(p, 0o2755))
	wantOK(t, "mkdir in a set-group-ID directory", unix.Mkdir(e.path("dir/inherits"), 0o755))
	st = lstat(t, e.path("dir/inherits"))
	if st.Mode&unix.S_ISGID == 0 {
		t.Errorf("mode %o of a directory made in a set-group-ID directory lacks S_ISGID", st.Mode&0o7777)
	}
	if st.Gid != wantGID {
		t.Errorf("group of a directory made in a set-group-ID directory %d, want %d", st.Gid, wantGID)
	}
	e.writeFile(t, "dir/file", nil, 0o644)
	if got := lstat(t, e.path("dir/file")).Gid; got != wantGID {
		t.Errorf("group of a file made in a set-group-ID directory %d, want %d", got, wantGID)
	}
}

func testMknodFifo(t *testing.T, e *env) {
	p := e.path("fifo")
	wantOK(t, "mkfifo", unix.Mkfifo(p, 0o644))
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Fatalf("file type %o, want FIFO", st.Mode&unix.S_IFMT)
	}

	// Opening a FIFO with O_RDWR does not block on Linux (fifo(7)), so one
	// descriptor can write and read back.
	fd := open(t, p, unix.O_RDWR, 0)
	_, err := unix.Write(fd, []byte("ping"))
	wantOK(t, "write to the FIFO", err)
	buf := make([]byte, 8)
	n, err := unix.Read(fd, buf)
	wantOK(t, "read from the FIFO", err)
	if string(buf[:n]) != "ping" {
		t.Errorf("read %q from the FIFO, want %q", buf[:n], "ping")
	}
	if st := lstat(t, p); st.Size != 0 {
		t.Errorf("FIFO size %d after I/O, want 0", st.Size)
	}

	wantErrno(t, "mkfifo over an existing name", unix.Mkfifo(p, 0o644), unix.EEXIST)
}

func testMknodSocket(t *testing.T, e *env) {
	p := e.path("socket")
	wantOK(t, "mknod S_IFSOCK", unix.Mknod(p, unix.S_IFSOCK|0o644, 0))
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Errorf("file type %o, want socket", st.Mode&unix.S_IFMT)
	}
	if st.Mode&0o777 != 0o644&^umask(t) {
		t.Errorf("mode %o, want %o", st.Mode&0o777, 0o644&^umask(t))
	}
}

func testMknodDevice(t *testing.T, e *env) {
	if e.opts.NoDeviceNodes {
		t.Log("known difference (NoDeviceNodes): the target cannot create device nodes, so mknod of S_IFCHR and S_IFBLK is not checked")
		return
	}
	requireRoot(t, "mknod of a device node")

	for _, dev := range []struct {
		name  string
		mode  uint32
		major uint32
		minor uint32
	}{
		{"null", unix.S_IFCHR, 1, 3},
		{"large", unix.S_IFCHR, 300, 70000}, // needs the 32-bit encoding's high bits
		{"block", unix.S_IFBLK, 7, 0},
	} {
		p := e.path(dev.name)
		wantOK(t, "mknod "+dev.name, unix.Mknod(p, dev.mode|0o600, int(unix.Mkdev(dev.major, dev.minor))))
		st := lstat(t, p)
		if st.Mode&unix.S_IFMT != dev.mode {
			t.Errorf("%s: file type %o, want %o", dev.name, st.Mode&unix.S_IFMT, dev.mode)
		}
		if unix.Major(st.Rdev) != dev.major || unix.Minor(st.Rdev) != dev.minor {
			t.Errorf("%s: rdev %d:%d, want %d:%d", dev.name, unix.Major(st.Rdev), unix.Minor(st.Rdev), dev.major, dev.minor)
		}
	}
}

func testUnlink(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("x"), 0o644)
	wantOK(t, "unlink", unix.Unlink(p))
	var st unix.Stat_t
	wantErrno(t, "stat after unlink", unix.Lstat(p, &st), unix.ENOENT)
	wantErrno(t, "unlink of a missing name", unix.Unlink(p), unix.ENOENT)

	dir := e.mkdir(t, "dir", 0o755)
	wantErrno(t, "unlink of a directory", unix.Unlink(dir), unix.EISDIR)

	// unlink removes a symbolic link, not its target.
	target := e.writeFile(t, "target", []byte("x"), 0o644)
	wantOK(t, "symlink", unix.Symlink("target", e.path("link")))
	wantOK(t, "unlink of the link", unix.Unlink(e.path("link")))
	wantOK(t, "stat of the link's target", unix.Lstat(target, &st))
}

func testRmdir(t *testing.T, e *env) {
	dir := e.mkdir(t, "dir", 0o755)
	e.writeFile(t, "dir/file", nil, 0o644)
	wantErrno(t, "rmdir of a non-empty directory", unix.Rmdir(dir), unix.ENOTEMPTY)
	wantErrno(t, "rmdir of a regular file", unix.Rmdir(e.path("dir/file")), unix.ENOTDIR)
	wantErrno(t, "rmdir of dir/.", unix.Rmdir(e.path("dir")+"/."), unix.EINVAL)
	wantErrno(t, "rmdir of a missing name", unix.Rmdir(e.path("missing")), unix.ENOENT)

	parentNlink := lstat(t, e.dir).Nlink
	wantOK(t, "unlink the last entry", unix.Unlink(e.path("dir/file")))
	wantOK(t, "rmdir of the emptied directory", unix.Rmdir(dir))
	var st unix.Stat_t
	wantErrno(t, "stat after rmdir", unix.Lstat(dir, &st), unix.ENOENT)
	if got := lstat(t, e.dir).Nlink; got != parentNlink-1 {
		t.Errorf("parent nlink after rmdir %d, want %d", got, parentNlink-1)
	}
}

func testRenameReplace(t *testing.T, e *env) {
	src := e.writeFile(t, "src", []byte("new"), 0o644)
	dst := e.writeFile(t, "dst", []byte("old"), 0o644)
	srcIno := lstat(t, src).Ino

	// A descriptor of the replaced file keeps its content.
	oldFd := open(t, dst, unix.O_RDONLY, 0)

	wantOK(t, "rename over an existing file", unix.Rename(src, dst))
	var st unix.Stat_t
	wantErrno(t, "stat of the old name", unix.Lstat(src, &st), unix.ENOENT)
	if got := readFile(t, dst); got != "new" {
		t.Errorf("content of the target %q, want %q", got, "new")
	}
	if got := lstat(t, dst).Ino; got != srcIno {
		t.Errorf("target inode %d, want the source's %d", got, srcIno)
	}
	buf := make([]byte, 8)
	n, err := unix.Pread(oldFd, buf, 0)
	wantOK(t, "read the replaced file through its descriptor", err)
	if string(buf[:n]) != "old" {
		t.Errorf("replaced file content %q, want %q", buf[:n], "old")
	}
	if st := fstat(t, oldFd); st.Nlink != 0 {
		t.Errorf("replaced file nlink %d, want 0", st.Nlink)
	}

	// Renaming a name onto itself, or onto another link of the same inode,
	// changes nothing.
	wantOK(t, "rename onto itself", unix.Rename(dst, dst))
	wantOK(t, "link", unix.Link(dst, e.path("alias")))
	wantOK(t, "rename onto a hard link of the same inode", unix.Rename(dst, e.path("alias")))
	wantOK(t, "stat of the source after renaming onto its own link", unix.Lstat(dst, &st))
	wantOK(t, "stat of the link", unix.Lstat(e.path("alias"), &st))
	if st.Nlink != 2 {
		t.Errorf("nlink %d, want 2", st.Nlink)
	}

	// Rename across directories.
	e.mkdir(t, "sub", 0o755)
	wantOK(t, "rename into a subdirectory", unix.Rename(dst, e.path("sub/moved")))
	if got := readFile(t, e.path("sub/moved")); got != "new" {
		t.Errorf("content after the move %q, want %q", got, "new")
	}
}

func testRenameNoReplace(t *testing.T, e *env) {
	src := e.writeFile(t, "src", []byte("src"), 0o644)
	dst := e.writeFile(t, "dst", []byte("dst"), 0o644)
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	wantErrno(t, "RENAME_NOREPLACE onto an existing name", err, unix.EEXIST)
	if got := readFile(t, dst); got != "dst" {
		t.Errorf("target content after the refused rename %q, want %q", got, "dst")
	}
	if got := readFile(t, src); got != "src" {
		t.Errorf("source content after the refused rename %q, want %q", got, "src")
	}

	err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, e.path("free"), unix.RENAME_NOREPLACE)
	wantOK(t, "RENAME_NOREPLACE onto a free name", err)
	if got := readFile(t, e.path("free")); got != "src" {
		t.Errorf("content after RENAME_NOREPLACE %q, want %q", got, "src")
	}
}

func testRenameExchange(t *testing.T, e *env) {
	a := e.writeFile(t, "a", []byte("file a"), 0o644)
	dir := e.mkdir(t, "dir", 0o755)
	e.writeFile(t, "dir/inside", []byte("x"), 0o644)
	fileIno, dirIno := lstat(t, a).Ino, lstat(t, dir).Ino

	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
	wantOK(t, "RENAME_EXCHANGE of a file and a directory", err)
	if got := lstat(t, a); got.Ino != dirIno || got.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("after the exchange, a is inode %d type %o, want the directory %d", got.Ino, got.Mode&unix.S_IFMT, dirIno)
	}
	if got := lstat(t, dir); got.Ino != fileIno || got.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("after the exchange, dir is inode %d type %o, want the file %d", got.Ino, got.Mode&unix.S_IFMT, fileIno)
	}
	if got := readFile(t, e.path("a/inside")); got != "x" {
		t.Errorf("content below the exchanged directory %q, want %q", got, "x")
	}

	// Exchange across directories, with a name that then lives elsewhere.
	e.mkdir(t, "other", 0o755)
	e.writeFile(t, "other/b", []byte("file b"), 0o644)
	err = unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, e.path("other/b"), unix.RENAME_EXCHANGE)
	wantOK(t, "RENAME_EXCHANGE across directories", err)
	if got := readFile(t, e.path("other/b")); got != "file a" {
		t.Errorf("other/b after the exchange %q, want %q", got, "file a")
	}
	if got := readFile(t, dir); got != "file b" {
		t.Errorf("dir after the exchange %q, want %q", got, "file b")
	}

	err = unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, e.path("missing"), unix.RENAME_EXCHANGE)
	wantErrno(t, "RENAME_EXCHANGE with a missing target", err, unix.ENOENT)

	err = unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, e.path("x"), unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE)
	wantErrno(t, "RENAME_EXCHANGE together with RENAME_NOREPLACE", err, unix.EINVAL)
}

func testRenameErrors(t *testing.T, e *env) {
	file := e.writeFile(t, "file", nil, 0o644)
	dir := e.mkdir(t, "dir", 0o755)
	e.mkdir(t, "dir/sub", 0o755)

	wantErrno(t, "rename of a directory into its own subdirectory", unix.Rename(dir, e.path("dir/sub/dir")), unix.EINVAL)
	wantErrno(t, "rename of a directory onto its own subdirectory", unix.Rename(dir, e.path("dir/sub")), unix.EINVAL)
	wantErrno(t, "rename of a file over a directory", unix.Rename(file, e.path("dir/sub")), unix.EISDIR)
	wantErrno(t, "rename of a directory over a file", unix.Rename(e.path("dir/sub"), file), unix.ENOTDIR)
	wantErrno(t, "rename of a missing name", unix.Rename(e.path("missing"), e.path("x")), unix.ENOENT)
	wantErrno(t, "rename into a missing directory", unix.Rename(file, e.path("missing/x")), unix.ENOENT)
	wantErrno(t, "rename of dir/.", unix.Rename(dir+"/.", e.path("x")), unix.EBUSY)

	// Nothing moved.
	var st unix.Stat_t
	wantOK(t, "stat file", unix.Lstat(file, &st))
	wantOK(t, "stat dir/sub", unix.Lstat(e.path("dir/sub"), &st))
}

func testRenameDirectories(t *testing.T, e *env) {
	src := e.mkdir(t, "src", 0o755)
	e.writeFile(t, "src/file", []byte("x"), 0o644)
	full := e.mkdir(t, "full", 0o755)
	e.writeFile(t, "full/file", nil, 0o644)
	empty := e.mkdir(t, "empty", 0o755)

	wantErrno(t, "rename of a directory over a non-empty directory", unix.Rename(src, full), unix.ENOTEMPTY)

	srcIno := lstat(t, src).Ino
	wantOK(t, "rename of a directory over an empty directory", unix.Rename(src, empty))
	if got := lstat(t, empty).Ino; got != srcIno {
		t.Errorf("target inode %d, want the source's %d", got, srcIno)
	}
	if got := readFile(t, e.path("empty/file")); got != "x" {
		t.Errorf("content below the moved directory %q, want %q", got, "x")
	}

	// Moving a directory to another parent moves its ".." link.
	before := lstat(t, full).Nlink
	wantOK(t, "move a directory into another", unix.Rename(empty, e.path("full/moved")))
	if got := lstat(t, full).Nlink; got != before+1 {
		t.Errorf("new parent nlink %d, want %d", got, before+1)
	}
	var dotdot, parent unix.Stat_t
	wantOK(t, "stat moved/..", unix.Stat(e.path("full/moved/.."), &dotdot))
	wantOK(t, "stat full", unix.Stat(full, &parent))
	if dotdot.Ino != parent.Ino {
		t.Errorf("moved/.. is inode %d, want the new parent %d", dotdot.Ino, parent.Ino)
	}
}

func testLink(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("shared"), 0o644)
	link := e.path("link")
	wantOK(t, "link", unix.Link(p, link))

	st, linkSt := lstat(t, p), lstat(t, link)
	if st.Ino != linkSt.Ino {
		t.Errorf("link inode %d, want %d", linkSt.Ino, st.Ino)
	}
	if st.Nlink != 2 {
		t.Errorf("nlink after link %d, want 2", st.Nlink)
	}

	// A write through one name shows through the other.
	wantOK(t, "write through the link", os.WriteFile(link, []byte("changed"), 0o644))
	if got := readFile(t, p); got != "changed" {
		t.Errorf("content through the first name %q, want %q", got, "changed")
	}

	wantOK(t, "unlink the first name", unix.Unlink(p))
	if got := lstat(t, link).Nlink; got != 1 {
		t.Errorf("nlink after unlink %d, want 1", got)
	}

	dir := e.mkdir(t, "dir", 0o755)
	wantErrno(t, "link to a directory", unix.Link(dir, e.path("dirlink")), unix.EPERM)
	e.writeFile(t, "other", nil, 0o644)
	wantErrno(t, "link onto an existing name", unix.Link(link, e.path("other")), unix.EEXIST)
	wantErrno(t, "link of a missing name", unix.Link(e.path("missing"), e.path("x")), unix.ENOENT)
}

func testSymlink(t *testing.T, e *env) {
	e.writeFile(t, "target", []byte("through the link"), 0o644)
	link := e.path("link")
	wantOK(t, "symlink", unix.Symlink("target", link))

	st := lstat(t, link)
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("file type %o, want symlink", st.Mode&unix.S_IFMT)
	}
	if st.Size != int64(len("target")) {
		t.Errorf("symlink size %d, want %d", st.Size, len("target"))
	}
	buf := make([]byte, 64)
	n, err := unix.Readlink(link, buf)
	wantOK(t, "readlink", err)
	if string(buf[:n]) != "target" {
		t.Errorf("readlink %q, want %q", buf[:n], "target")
	}
	if got := readFile(t, link); got != "through the link" {
		t.Errorf("content through the link %q", got)
	}

	_, err = unix.Readlink(e.path("target"), buf)
	wantErrno(t, "readlink of a regular file", err, unix.EINVAL)
	wantErrno(t, "symlink onto an existing name", unix.Symlink("x", link), unix.EEXIST)

	_, err = unix.Open(link, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	wantErrno(t, "O_NOFOLLOW on a symlink", err, unix.ELOOP)

	dangling := e.path("dangling")
	wantOK(t, "symlink to a missing name", unix.Symlink("missing", dangling))
	var scratch unix.Stat_t
	wantErrno(t, "stat through a dangling symlink", unix.Stat(dangling, &scratch), unix.ENOENT)
	wantOK(t, "lstat of a dangling symlink", unix.Lstat(dangling, &scratch))

	// A target of 4095 bytes is the longest Linux allows.
	long := strings.Repeat("a/", 2047) + "b"
	wantOK(t, "symlink with a 4095-byte target", unix.Symlink(long, e.path("long")))
	buf = make([]byte, 5000)
	n, err = unix.Readlink(e.path("long"), buf)
	wantOK(t, "readlink of the long symlink", err)
	if n != len(long) || string(buf[:n]) != long {
		t.Errorf("readlink returned %d bytes, want %d", n, len(long))
	}

	wantOK(t, "symlink loop", unix.Symlink("loop", e.path("loop")))
	wantErrno(t, "stat through a symlink loop", unix.Stat(e.path("loop"), &scratch), unix.ELOOP)
}
