package blockstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
