package testenv

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CachedPages returns how many pages of the file at path the page cache
// holds, from mincore(2) over a read-only mapping of the file. Mapping the
// file does not load its pages. A file on tmpfs, whose pages are the
// file's only copy and never leave the cache, skips the test (see Missing).
func CachedPages(t testing.TB, path string) int {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		Missing(t, "%s is on tmpfs, whose pages cannot be dropped; set TMPDIR to a disk file system", path)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() == 0 {
		return 0
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %s: %v", path, err)
	}
	defer unix.Munmap(mem)
	pageSize := os.Getpagesize()
	vec := make([]byte, (len(mem)+pageSize-1)/pageSize)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(mem))), uintptr(len(mem)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		t.Fatalf("mincore %s: %v", path, errno)
	}
	cached := 0
	for _, v := range vec {
		cached += int(v & 1)
	}
	return cached
}
