package fsys

import "github.com/blocktree/blocktree/services/storage/fsapi"

// DefaultCachedChunks is the number of loaded chunks (1 MiB each) that an
// engine keeps in memory by default.
const DefaultCachedChunks = 256

// chunkKey names one chunk of one file.
type chunkKey struct {
	ino   fsapi.Ino
	chunk uint64
}

// chunkCache bounds the chunks that the engine loaded. It
// remembers them in the order they were loaded and gives back the oldest
// once there are more than its limit: first in, first out, which costs one
// slice append per load and nothing per read.
type chunkCache struct {
	limit int
	queue []chunkKey
	head  int
	// stamp is the position in queue of each chunk's latest load, so that a
	// chunk loaded again is not evicted for its earlier load.
	stamp map[chunkKey]int
	base  int // the number of entries dropped from the front of queue
}

// minCachedChunks is the smallest bound: a read of fsapi.MaxWrite bytes
// touches two chunks, and both must stay while it copies them.
const minCachedChunks = 4

func newChunkCache(limit int) chunkCache {
	if limit <= 0 {
		limit = DefaultCachedChunks
	}
	return chunkCache{limit: max(limit, minCachedChunks), stamp: make(map[chunkKey]int)}
}

// add records that ino's chunk was loaded.
func (c *chunkCache) add(ino fsapi.Ino, chunk uint64) {
	key := chunkKey{ino, chunk}
	c.stamp[key] = c.base + len(c.queue)
	c.queue = append(c.queue, key)
}

// victims removes the oldest chunks beyond the limit and returns them. The
// caller evicts them. Evicting one that is dirty or already evicted does
// nothing, so the caller need not check.
func (c *chunkCache) victims() []chunkKey {
	var out []chunkKey
	for len(c.stamp) > c.limit {
		old := c.queue[c.head]
		pos := c.base + c.head
		c.head++
		if c.stamp[old] == pos {
			delete(c.stamp, old)
			out = append(out, old)
		}
	}
	if c.head > len(c.queue)/2 && c.head > 64 {
		c.base += c.head
		c.queue = append(c.queue[:0], c.queue[c.head:]...)
		c.head = 0
	}
	return out
}
