// Package blockstore keeps sealed blocks as files in a directory.
//
// A block with id X (32 bytes) lives at DIR/XX/XXXX...: the first byte in
// hex names a fan-out directory, so no directory grows past a few thousand
// entries for trees of millions of blocks. The store treats block contents as
// opaque: sealing, signatures and versions are the block package's business.
//
// Put replaces a block atomically (write a temporary file, fsync it, rename
// it over the old one), so a crash leaves either the old version or the new
// one, never a mix. Renames become durable with Sync, which fsyncs every
// fan-out directory that changed since the last Sync; a checkpoint calls it
// once after writing all its blocks instead of once per block.
package blockstore

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// IDSize is the size of a block id.
const IDSize = 32

// ErrNotFound is returned by Get for a block that is not in the store.
var ErrNotFound = errors.New("block not found")

// Store is a directory of block files. It is safe for concurrent use.
type Store struct {
	dir string

	mu    sync.Mutex
	dirty map[string]bool // fan-out directories with unsynced renames
}

// Open returns the store in dir, which must exist.
func Open(dir string) (*Store, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open block store: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("open block store: %s is not a directory", dir)
	}
	return &Store{dir: dir, dirty: map[string]bool{}}, nil
}

// Path returns the file that holds block id.
func (s *Store) Path(id [IDSize]byte) string {
	name := hex.EncodeToString(id[:])
	return filepath.Join(s.dir, name[:2], name)
}

// Get returns the contents of block id.
func (s *Store) Get(id [IDSize]byte) ([]byte, error) {
	data, err := os.ReadFile(s.Path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("block %x: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read block %x: %w", id, err)
	}
	return data, nil
}

// Put stores data as block id, replacing any earlier version atomically.
// The new version is durable after the next Sync.
func (s *Store) Put(id [IDSize]byte, data []byte) error {
	path := s.Path(id)
	fanout := filepath.Dir(path)
	if err := os.MkdirAll(fanout, 0o700); err != nil {
		return fmt.Errorf("write block %x: %w", id, err)
	}
	f, err := os.CreateTemp(fanout, ".tmp-")
	if err != nil {
		return fmt.Errorf("write block %x: %w", id, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write block %x: %w", id, err)
	}

	s.mu.Lock()
	s.dirty[fanout] = true
	s.mu.Unlock()
	return nil
}

// Delete removes block id. Removing a missing block is not an error. The
// removal is durable after the next Sync.
func (s *Store) Delete(id [IDSize]byte) error {
	path := s.Path(id)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete block %x: %w", id, err)
	}
	s.mu.Lock()
	s.dirty[filepath.Dir(path)] = true
	s.mu.Unlock()
	return nil
}

// Sync makes every Put and Delete before it durable.
func (s *Store) Sync() error {
	s.mu.Lock()
	dirs := s.dirty
	s.dirty = map[string]bool{}
	s.mu.Unlock()

	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return syncDir(s.dir)
}

// List returns the ids of every block in the store, and removes temporary
// files that a crash during Put left behind.
func (s *Store) List() ([][IDSize]byte, error) {
	var ids [][IDSize]byte
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, ".tmp-") {
			return os.Remove(path)
		}
		raw, err := hex.DecodeString(name)
		if err != nil || len(raw) != IDSize {
			return fmt.Errorf("list blocks: unexpected file %s in the block store", path)
		}
		var id [IDSize]byte
		copy(id[:], raw)
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	return ids, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
