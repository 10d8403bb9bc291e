package fsys

import (
	"maps"
	"math/bits"
	"slices"
)

// sectorChunk holds the stored sectors of one chunk: slot i is sector
// c·ChunkSectors+i. A stored slot with a nil pointer is reserved.
type sectorChunk struct {
	slots  [ChunkSectors]*sector
	stored [ChunkSectors / 64]uint64 // bit i is set when slot i is stored
	count  int                       // stored slots
}

// has reports whether slot i is stored.
func (ch *sectorChunk) has(i uint64) bool { return ch.stored[i/64]&(1<<(i%64)) != 0 }

// each calls fn for the stored slots in increasing order, with the index of
// their sector, until fn returns false. fn may delete the sector it gets.
func (ch *sectorChunk) each(c uint64, fn func(index uint64, sec *sector) bool) bool {
	for w := range ch.stored {
		left := ch.stored[w]
		for left != 0 {
			i := uint64(w*64 + bits.TrailingZeros64(left))
			left &= left - 1
			if !fn(c*ChunkSectors+i, ch.slots[i]) {
				return false
			}
		}
	}
	return true
}

// sectorMap maps the indexes of a file's stored sectors to their memory,
// as sparseData.sectors describes. It keeps the sectors of a chunk in one
// array, so a read, a load or an eviction of a chunk looks up the map once
// instead of once per sector. A dense chunk's layout then takes about
// 2 KiB instead of about 5 KiB in map entries.
//
// NOTE: a file that stores one or two sectors in each of many chunks costs
// more memory than with a map entry per sector: about 2 KiB per chunk.
type sectorMap struct {
	chunks map[uint64]*sectorChunk
	count  int // stored sectors
}

func newSectorMap() sectorMap { return sectorMap{chunks: make(map[uint64]*sectorChunk)} }

// len returns the number of stored sectors.
func (m *sectorMap) len() int { return m.count }

// get returns the memory of sector index and whether it is stored.
func (m *sectorMap) get(index uint64) (*sector, bool) {
	ch := m.chunks[chunkOf(index)]
	if ch == nil {
		return nil, false
	}
	i := index % ChunkSectors
	return ch.slots[i], ch.has(i)
}

// set stores sector index with memory sec, nil for a reserved sector.
func (m *sectorMap) set(index uint64, sec *sector) {
	c := chunkOf(index)
	ch := m.chunks[c]
	if ch == nil {
		ch = new(sectorChunk)
		m.chunks[c] = ch
	}
	i := index % ChunkSectors
	if !ch.has(i) {
		ch.stored[i/64] |= 1 << (i % 64)
		ch.count++
		m.count++
	}
	ch.slots[i] = sec
}

// delete turns sector index into a hole.
func (m *sectorMap) delete(index uint64) {
	c := chunkOf(index)
	ch := m.chunks[c]
	i := index % ChunkSectors
	if ch == nil || !ch.has(i) {
		return
	}
	ch.stored[i/64] &^= 1 << (i % 64)
	ch.slots[i] = nil
	ch.count--
	m.count--
	if ch.count == 0 {
		delete(m.chunks, c)
	}
}

// each calls fn for every stored sector until fn returns false: chunk by
// chunk in no particular order, and in increasing order within a chunk. fn
// may delete the sector it gets and change the memory of any stored one.
func (m *sectorMap) each(fn func(index uint64, sec *sector) bool) {
	for c, ch := range m.chunks {
		if !ch.each(c, fn) {
			return
		}
	}
}

// sortedChunks returns the chunks that store sectors in increasing order.
func (m *sectorMap) sortedChunks() []uint64 { return slices.Sorted(maps.Keys(m.chunks)) }
