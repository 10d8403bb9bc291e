package posixsuite

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Subtests on durability calls and file system statistics.
var syncTests = []subtest{
	{"fsync", testFsync},
	{"statfs", testStatfs},
}

func testFsync(t *testing.T, e *env) {
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)
	_, err := unix.Write(fd, []byte("durable"))
	wantOK(t, "write", err)
	wantOK(t, "fsync", unix.Fsync(fd))
	wantOK(t, "fdatasync", unix.Fdatasync(fd))
	wantOK(t, "syncfs", unix.Syncfs(fd))

	dir := open(t, e.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	wantOK(t, "fsync of a directory", unix.Fsync(dir))
	wantOK(t, "fdatasync of a directory", unix.Fdatasync(dir))

	ro := open(t, e.path("file"), unix.O_RDONLY, 0)
	wantOK(t, "fsync of an O_RDONLY descriptor", unix.Fsync(ro))
}

func testStatfs(t *testing.T, e *env) {
	var st unix.Statfs_t
	wantOK(t, "statfs", unix.Statfs(e.dir, &st))
	if st.Bsize <= 0 {
		t.Errorf("f_bsize %d, want > 0", st.Bsize)
	}
	if st.Namelen != 255 {
		t.Errorf("f_namelen %d, want 255", st.Namelen)
	}
	if st.Bfree > st.Blocks || st.Bavail > st.Bfree {
		t.Errorf("f_blocks %d, f_bfree %d, f_bavail %d: want blocks >= bfree >= bavail", st.Blocks, st.Bfree, st.Bavail)
	}
	if st.Ffree > st.Files {
		t.Errorf("f_files %d < f_ffree %d", st.Files, st.Ffree)
	}

	fd := open(t, e.dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	var fst unix.Statfs_t
	wantOK(t, "fstatfs", unix.Fstatfs(fd, &fst))
	if fst.Type != st.Type || fst.Bsize != st.Bsize || fst.Namelen != st.Namelen {
		t.Errorf("fstatfs (type %x, bsize %d, namelen %d) disagrees with statfs (type %x, bsize %d, namelen %d)",
			fst.Type, fst.Bsize, fst.Namelen, st.Type, st.Bsize, st.Namelen)
	}
}
