package fsys

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

func TestReadWrite(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	before := getattr(t, e, ino)

	n, err := e.Write(ctx, userCaller, ino, h, 5000, []byte("hello"))
	mustOK(t, err)
	if n != 5 {
		t.Errorf("Write = %d, expected 5", n)
	}
	attr := getattr(t, e, ino)
	if attr.Size != 5005 || attr.Blocks != sectorBlocks {
		t.Errorf("size %d blocks %d, expected 5005 and one sector (%d)", attr.Size, attr.Blocks, sectorBlocks)
	}
	if attr.Mtime <= before.Mtime || attr.Ctime <= before.Ctime || attr.Atime != before.Atime {
		t.Errorf("times after write: %+v, expected mtime and ctime to advance and atime to stay", attr)
	}
	if ent := j.lastEntry(t); ent.Op != OpWrite || ent.Offset != 5000 || string(ent.Data) != "hello" {
		t.Errorf("entry = %s at %d with %q, expected a write of hello at 5000", ent.Op, ent.Offset, ent.Data)
	}

	buf := make([]byte, 6000)
	n, err = e.Read(ctx, userCaller, ino, h, 0, buf)
	mustOK(t, err)
	want := append(make([]byte, 5000), "hello"...)
	if n != 5005 || !bytes.Equal(buf[:n], want) {
		t.Errorf("Read = %d bytes, expected 5000 zeros and hello", n)
	}
	n, err = e.Read(ctx, userCaller, ino, h, 9000, buf)
	if n != 0 || err != nil {
		t.Errorf("Read past the end = %d, %v, expected 0, nil", n, err)
	}
	atime := getattr(t, e, ino).Atime
	if atime != before.Atime {
		t.Errorf("atime changed on read (%d → %d), expected noatime behaviour", before.Atime, atime)
	}
}

func TestReadWriteErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	readOnly, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)
	writeOnly, err := e.Open(ctx, userCaller, ino, syscall.O_WRONLY)
	mustOK(t, err)
	buf := make([]byte, 10)

	_, err = e.Read(ctx, userCaller, ino, 9999, 0, buf)
	wantErrno(t, err, syscall.EBADF)
	_, err = e.Write(ctx, userCaller, ino, readOnly, 0, buf)
	wantErrno(t, err, syscall.EBADF)
	_, err = e.Read(ctx, userCaller, ino, writeOnly, 0, buf)
	wantErrno(t, err, syscall.EBADF)
	_, err = e.Read(ctx, userCaller, dir, h, 0, buf)
	wantErrno(t, err, syscall.EBADF)
	_, err = e.Write(ctx, userCaller, ino, h, -1, buf)
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.Write(ctx, userCaller, ino, h, 0, make([]byte, fsapi.MaxWrite+1))
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.Write(ctx, userCaller, ino, h, int64(MaxFileSize), []byte("x"))
	wantErrno(t, err, syscall.EFBIG)
	wantErrno(t, e.Release(ctx, ino, 9999), syscall.EBADF)
	wantErrno(t, e.Flush(ctx, userCaller, ino, 9999, 1), syscall.EBADF)
	wantErrno(t, e.Fsync(ctx, userCaller, ino, 9999, false), syscall.EBADF)
}

func TestOpenFlags(t *testing.T) {
	e, j := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, []byte("content"))
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)

	_, err := e.Open(ctx, userCaller, file, syscall.O_RDONLY|syscall.O_DIRECTORY)
	wantErrno(t, err, syscall.ENOTDIR)
	_, err = e.Open(ctx, userCaller, dir, syscall.O_WRONLY)
	wantErrno(t, err, syscall.EISDIR)
	_, err = e.Open(ctx, userCaller, dir, syscall.O_RDWR)
	wantErrno(t, err, syscall.EISDIR)
	_, err = e.Open(ctx, otherCaller, file, syscall.O_WRONLY)
	wantErrno(t, err, syscall.EACCES)
	_, err = e.Open(ctx, otherCaller, file, syscall.O_RDONLY|syscall.O_TRUNC)
	wantErrno(t, err, syscall.EACCES)
	h, err := e.Open(ctx, otherCaller, file, syscall.O_RDONLY)
	mustOK(t, err)
	mustOK(t, e.Release(ctx, file, h))

	h, err = e.Open(ctx, userCaller, file, syscall.O_WRONLY|syscall.O_TRUNC)
	mustOK(t, err)
	if attr := getattr(t, e, file); attr.Size != 0 || attr.Blocks != 0 {
		t.Errorf("after O_TRUNC: size %d blocks %d, expected 0 and 0", attr.Size, attr.Blocks)
	}
	if ent := j.lastEntry(t); ent.Op != OpSetAttr || ent.Flags&AttrSize == 0 || ent.Size != 0 {
		t.Errorf("O_TRUNC entry = %+v, expected a setattr of size 0", ent)
	}
	mustOK(t, e.Release(ctx, file, h))
}

func TestAppendWritesAtEnd(t *testing.T) {
	e, j := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "log", 0o644, []byte("one\n"))
	h, err := e.Open(ctx, userCaller, file, syscall.O_WRONLY|syscall.O_APPEND)
	mustOK(t, err)

	_, err = e.Write(ctx, userCaller, file, h, 0, []byte("two\n"))
	mustOK(t, err)
	if ent := j.lastEntry(t); ent.Offset != 4 {
		t.Errorf("append entry offset = %d, expected the end of the file (4)", ent.Offset)
	}
	if got := readAll(t, e, file); string(got) != "one\ntwo\n" {
		t.Errorf("content = %q, expected one\\ntwo\\n", got)
	}
}

func TestWriteClearsSetuid(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "prog", 0o6755)
	_, err := e.Write(ctx, userCaller, ino, h, 0, []byte("x"))
	mustOK(t, err)
	if mode := getattr(t, e, ino).Mode; mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
		t.Errorf("mode after a write by a non-root caller = %#o, expected setuid and setgid cleared", mode)
	}

	rootFile, rh := create(t, e, rootCaller, fsapi.RootIno, "rootprog", 0o4755)
	_, err = e.Write(ctx, rootCaller, rootFile, rh, 0, []byte("x"))
	mustOK(t, err)
	if mode := getattr(t, e, rootFile).Mode; mode&syscall.S_ISUID == 0 {
		t.Errorf("mode after a write by root = %#o, expected setuid kept", mode)
	}
}

func TestHolesAtOneGiB(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "sparse", 0o644)
	const gib = 1 << 30
	data := []byte("far away")

	_, err := e.Write(ctx, userCaller, ino, h, gib, data)
	mustOK(t, err)
	attr := getattr(t, e, ino)
	if attr.Size != gib+uint64(len(data)) {
		t.Errorf("size = %d, expected %d", attr.Size, gib+len(data))
	}
	if attr.Blocks != sectorBlocks {
		t.Errorf("blocks = %d, expected one sector (%d)", attr.Blocks, sectorBlocks)
	}

	tests := []struct {
		name   string
		off    int64
		whence uint32
		want   int64
	}{
		{"data from 0", 0, seekData, gib},
		{"hole from 0", 0, seekHole, 0},
		{"data inside the data", gib + 3, seekData, gib + 3},
		{"hole after the data is the end", gib, seekHole, gib + int64(len(data))},
		{"set", 42, seekSet, 42},
		{"end", -1, seekEnd, gib + int64(len(data)) - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Lseek(ctx, userCaller, ino, h, tt.off, tt.whence)
			mustOK(t, err)
			if got != tt.want {
				t.Errorf("Lseek(%d, %d) = %d, expected %d", tt.off, tt.whence, got, tt.want)
			}
		})
	}
	_, err = e.Lseek(ctx, userCaller, ino, h, gib+int64(len(data)), seekData)
	wantErrno(t, err, syscall.ENXIO)
	_, err = e.Lseek(ctx, userCaller, ino, h, gib+100, seekHole)
	wantErrno(t, err, syscall.ENXIO)
	_, err = e.Lseek(ctx, userCaller, ino, h, 0, seekCur)
	wantErrno(t, err, syscall.EINVAL)

	buf := make([]byte, 16)
	n, err := e.Read(ctx, userCaller, ino, h, gib-8, buf)
	mustOK(t, err)
	want := append(make([]byte, 8), data...)
	if n != 16 || !bytes.Equal(buf, want) {
		t.Errorf("read across the hole = %q, expected 8 zeros then %q", buf[:n], data)
	}
}

func TestSeekDataPastLastSector(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	_, err := e.Write(ctx, userCaller, ino, h, 0, []byte("x"))
	mustOK(t, err)
	truncateTo(t, e, ino, 3*SectorSize)

	_, err = e.Lseek(ctx, userCaller, ino, h, SectorSize, seekData)
	wantErrno(t, err, syscall.ENXIO)
	got, err := e.Lseek(ctx, userCaller, ino, h, 0, seekHole)
	mustOK(t, err)
	if got != SectorSize {
		t.Errorf("SEEK_HOLE = %d, expected %d", got, SectorSize)
	}
}

func truncateTo(t *testing.T, e *Engine, ino fsapi.Ino, size uint64) {
	t.Helper()
	_, err := e.SetAttr(ctx, rootCaller, ino, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: size})
	mustOK(t, err)
}

func TestFallocateModes(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)

	mustOK(t, e.Fallocate(ctx, userCaller, ino, h, 0, 0, 3*SectorSize))
	attr := getattr(t, e, ino)
	if attr.Size != 3*SectorSize || attr.Blocks != 3*sectorBlocks {
		t.Errorf("after mode 0: size %d blocks %d, expected %d and %d", attr.Size, attr.Blocks, 3*SectorSize, 3*sectorBlocks)
	}
	if got := readAll(t, e, ino); !bytes.Equal(got, make([]byte, 3*SectorSize)) {
		t.Errorf("reserved sectors do not read as zeros")
	}

	mustOK(t, e.Fallocate(ctx, userCaller, ino, h, FallocKeepSize, 3*SectorSize, 2*SectorSize))
	attr = getattr(t, e, ino)
	if attr.Size != 3*SectorSize || attr.Blocks != 5*sectorBlocks {
		t.Errorf("after KEEP_SIZE: size %d blocks %d, expected %d and %d", attr.Size, attr.Blocks, 3*SectorSize, 5*sectorBlocks)
	}

	_, err := e.Write(ctx, userCaller, ino, h, 0, bytes.Repeat([]byte{0xaa}, 3*SectorSize))
	mustOK(t, err)
	// Punch the middle sector whole and half of the first.
	mustOK(t, e.Fallocate(ctx, userCaller, ino, h, FallocPunchHole|FallocKeepSize, SectorSize/2, SectorSize+SectorSize/2))
	attr = getattr(t, e, ino)
	if attr.Size != 3*SectorSize || attr.Blocks != 4*sectorBlocks {
		t.Errorf("after punch: size %d blocks %d, expected %d and %d", attr.Size, attr.Blocks, 3*SectorSize, 4*sectorBlocks)
	}
	got := readAll(t, e, ino)
	want := append(bytes.Repeat([]byte{0xaa}, SectorSize/2), make([]byte, SectorSize+SectorSize/2)...)
	want = append(want, bytes.Repeat([]byte{0xaa}, SectorSize)...)
	if !bytes.Equal(got, want) {
		t.Errorf("content after punch differs from the expected zeros in [%d, %d)", SectorSize/2, 2*SectorSize)
	}
	hole, err := e.Lseek(ctx, userCaller, ino, h, 0, seekHole)
	mustOK(t, err)
	if hole != SectorSize {
		t.Errorf("SEEK_HOLE after punch = %d, expected %d", hole, SectorSize)
	}
	if ent := j.lastEntry(t); ent.Op != OpFallocate || ent.Flags != FallocPunchHole|FallocKeepSize {
		t.Errorf("entry = %s mode %#x, expected a punch-hole fallocate", ent.Op, ent.Flags)
	}
	compareEngines(t, "replay of fallocate", e, replay(t, j.snapshot()))
}

func TestFallocateErrors(t *testing.T) {
	e, _ := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	readOnly, err := e.Open(ctx, userCaller, ino, syscall.O_RDONLY)
	mustOK(t, err)

	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, FallocPunchHole, 0, 10), syscall.EOPNOTSUPP)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, 0x10, 0, 10), syscall.EOPNOTSUPP)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, 0, 0, 0), syscall.EINVAL)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, 0, -1, 10), syscall.EINVAL)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, readOnly, 0, 0, 10), syscall.EBADF)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, 0, int64(MaxFileSize), 10), syscall.EFBIG)
}

func TestCapacityLimitsWrites(t *testing.T) {
	e, _ := newTestEngineWith(t, func(o *Options) { o.Capacity = 4 * SectorSize })
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)

	_, err := e.Write(ctx, userCaller, ino, h, 0, bytes.Repeat([]byte{1}, 4*SectorSize))
	mustOK(t, err)
	_, err = e.Write(ctx, userCaller, ino, h, 4*SectorSize, []byte("x"))
	wantErrno(t, err, syscall.ENOSPC)
	wantErrno(t, e.Fallocate(ctx, userCaller, ino, h, 0, 8*SectorSize, SectorSize), syscall.ENOSPC)
	// Overwriting stored sectors needs no new space.
	_, err = e.Write(ctx, userCaller, ino, h, 100, []byte("x"))
	mustOK(t, err)

	st, err := e.StatFS(ctx, userCaller, fsapi.RootIno)
	mustOK(t, err)
	if st.Blocks != 4 || st.Bfree != 0 || st.Bavail != 0 || st.Bsize != SectorSize || st.NameLen != 255 {
		t.Errorf("StatFS = %+v, expected 4 blocks, none free", st)
	}
}

func TestStatFSWithoutCapacity(t *testing.T) {
	e, _ := newTestEngine(t)
	createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, bytes.Repeat([]byte{1}, 2*SectorSize))
	st, err := e.StatFS(ctx, userCaller, fsapi.RootIno)
	mustOK(t, err)
	if st.Blocks-st.Bfree != 2 || st.Files != 2+st.Ffree {
		t.Errorf("StatFS = %+v, expected 2 used blocks and 2 inodes", st)
	}
}

func TestCopyFileRange(t *testing.T) {
	e, j := newTestEngine(t)
	src := createFile(t, e, userCaller, fsapi.RootIno, "src", 0o644, []byte("0123456789"))
	dst, dh := create(t, e, userCaller, fsapi.RootIno, "dst", 0o644)
	sh, err := e.Open(ctx, userCaller, src, syscall.O_RDONLY)
	mustOK(t, err)

	n, err := e.CopyFileRange(ctx, userCaller, src, sh, 2, dst, dh, 100, 5, 0)
	mustOK(t, err)
	if n != 5 {
		t.Errorf("copied %d bytes, expected 5", n)
	}
	got := readAll(t, e, dst)
	if len(got) != 105 || string(got[100:]) != "23456" {
		t.Errorf("destination = %d bytes ending in %q, expected 105 ending in 23456", len(got), got[100:])
	}
	if ent := j.lastEntry(t); ent.Op != OpWrite || string(ent.Data) != "23456" || ent.Offset != 100 {
		t.Errorf("entry = %s %q at %d, expected a self-contained write", ent.Op, ent.Data, ent.Offset)
	}

	n, err = e.CopyFileRange(ctx, userCaller, src, sh, 8, dst, dh, 0, 100, 0)
	mustOK(t, err)
	if n != 2 {
		t.Errorf("copy near the end = %d bytes, expected 2", n)
	}
	n, err = e.CopyFileRange(ctx, userCaller, src, sh, 50, dst, dh, 0, 100, 0)
	if err != nil || n != 0 {
		t.Errorf("copy past the end = %d, %v, expected 0, nil", n, err)
	}
	srcWrite, err := e.Open(ctx, userCaller, src, syscall.O_RDWR)
	mustOK(t, err)
	_, err = e.CopyFileRange(ctx, userCaller, src, srcWrite, 0, src, srcWrite, 4, 6, 0)
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.CopyFileRange(ctx, userCaller, src, sh, 0, dst, dh, 0, 1, 1)
	wantErrno(t, err, syscall.EINVAL)
	_, err = e.CopyFileRange(ctx, userCaller, src, sh, 0, dst, sh, 0, 1, 0)
	wantErrno(t, err, syscall.EBADF)
}

func TestFsyncSyncsJournal(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	dir := mkdir(t, e, userCaller, fsapi.RootIno, "d", 0o755)
	dh, err := e.OpenDir(ctx, userCaller, dir, syscall.O_RDONLY)
	mustOK(t, err)

	mustOK(t, e.Fsync(ctx, userCaller, ino, h, false))
	mustOK(t, e.FsyncDir(ctx, userCaller, dir, dh))
	mustOK(t, e.SyncFS(ctx, userCaller))
	if j.syncs != 3 {
		t.Errorf("journal syncs = %d, expected 3", j.syncs)
	}
}

func TestTruncateZeroesTail(t *testing.T) {
	e, j := newTestEngine(t)
	file := createFile(t, e, userCaller, fsapi.RootIno, "f", 0o644, bytes.Repeat([]byte{0xff}, 2*SectorSize))

	_, err := e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 10})
	mustOK(t, err)
	_, err = e.SetAttr(ctx, userCaller, file, &fsapi.SetAttrIn{Valid: fsapi.SetSize, Size: 100})
	mustOK(t, err)
	got := readAll(t, e, file)
	want := append(bytes.Repeat([]byte{0xff}, 10), make([]byte, 90)...)
	if !bytes.Equal(got, want) {
		t.Errorf("after shrinking and growing: %x, expected 10 bytes of ff then zeros", got)
	}
	if blocks := getattr(t, e, file).Blocks; blocks != sectorBlocks {
		t.Errorf("blocks = %d, expected one sector", blocks)
	}
	compareEngines(t, "replay of truncations", e, replay(t, j.snapshot()))
}

func TestZeroSectorsBecomeHoles(t *testing.T) {
	e, j := newTestEngine(t)
	ino, h := create(t, e, userCaller, fsapi.RootIno, "f", 0o644)
	_, err := e.Write(ctx, userCaller, ino, h, 0, bytes.Repeat([]byte{1}, 3*SectorSize))
	mustOK(t, err)

	// Zeros over the middle sector, then over half of the last one.
	_, err = e.Write(ctx, userCaller, ino, h, SectorSize, make([]byte, SectorSize))
	mustOK(t, err)
	_, err = e.Write(ctx, userCaller, ino, h, 2*SectorSize, make([]byte, SectorSize/2))
	mustOK(t, err)
	if blocks := getattr(t, e, ino).Blocks; blocks != 2*sectorBlocks {
		t.Errorf("blocks = %d, expected 2 sectors after zeroing the middle one", blocks)
	}
	hole, err := e.Lseek(ctx, userCaller, ino, h, 0, seekHole)
	mustOK(t, err)
	if hole != SectorSize {
		t.Errorf("SEEK_HOLE = %d, expected the zeroed sector at %d", hole, SectorSize)
	}

	// A fresh file of zeros stores nothing but has its size.
	zeros := createFile(t, e, userCaller, fsapi.RootIno, "zeros", 0o644, make([]byte, 2*SectorSize))
	if attr := getattr(t, e, zeros); attr.Size != 2*SectorSize || attr.Blocks != 0 {
		t.Errorf("zero file: size %d blocks %d, expected %d and 0", attr.Size, attr.Blocks, 2*SectorSize)
	}
	compareEngines(t, "replay of zero writes", e, replay(t, j.snapshot()))
}
