package blockstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/blocktree/blocktree/internal/testenv"
)

func TestPutGetReplaceDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := Ref{ID: [IDSize]byte{0xab, 1, 2}, Version: 3}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing block: %v, expected ErrNotFound", err)
	}
	for _, data := range [][]byte{[]byte("version 1"), []byte("version 2, longer")} {
		if err := s.Put(id, data); err != nil {
			t.Fatalf("Put: %v", err)
		}
		got, err := s.Get(id)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("Get = %q, expected %q", got, data)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v, expected ErrNotFound", err)
	}
	if err := s.Delete(id); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestListRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := []Ref{{ID: [IDSize]byte{1}}, {ID: [IDSize]byte{1}, Version: 2}, {ID: [IDSize]byte{0xff, 3}, Version: 1}}
	for _, id := range ids {
		if err := s.Put(id, []byte{id.ID[0]}); err != nil {
			t.Fatal(err)
		}
	}
	leftover := filepath.Join(dir, "01", ".tmp-12345")
	if err := os.WriteFile(leftover, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}

	listed, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(listed) != len(ids) {
		t.Errorf("List returned %d ids, expected %d", len(listed), len(ids))
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("List left the temporary file %s", leftover)
	}
}

func TestListRejectsForeignFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(); err == nil {
		t.Error("List accepted a file that is not a block")
	}
}

func TestGetDirectReadsEverySize(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	buf := NewBuffer(100)
	missing := Ref{ID: [IDSize]byte{0xcd}, Version: 1}
	if _, err := s.GetDirect(missing, buf); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetDirect of a missing block: %v, expected ErrNotFound", err)
	}
	// The sizes cross the alignment of direct reads and the buffer's first
	// size, and the buffer is reused after it grew.
	for i, size := range []int{0, 1, 100, 4095, 4096, 4097, 1<<20 + 123, 5000} {
		id := Ref{ID: [IDSize]byte{0xcd, byte(i)}, Version: 2}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(j*31 + i)
		}
		if err := s.Put(id, data); err != nil {
			t.Fatalf("Put of %d bytes: %v", size, err)
		}
		got, err := s.GetDirect(id, buf)
		if err != nil {
			t.Fatalf("GetDirect of %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("GetDirect of %d bytes returned %d bytes that differ from the stored ones", size, len(got))
		}
	}
}

func TestBufferIsAligned(t *testing.T) {
	for _, size := range []int{1, 4096, 1<<20 + 1} {
		b := NewBuffer(size)
		if addr := uintptr(unsafe.Pointer(unsafe.SliceData(b.data))); addr%directAlign != 0 {
			t.Errorf("buffer for %d bytes starts at %#x, not aligned to %d", size, addr, directAlign)
		}
		if len(b.data) < size {
			t.Errorf("buffer for %d bytes has length %d, shorter", size, len(b.data))
		}
		if len(b.data)%directAlign != 0 {
			t.Errorf("buffer for %d bytes has length %d, not a multiple of %d", size, len(b.data), directAlign)
		}
	}
}

// TestSyncLeavesNoCachedPages checks that the pages of the versions put
// since the last Sync leave the page cache once Sync has written them.
func TestSyncLeavesNoCachedPages(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ids := []Ref{{ID: [IDSize]byte{0xef}, Version: 1}, {ID: [IDSize]byte{0x01}, Version: 7}}
	for _, id := range ids {
		if err := s.Put(id, make([]byte, 1<<20)); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for _, id := range ids {
		if cached := testenv.CachedPages(t, s.Path(id)); cached != 0 {
			t.Errorf("%d pages of block %s are in the page cache after Sync, expected 0", cached, id)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	cases := []struct {
		release string
		want    bool
	}{
		{"5.8.0", true},
		{"5.7.19", false},
		{"6.1.0-18-amd64", true},
		{"4.19.0", false},
		{"5.10", true},
		{"10.0.1", true},
		{"unknown", false},
	}
	for _, c := range cases {
		if got := kernelAtLeast(c.release, 5, 8); got != c.want {
			t.Errorf("kernelAtLeast(%q, 5, 8) = %v, want %v", c.release, got, c.want)
		}
	}
}
