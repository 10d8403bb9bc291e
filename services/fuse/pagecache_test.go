package fusefs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// readCountingFS counts the reads that reach the file system.
type readCountingFS struct {
	fsapi.FS
	reads atomic.Int64
}

func (f *readCountingFS) Read(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, h fsapi.HandleID, off int64, dest []byte) (int, error) {
	f.reads.Add(1)
	return f.FS.Read(ctx, c, ino, h, off, dest)
}

// TestPageCacheKeptUntilChanged checks that a file read again is served
// from the kernel's page cache. After a change through the mount or
// through another client of the file system, the next open reads from the
// daemon again and returns the new contents.
func TestPageCacheKeptUntilChanged(t *testing.T) {
	engine, _ := newEngine(t)
	counting := &readCountingFS{FS: engine}
	// With cached attributes the kernel would notice the other client's
	// change once more, when it next refreshes them, and drop its pages
	// itself (CAP_AUTO_INVAL_DATA). No attribute cache keeps the count of
	// reads to what this server decides.
	_, dir, _ := mountForTest(t, counting, Options{AttrTimeout: -1})
	path := filepath.Join(dir, "file")
	first := bytes.Repeat([]byte("first "), 20000)
	if err := os.WriteFile(path, first, 0o644); err != nil {
		t.Fatal(err)
	}

	readReaches := func(step string, want []byte) int64 {
		t.Helper()
		before := counting.reads.Load()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read %d bytes that differ from the %d expected", step, len(got), len(want))
		}
		return counting.reads.Load() - before
	}

	if n := readReaches("read after the write", first); n == 0 {
		t.Errorf("the first read after a write through the mount reached the daemon 0 times, expected at least once")
	}
	if n := readReaches("second read", first); n != 0 {
		t.Errorf("reading an unchanged file again reached the daemon %d times, expected 0 (page cache kept)", n)
	}

	// Another client of the engine changes the file: the next open must
	// drop the kernel's copy.
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	caller := &fsapi.Caller{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), PID: 1}
	ino := fsapi.Ino(st.Ino)
	h, err := engine.Open(context.Background(), caller, ino, syscall.O_WRONLY)
	if err != nil {
		t.Fatalf("open through the engine: %v", err)
	}
	second := bytes.Clone(first)
	copy(second, "other!")
	if _, err := engine.Write(context.Background(), caller, ino, h, 0, []byte("other!")); err != nil {
		t.Fatalf("write through the engine: %v", err)
	}
	if err := engine.Release(context.Background(), ino, h); err != nil {
		t.Fatal(err)
	}
	if n := readReaches("read after another client's write", second); n == 0 {
		t.Errorf("the read after another client's write reached the daemon 0 times, expected at least once")
	}
	if n := readReaches("read again", second); n != 0 {
		t.Errorf("reading the file again reached the daemon %d times, expected 0", n)
	}

	// A write through the mount drops the cache at the next open too.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("third!"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	third := bytes.Clone(second)
	copy(third, "third!")
	if n := readReaches("read after a write through the mount", third); n == 0 {
		t.Errorf("the read after a write through the mount reached the daemon 0 times, expected at least once")
	}
}
