package fsys

import (
	"errors"
	"maps"
	"slices"
	"syscall"
)

// Reads load evicted chunks without holding e.mu, so that other requests
// go on while a chunk is read from disk, checked and decrypted, and a
// sequential reader has the next chunks loaded ahead of it on another core.
// Writes, truncates and replayed entries load under e.mu (loadRange), which
// is simpler because they change the chunk right after.

// readAhead is the number of chunks after the one a sequential read
// reaches that are loaded in the background. Loading a chunk is mostly
// CPU time (hashing, a signature check, decryption), so more chunks in
// flight keep both cores of a small machine busy. Reading 1 GiB on the
// machine of docs/benchmarks.md ran at 727 MB/s on average with 6 (612
// to 786), against 680 MB/s with 3 (625 to 724), twelve reads each.
const readAhead = 6

// evictedIn returns the evicted chunks that [off, off+length) touches, in
// increasing order. It walks the shorter of the range and the evicted set.
func (s *sparseData) evictedIn(off, length uint64) []uint64 {
	if len(s.evicted) == 0 || length == 0 {
		return nil
	}
	first, last := chunkRange(off, length)
	var chunks []uint64
	if last-first >= uint64(len(s.evicted)) {
		for _, c := range slices.Sorted(maps.Keys(s.evicted)) {
			if c >= first && c <= last {
				chunks = append(chunks, c)
			}
		}
		return chunks
	}
	for c := first; c <= last; c++ {
		if s.evicted[c] != 0 {
			chunks = append(chunks, c)
		}
	}
	return chunks
}

// fetch loads chunk c of the regular file n with e.mu released, or waits
// for the load that another goroutine has started. It returns with e.mu
// held. The state may have changed meanwhile, so the caller checks again
// what it needs, and calls fetch again if the chunk is still evicted.
func (e *Engine) fetch(n *inode, c uint64) error {
	key := chunkKey{n.attr.Ino, c}
	if done, ok := e.loading[key]; ok {
		e.mu.Unlock()
		<-done
		e.mu.Lock()
		return e.stillUsable(n)
	}
	if e.loader == nil {
		return e.installChunk(n, c, nil, errors.New("no loader is configured"), true)
	}
	done := make(chan struct{})
	e.loading[key] = done
	blockID, eviction := n.blockID, n.data.evicted[c]
	e.mu.Unlock()
	data, err := e.loader.LoadChunk(key.ino, blockID, c)
	e.mu.Lock()
	delete(e.loading, key)
	close(done)
	if err := e.stillUsable(n); err != nil {
		return err
	}
	if n.data.evicted[c] != eviction {
		// A write loaded it meanwhile, and a checkpoint may have stored a
		// newer version and evicted it again: what was loaded may be old.
		return nil
	}
	return e.installChunk(n, c, data, err, true)
}

// stillUsable reports EIO when n was freed or damaged while e.mu was
// released. An open handle keeps n from being freed, so only damage
// is expected here.
func (e *Engine) stillUsable(n *inode) error {
	if e.inodes[n.attr.Ino] != n || n.damaged != "" || n.data == nil {
		return syscall.EIO
	}
	return nil
}

// prefetch starts loading the evicted chunks of n after chunk c, up to
// readAhead of them, in the background. A failed load is left for the
// read that needs the chunk, which then reports it. e.mu is held.
func (e *Engine) prefetch(n *inode, c uint64) {
	if e.loader == nil {
		return
	}
	for next := c + 1; next <= c+readAhead && next*ChunkSize < n.attr.Size; next++ {
		key := chunkKey{n.attr.Ino, next}
		eviction := n.data.evicted[next]
		if eviction == 0 || e.loading[key] != nil {
			continue
		}
		done := make(chan struct{})
		e.loading[key] = done
		go func(blockID [32]byte) {
			data, err := e.loader.LoadChunk(key.ino, blockID, key.chunk)
			e.mu.Lock()
			defer e.mu.Unlock()
			delete(e.loading, key)
			close(done)
			if err != nil || e.stillUsable(n) != nil || n.data.evicted[key.chunk] != eviction {
				return
			}
			e.installChunk(n, key.chunk, data, nil, true)
		}(n.blockID)
	}
}
