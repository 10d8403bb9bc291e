package posixsuite

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Subtests on attributes: mode, owner, timestamps.
var attrTests = []subtest{
	{"chmod", testChmod},
	{"chown", testChown},
	{"utimensat", testUtimensat},
	{"write updates times", testWriteTimes},
}

func testChmod(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)
	for _, mode := range []uint32{0o600, 0o755, 0o4755, 0o2750, 0o1777, 0} {
		wantOK(t, "chmod", unix.Chmod(p, mode))
		if got := lstat(t, p).Mode; got&0o7777 != mode || got&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("mode %o after chmod %o, want %o on a regular file", got, mode, unix.S_IFREG|mode)
		}
	}

	fd := open(t, p, unix.O_RDONLY, 0)
	wantOK(t, "fchmod", unix.Fchmod(fd, 0o640))
	if got := fstat(t, fd).Mode & 0o7777; got != 0o640 {
		t.Errorf("mode %o after fchmod, want 0640", got)
	}

	before := lstat(t, p)
	time.Sleep(10 * time.Millisecond)
	wantOK(t, "chmod", unix.Chmod(p, 0o600))
	after := lstat(t, p)
	if !timeAfter(after.Ctim, before.Ctim) {
		t.Errorf("ctime %v did not advance past %v after chmod", after.Ctim, before.Ctim)
	}
	if after.Mtim != before.Mtim {
		t.Errorf("chmod changed mtime from %v to %v", before.Mtim, after.Mtim)
	}

	wantErrno(t, "chmod of a missing name", unix.Chmod(e.path("missing"), 0o644), unix.ENOENT)
}

func testChown(t *testing.T, e *env) {
	requireRoot(t, "chown to another user")
	p := e.writeFile(t, "file", []byte("x"), 0o644)

	wantOK(t, "chown 1000:1000", unix.Chown(p, 1000, 1000))
	if st := lstat(t, p); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("owner %d:%d after chown, want 1000:1000", st.Uid, st.Gid)
	}
	wantOK(t, "chown -1:-1", unix.Chown(p, -1, -1))
	if st := lstat(t, p); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("owner %d:%d after chown -1:-1, want it unchanged at 1000:1000", st.Uid, st.Gid)
	}
	wantOK(t, "chown -1:0", unix.Chown(p, -1, 0))
	if st := lstat(t, p); st.Uid != 1000 || st.Gid != 0 {
		t.Errorf("owner %d:%d after chown -1:0, want 1000:0", st.Uid, st.Gid)
	}

	// lchown changes the link, chown its target.
	wantOK(t, "symlink", unix.Symlink("file", e.path("link")))
	wantOK(t, "lchown", unix.Lchown(e.path("link"), 1001, 1001))
	if st := lstat(t, e.path("link")); st.Uid != 1001 || st.Gid != 1001 {
		t.Errorf("link owner %d:%d after lchown, want 1001:1001", st.Uid, st.Gid)
	}
	if st := lstat(t, p); st.Uid != 1000 {
		t.Errorf("target owner %d after lchown of the link, want it unchanged at 1000", st.Uid)
	}

	// Since Linux 2.2.13, chown clears the set-user-ID bit of an executable
	// even when root calls it, and the set-group-ID bit when group execute
	// is set.
	exe := e.writeFile(t, "exe", nil, 0o755)
	wantOK(t, "chmod 06755", unix.Chmod(exe, 0o6755))
	wantOK(t, "chown of a set-user-ID executable", unix.Chown(exe, 1000, 1000))
	if got := lstat(t, exe).Mode & 0o7777; got != 0o755 {
		t.Errorf("mode %o after chown of a 06755 file, want 0755", got)
	}

	fd := open(t, p, unix.O_RDONLY, 0)
	wantOK(t, "fchown", unix.Fchown(fd, 0, 0))
	if st := fstat(t, fd); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("owner %d:%d after fchown, want 0:0", st.Uid, st.Gid)
	}
}

func testUtimensat(t *testing.T, e *env) {
	p := e.writeFile(t, "file", nil, 0o644)

	atime := unix.Timespec{Sec: 1_000_000_000, Nsec: 123_456_789}
	mtime := unix.Timespec{Sec: 1_100_000_000, Nsec: 987_654_321}
	wantOK(t, "utimensat with explicit times", unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{atime, mtime}, 0))
	st := lstat(t, p)
	if st.Atim != atime {
		t.Errorf("atime %v, want %v", st.Atim, atime)
	}
	if st.Mtim != mtime {
		t.Errorf("mtime %v, want %v", st.Mtim, mtime)
	}

	// Times before the epoch are valid too.
	old := unix.Timespec{Sec: -86400, Nsec: 5}
	wantOK(t, "utimensat before 1970", unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{old, old}, 0))
	if st := lstat(t, p); st.Mtim != old {
		t.Errorf("mtime %v, want %v", st.Mtim, old)
	}

	// UTIME_OMIT keeps atime, UTIME_NOW sets mtime to the current time.
	wantOK(t, "reset times", unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{atime, mtime}, 0))
	before := time.Now().Add(-time.Second)
	omitNow := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
	wantOK(t, "utimensat UTIME_OMIT, UTIME_NOW", unix.UtimesNanoAt(unix.AT_FDCWD, p, omitNow, 0))
	after := time.Now().Add(time.Second)
	st = lstat(t, p)
	if st.Atim != atime {
		t.Errorf("atime %v after UTIME_OMIT, want it unchanged at %v", st.Atim, atime)
	}
	if got := time.Unix(st.Mtim.Unix()); got.Before(before) || got.After(after) {
		t.Errorf("mtime %v after UTIME_NOW, want between %v and %v", got, before, after)
	}

	// AT_SYMLINK_NOFOLLOW sets the link's own times.
	wantOK(t, "symlink", unix.Symlink("file", e.path("link")))
	wantOK(t, "utimensat AT_SYMLINK_NOFOLLOW", unix.UtimesNanoAt(unix.AT_FDCWD, e.path("link"), []unix.Timespec{atime, atime}, unix.AT_SYMLINK_NOFOLLOW))
	if st := lstat(t, e.path("link")); st.Mtim != atime {
		t.Errorf("link mtime %v, want %v", st.Mtim, atime)
	}
	if st := lstat(t, p); st.Mtim == atime {
		t.Errorf("utimensat of the link with AT_SYMLINK_NOFOLLOW changed the target's mtime")
	}

	// futimens through a descriptor.
	fd := open(t, p, unix.O_RDWR, 0)
	wantOK(t, "futimens", unix.UtimesNanoAt(fd, "", []unix.Timespec{mtime, mtime}, unix.AT_EMPTY_PATH))
	if st := fstat(t, fd); st.Mtim != mtime || st.Atim != mtime {
		t.Errorf("times after futimens %v %v, want %v", st.Atim, st.Mtim, mtime)
	}
}

func testWriteTimes(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("x"), 0o644)
	old := unix.Timespec{Sec: 1_000_000_000}
	wantOK(t, "set old times", unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{old, old}, 0))
	ctimeBefore := lstat(t, p).Ctim
	time.Sleep(10 * time.Millisecond)

	fd := open(t, p, unix.O_WRONLY, 0)
	_, err := unix.Pwrite(fd, []byte("y"), 1)
	wantOK(t, "write", err)
	st := fstat(t, fd)
	if !timeAfter(st.Mtim, old) {
		t.Errorf("mtime %v after write, want later than %v", st.Mtim, old)
	}
	if !timeAfter(st.Ctim, ctimeBefore) {
		t.Errorf("ctime %v after write, want later than %v", st.Ctim, ctimeBefore)
	}

	// Creating and removing entries updates the directory's mtime.
	wantOK(t, "set old directory times", unix.UtimesNanoAt(unix.AT_FDCWD, e.dir, []unix.Timespec{old, old}, 0))
	e.writeFile(t, "new", nil, 0o644)
	if got := lstat(t, e.dir).Mtim; !timeAfter(got, old) {
		t.Errorf("directory mtime %v after a create, want later than %v", got, old)
	}
	wantOK(t, "set old directory times", unix.UtimesNanoAt(unix.AT_FDCWD, e.dir, []unix.Timespec{old, old}, 0))
	wantOK(t, "unlink", unix.Unlink(e.path("new")))
	if got := lstat(t, e.dir).Mtim; !timeAfter(got, old) {
		t.Errorf("directory mtime %v after an unlink, want later than %v", got, old)
	}
}

func timeAfter(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}
