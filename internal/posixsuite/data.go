package posixsuite

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// Subtests on file data.
var dataTests = []subtest{
	{"read write offsets", testReadWriteOffsets},
	{"pread pwrite", testPreadPwrite},
	{"large write", testLargeWrite},
	{"sparse file", testSparseFile},
	{"truncate", testTruncate},
	{"ftruncate", testFtruncate},
	{"fallocate", testFallocate},
	{"copy_file_range", testCopyFileRange},
	{"unlinked open file", testUnlinkedOpenFile},
}

// pattern returns n bytes that differ from their neighbours and from zero,
// so that misplaced or lost bytes show.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) + 1 + seed
		if b[i] == 0 {
			b[i] = 1
		}
	}
	return b
}

func testReadWriteOffsets(t *testing.T, e *env) {
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)
	n, err := unix.Write(fd, []byte("hello"))
	wantOK(t, "write", err)
	if n != 5 {
		t.Fatalf("write returned %d, want 5", n)
	}
	off, err := unix.Seek(fd, 0, unix.SEEK_CUR)
	wantOK(t, "seek", err)
	if off != 5 {
		t.Errorf("offset after write %d, want 5", off)
	}

	_, err = unix.Seek(fd, 100, unix.SEEK_SET)
	wantOK(t, "seek", err)
	_, err = unix.Write(fd, []byte("world"))
	wantOK(t, "write at 100", err)
	if st := fstat(t, fd); st.Size != 105 {
		t.Errorf("size %d, want 105", st.Size)
	}

	_, err = unix.Seek(fd, 0, unix.SEEK_SET)
	wantOK(t, "seek", err)
	buf := make([]byte, 200)
	total := 0
	for {
		n, err := unix.Read(fd, buf[total:])
		wantOK(t, "read", err)
		if n == 0 {
			break
		}
		total += n
	}
	want := make([]byte, 105)
	copy(want, "hello")
	copy(want[100:], "world")
	if !bytes.Equal(buf[:total], want) {
		t.Errorf("read back %q, want %q", buf[:total], want)
	}

	// Overwrite in the middle keeps the rest.
	_, err = unix.Pwrite(fd, []byte("HE"), 0)
	wantOK(t, "overwrite", err)
	n, err = unix.Pread(fd, buf[:5], 0)
	wantOK(t, "pread", err)
	if string(buf[:n]) != "HEllo" {
		t.Errorf("after overwrite %q, want %q", buf[:n], "HEllo")
	}

	// Reads at and past the end return 0 bytes.
	n, err = unix.Pread(fd, buf, 105)
	wantOK(t, "pread at EOF", err)
	if n != 0 {
		t.Errorf("pread at EOF returned %d bytes", n)
	}
	n, err = unix.Pread(fd, buf, 1<<30)
	wantOK(t, "pread past EOF", err)
	if n != 0 {
		t.Errorf("pread past EOF returned %d bytes", n)
	}
}

func testPreadPwrite(t *testing.T, e *env) {
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)
	_, err := unix.Write(fd, []byte("0123456789"))
	wantOK(t, "write", err)
	_, err = unix.Seek(fd, 3, unix.SEEK_SET)
	wantOK(t, "seek", err)

	_, err = unix.Pwrite(fd, []byte("ab"), 7)
	wantOK(t, "pwrite", err)
	buf := make([]byte, 4)
	n, err := unix.Pread(fd, buf, 6)
	wantOK(t, "pread", err)
	if string(buf[:n]) != "6ab9" {
		t.Errorf("pread %q, want %q", buf[:n], "6ab9")
	}
	if off, _ := unix.Seek(fd, 0, unix.SEEK_CUR); off != 3 {
		t.Errorf("pread and pwrite moved the offset to %d, want 3", off)
	}

	_, err = unix.Pwrite(fd, []byte("x"), -1)
	wantErrno(t, "pwrite at a negative offset", err, unix.EINVAL)
}

// testLargeWrite writes more than one FUSE request carries (1 MiB) at an
// unaligned offset and reads it back.
func testLargeWrite(t *testing.T, e *env) {
	data := pattern(3<<20+123, 7)
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)
	written := 0
	for written < len(data) {
		n, err := unix.Pwrite(fd, data[written:], int64(1000+written))
		wantOK(t, "pwrite", err)
		written += n
	}
	if st := fstat(t, fd); st.Size != int64(1000+len(data)) {
		t.Errorf("size %d, want %d", st.Size, 1000+len(data))
	}
	got := make([]byte, len(data))
	read := 0
	for read < len(got) {
		n, err := unix.Pread(fd, got[read:], int64(1000+read))
		wantOK(t, "pread", err)
		if n == 0 {
			t.Fatalf("unexpected EOF after %d bytes", read)
		}
		read += n
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read back data differs from what was written")
	}
}

func testSparseFile(t *testing.T, e *env) {
	const off = 64 << 20 // a multiple of every common block size
	fd := open(t, e.path("sparse"), unix.O_CREAT|unix.O_RDWR, 0o644)
	data := pattern(4096, 3)
	_, err := unix.Pwrite(fd, data, off)
	wantOK(t, "pwrite far out", err)
	wantOK(t, "fsync", unix.Fsync(fd))

	st := fstat(t, fd)
	if st.Size != off+4096 {
		t.Errorf("size %d, want %d", st.Size, off+4096)
	}
	if st.Blocks == 0 || st.Blocks*512 > 1<<20 {
		t.Errorf("st_blocks %d (%d bytes), want data blocks only: more than 0 and at most 1 MiB", st.Blocks, st.Blocks*512)
	}

	// The hole reads as zeros.
	buf := make([]byte, 8192)
	n, err := unix.Pread(fd, buf, off-8192)
	wantOK(t, "pread in the hole", err)
	if n != len(buf) || !bytes.Equal(buf, make([]byte, len(buf))) {
		t.Errorf("hole did not read as %d zero bytes (%d bytes read)", len(buf), n)
	}

	dataAt, err := unix.Seek(fd, 0, unix.SEEK_DATA)
	wantOK(t, "SEEK_DATA from 0", err)
	if dataAt != off {
		t.Errorf("SEEK_DATA from 0 returned %d, want %d", dataAt, off)
	}
	holeAt, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	wantOK(t, "SEEK_HOLE from 0", err)
	if holeAt != 0 {
		t.Errorf("SEEK_HOLE from 0 returned %d, want 0", holeAt)
	}
	holeAt, err = unix.Seek(fd, off, unix.SEEK_HOLE)
	wantOK(t, "SEEK_HOLE from the data", err)
	if holeAt != off+4096 {
		t.Errorf("SEEK_HOLE from the data returned %d, want the end of file %d", holeAt, off+4096)
	}
	_, err = unix.Seek(fd, off+4096, unix.SEEK_DATA)
	wantErrno(t, "SEEK_DATA at the end of file", err, unix.ENXIO)
	_, err = unix.Seek(fd, off+8192, unix.SEEK_HOLE)
	wantErrno(t, "SEEK_HOLE past the end of file", err, unix.ENXIO)
}

func testTruncate(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("0123456789"), 0o644)

	wantOK(t, "truncate to grow", unix.Truncate(p, 10000))
	if st := lstat(t, p); st.Size != 10000 {
		t.Errorf("size after growing %d, want 10000", st.Size)
	}
	got := readFile(t, p)
	if got[:10] != "0123456789" || got[10:] != string(make([]byte, 9990)) {
		t.Errorf("grown file does not hold the old data followed by zeros")
	}

	wantOK(t, "truncate to shrink", unix.Truncate(p, 3))
	if got := readFile(t, p); got != "012" {
		t.Errorf("content after shrinking %q, want %q", got, "012")
	}

	// Growing again must not bring back the cut bytes.
	wantOK(t, "truncate to grow again", unix.Truncate(p, 10))
	if got := readFile(t, p); got != "012"+string(make([]byte, 7)) {
		t.Errorf("content after shrinking and growing %q, want %q followed by 7 zero bytes", got, "012")
	}

	wantErrno(t, "truncate to a negative size", unix.Truncate(p, -1), unix.EINVAL)
	dir := e.mkdir(t, "dir", 0o755)
	wantErrno(t, "truncate of a directory", unix.Truncate(dir, 0), unix.EISDIR)
	wantErrno(t, "truncate of a missing name", unix.Truncate(e.path("missing"), 0), unix.ENOENT)
}

func testFtruncate(t *testing.T, e *env) {
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)
	data := pattern(10000, 1)
	_, err := unix.Pwrite(fd, data, 0)
	wantOK(t, "pwrite", err)

	wantOK(t, "ftruncate to shrink", unix.Ftruncate(fd, 5000))
	if st := fstat(t, fd); st.Size != 5000 {
		t.Errorf("size %d, want 5000", st.Size)
	}
	wantOK(t, "ftruncate to grow", unix.Ftruncate(fd, 9000))
	buf := make([]byte, 9000)
	n, err := unix.Pread(fd, buf, 0)
	wantOK(t, "pread", err)
	if n != 9000 || !bytes.Equal(buf[:5000], data[:5000]) || !bytes.Equal(buf[5000:], make([]byte, 4000)) {
		t.Errorf("after shrinking to 5000 and growing to 9000, read %d bytes that are not the old prefix followed by zeros", n)
	}

	// ftruncate needs a descriptor open for writing, even for root.
	ro := open(t, e.path("file"), unix.O_RDONLY, 0)
	wantErrno(t, "ftruncate of an O_RDONLY descriptor", unix.Ftruncate(ro, 0), unix.EINVAL)

	// The mode does not matter for a descriptor that is open for writing.
	wantOK(t, "chmod 0", unix.Fchmod(fd, 0))
	wantOK(t, "ftruncate of a mode-0 file through a writable descriptor", unix.Ftruncate(fd, 1))
	if st := fstat(t, fd); st.Size != 1 {
		t.Errorf("size %d, want 1", st.Size)
	}
}

func testFallocate(t *testing.T, e *env) {
	fd := open(t, e.path("file"), unix.O_CREAT|unix.O_RDWR, 0o644)

	wantOK(t, "fallocate mode 0", unix.Fallocate(fd, 0, 0, 8192))
	if st := fstat(t, fd); st.Size != 8192 {
		t.Errorf("size after fallocate mode 0 %d, want 8192", st.Size)
	}
	buf := make([]byte, 8192)
	n, err := unix.Pread(fd, buf, 0)
	wantOK(t, "pread", err)
	if n != 8192 || !bytes.Equal(buf, make([]byte, 8192)) {
		t.Errorf("allocated range did not read as 8192 zero bytes")
	}

	wantOK(t, "fallocate KEEP_SIZE", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 8192, 4096))
	if st := fstat(t, fd); st.Size != 8192 {
		t.Errorf("size after fallocate KEEP_SIZE %d, want it unchanged at 8192", st.Size)
	}

	// Punch a hole into written data: it reads as zeros, the size stays.
	data := pattern(3*4096, 9)
	_, err = unix.Pwrite(fd, data, 0)
	wantOK(t, "pwrite", err)
	wantOK(t, "fallocate PUNCH_HOLE", unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 4096))
	if st := fstat(t, fd); st.Size != 3*4096 {
		t.Errorf("size after PUNCH_HOLE %d, want %d", st.Size, 3*4096)
	}
	got := make([]byte, len(data))
	_, err = unix.Pread(fd, got, 0)
	wantOK(t, "pread", err)
	want := bytes.Clone(data)
	clear(want[4096:8192])
	if !bytes.Equal(got, want) {
		t.Errorf("after PUNCH_HOLE the file does not hold zeros in [4096, 8192) and the data elsewhere")
	}
	hole, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	wantOK(t, "SEEK_HOLE", err)
	if hole != 4096 {
		t.Errorf("SEEK_HOLE after PUNCH_HOLE returned %d, want 4096", hole)
	}

	err = unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE, 0, 4096)
	wantErrno(t, "PUNCH_HOLE without KEEP_SIZE", err, unix.EOPNOTSUPP)
	err = unix.Fallocate(fd, 0, 0, 0)
	wantErrno(t, "fallocate of length 0", err, unix.EINVAL)

	ro := open(t, e.path("file"), unix.O_RDONLY, 0)
	wantErrno(t, "fallocate through an O_RDONLY descriptor", unix.Fallocate(ro, 0, 0, 4096), unix.EBADF)
}

func testCopyFileRange(t *testing.T, e *env) {
	data := pattern(100_000, 5)
	src := open(t, e.path("src"), unix.O_CREAT|unix.O_RDWR, 0o644)
	_, err := unix.Pwrite(src, data, 0)
	wantOK(t, "pwrite", err)
	dst := open(t, e.path("dst"), unix.O_CREAT|unix.O_RDWR, 0o644)
	_, err = unix.Pwrite(dst, []byte("prefix"), 0)
	wantOK(t, "pwrite", err)

	// Copy 50000 bytes from offset 1000 to offset 100. copy_file_range
	// may copy less than asked, so loop.
	const length = 50_000
	inOff, outOff := int64(1000), int64(100)
	for copied := 0; copied < length; {
		n, err := unix.CopyFileRange(src, &inOff, dst, &outOff, length-copied, 0)
		wantOK(t, "copy_file_range", err)
		if n == 0 {
			t.Fatalf("copy_file_range returned 0 after %d of %d bytes", copied, length)
		}
		copied += n
	}
	if inOff != 1000+length || outOff != 100+length {
		t.Errorf("offsets after the copy %d and %d, want %d and %d", inOff, outOff, 1000+length, 100+length)
	}

	got := make([]byte, 100+length)
	n, err := unix.Pread(dst, got, 0)
	wantOK(t, "pread", err)
	want := make([]byte, 100+length)
	copy(want, "prefix")
	copy(want[100:], data[1000:1000+length])
	if n != len(want) || !bytes.Equal(got[:n], want) {
		t.Errorf("destination after copy_file_range differs (%d bytes read, want %d)", n, len(want))
	}

	// Copying from the end of the source copies nothing.
	inOff, outOff = int64(len(data)), 0
	n, err = unix.CopyFileRange(src, &inOff, dst, &outOff, 10, 0)
	wantOK(t, "copy_file_range at EOF", err)
	if n != 0 {
		t.Errorf("copy_file_range at EOF copied %d bytes, want 0", n)
	}

	_, err = unix.CopyFileRange(src, nil, dst, nil, 10, 1)
	wantErrno(t, "copy_file_range with flags 1", err, unix.EINVAL)
}

func testUnlinkedOpenFile(t *testing.T, e *env) {
	p := e.writeFile(t, "file", []byte("still here"), 0o644)
	fd := open(t, p, unix.O_RDWR, 0)
	wantOK(t, "unlink", unix.Unlink(p))

	var scratch unix.Stat_t
	wantErrno(t, "stat after unlink", unix.Lstat(p, &scratch), unix.ENOENT)
	st := fstat(t, fd)
	if st.Nlink != 0 {
		t.Errorf("nlink of the unlinked open file %d, want 0", st.Nlink)
	}
	buf := make([]byte, 32)
	n, err := unix.Pread(fd, buf, 0)
	wantOK(t, "read the unlinked file", err)
	if string(buf[:n]) != "still here" {
		t.Errorf("read %q, want %q", buf[:n], "still here")
	}
	_, err = unix.Pwrite(fd, []byte(" and more"), 10)
	wantOK(t, "write the unlinked file", err)
	n, err = unix.Pread(fd, buf, 0)
	wantOK(t, "read the unlinked file", err)
	if string(buf[:n]) != "still here and more" {
		t.Errorf("read %q, want %q", buf[:n], "still here and more")
	}
	wantOK(t, "ftruncate the unlinked file", unix.Ftruncate(fd, 5))
	if st := fstat(t, fd); st.Size != 5 {
		t.Errorf("size %d, want 5", st.Size)
	}

	// A new file of the same name is a different inode.
	e.writeFile(t, "file", []byte("new"), 0o644)
	if newSt := lstat(t, p); newSt.Ino == st.Ino {
		t.Errorf("new file reuses the inode number %d of the unlinked open file", st.Ino)
	}
}
