package fsys

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"unsafe"
)

// SectorSize is the unit of file data storage: a file is a sparse set of
// sectors, each stored whole. It equals the block layer's sector size, so a
// stored sector maps onto one sealed block sector.
const SectorSize = 4096

// sectorBlocks is the number of 512-byte units that Attr.Blocks counts for
// one stored sector.
const sectorBlocks = SectorSize / 512

// ChunkSectors is the number of sectors in a chunk. The persistence layer
// stores a regular file's data as one block per chunk, so a checkpoint
// writes only the chunks that changed and a read loads only the chunk it
// needs.
const ChunkSectors = 256

// ChunkSize is the number of bytes of file data in a chunk: 1 MiB.
const ChunkSize = ChunkSectors * SectorSize

// sector is the content of one stored sector. A nil *sector in sparseData is
// a sector that fallocate reserved and no write has filled yet. It reads as
// zeros, counts as stored and costs no data memory.
type sector [SectorSize]byte

// evictions numbers each eviction of a chunk, so that a load that ran
// without the engine's lock can tell whether the chunk it loaded was loaded,
// changed and evicted again meanwhile.
var evictions atomic.Uint64

// evictedSector marks a sector with data that is not in memory: its chunk
// was evicted and must be loaded before the sector is read or changed.
var evictedSector = new(sector)

// sparseData is the content of a regular file. A sector index that is absent
// is a hole and reads as zeros.
//
// Invariant: every byte at or past the file size reads as zero, so that
// extending the file by truncate or by a write past the end exposes zeros.
// Writes past the size extend it, truncation zeroes the tail of the last
// sector and drops every sector past it, and fallocate only adds zeros.
//
// A written sector whose bytes are all zero after a write, punch or
// truncation is dropped and becomes a hole, so explicit zeros cost no
// space and SEEK_HOLE may report them (docs/fs.md lists this difference
// from ext4). Reserved sectors stay until they are written or punched.
//
// The layout (which sectors are stored, and which of those only reserved)
// is always in memory. The data sectors of a chunk are either all in
// memory or all evictedSector; the engine loads a chunk before it reads or
// changes it.
type sparseData struct {
	sectors sectorMap
	evicted map[uint64]uint64 // chunks whose data sectors are not in memory → eviction number
	dirty   map[uint64]uint64 // chunk → seq of the last entry that changed it
	frozen  map[uint64]bool   // chunks whose sectors a checkpoint in progress reads
}

func newSparseData() *sparseData {
	return &sparseData{
		sectors: newSectorMap(),
		evicted: make(map[uint64]uint64),
		dirty:   make(map[uint64]uint64),
		frozen:  make(map[uint64]bool),
	}
}

func chunkOf(index uint64) uint64 { return index / ChunkSectors }

// chunkRange returns the first and last chunk that [off, off+length)
// touches. The length must not be zero.
func chunkRange(off, length uint64) (first, last uint64) {
	return off / ChunkSize, (off + length - 1) / ChunkSize
}

// changed records that seq changed the chunk of sector index.
func (s *sparseData) changed(index, seq uint64) { s.dirty[chunkOf(index)] = seq }

// dataChanged records that seq changed every chunk that holds data. A file
// that grows past InlineSize needs it: its data was stored in its inode
// block, and must now go to a chunk block although no entry changed it.
func (s *sparseData) dataChanged(seq uint64) {
	for _, c := range s.dataChunks() {
		s.dirty[c] = seq
	}
}

// mutable returns sector index ready to be changed in place: a new zero
// sector for a reserved one, and a copy for one that a checkpoint in
// progress still reads (copy on write).
func (s *sparseData) mutable(index uint64) []byte {
	sec, _ := s.sectors.get(index)
	switch {
	case sec == evictedSector:
		panic(fmt.Sprintf("fsys: sector %d changed while its chunk is evicted", index))
	case sec == nil:
		// Sliced here, where the compiler can prove that new does not
		// return nil. A nil check in the caller would read the fresh page
		// before the first write. That read maps the shared zero page, and
		// the write then copies it and flushes the TLB of every CPU. These
		// faults took a quarter of the CPU time of a large write.
		sec = new(sector)
		s.sectors.set(index, sec)
		return sec[:]
	case s.frozen[chunkOf(index)]:
		fresh := new(sector)
		*fresh = *sec
		s.sectors.set(index, fresh)
		return fresh[:]
	}
	return sec[:]
}

// readAt copies the bytes of [off, off+len(p)) into p. The caller limits the
// range to the file size and loads its chunks.
func (s *sparseData) readAt(p []byte, off uint64) {
	var ch *sectorChunk
	chunk := ^uint64(0)
	for len(p) > 0 {
		index := off / SectorSize
		start := off % SectorSize
		n := min(uint64(len(p)), SectorSize-start)
		if c := chunkOf(index); c != chunk {
			ch, chunk = s.sectors.chunks[c], c
		}
		var sec *sector
		if ch != nil {
			sec = ch.slots[index%ChunkSectors]
		}
		switch sec {
		case nil:
			clear(p[:n])
		case evictedSector:
			panic(fmt.Sprintf("fsys: sector %d read while its chunk is evicted", index))
		default:
			copy(p[:n], sec[start:start+n])
		}
		p = p[n:]
		off += n
	}
}

// slabSectors is the fewest new sectors in one chunk that a write
// allocates together, as one slab whose pages the kernel maps in one call
// (populate) instead of one page fault each.
const slabSectors = 16

// prepareSectors gives every hole and reserved sector of [off, off+length)
// fresh memory, in chunks that no checkpoint reads and that get at least
// slabSectors of them. Those of one chunk come from one slab. It returns
// how many of them were holes.
func (s *sparseData) prepareSectors(off, length uint64) int64 {
	if length < slabSectors*SectorSize {
		return 0
	}
	var holes int64
	first, last := off/SectorSize, (off+length-1)/SectorSize
	for c := chunkOf(first); c <= chunkOf(last); c++ {
		if s.frozen[c] {
			continue
		}
		lo, hi := max(first, c*ChunkSectors), min(last, c*ChunkSectors+ChunkSectors-1)
		var fresh []uint64
		for index := lo; index <= hi; index++ {
			if sec, _ := s.sectors.get(index); sec == nil {
				fresh = append(fresh, index)
			}
		}
		if len(fresh) < slabSectors {
			continue
		}
		slab := make([]sector, len(fresh))
		populate(unsafe.Slice(&slab[0][0], len(slab)*SectorSize))
		for i, index := range fresh {
			if _, stored := s.sectors.get(index); !stored {
				holes++
			}
			s.sectors.set(index, &slab[i])
		}
	}
	return holes
}

// writeAt stores data at off for entry seq and returns the change in the
// number of stored sectors, which is negative when zeros overwrite data.
func (s *sparseData) writeAt(data []byte, off, seq uint64) int64 {
	delta := s.prepareSectors(off, uint64(len(data)))
	for len(data) > 0 {
		index := off / SectorSize
		start := off % SectorSize
		n := min(uint64(len(data)), SectorSize-start)
		if _, stored := s.sectors.get(index); !stored {
			delta++
		}
		s.changed(index, seq)
		copy(s.mutable(index)[start:start+n], data[:n])
		if s.dropIfZero(index) {
			delta--
		}
		data = data[n:]
		off += n
	}
	return delta
}

// dropIfZero turns the written sector index into a hole when all its bytes
// are zero, and reports whether it did.
func (s *sparseData) dropIfZero(index uint64) bool {
	sec, _ := s.sectors.get(index)
	if sec == nil || sec == evictedSector || !isZero(sec[:]) {
		return false
	}
	s.sectors.delete(index)
	return true
}

// newSectors returns how many sectors a write of length bytes at off would
// add, for the capacity check before the entry is made.
func (s *sparseData) newSectors(off, length uint64) uint64 {
	if length == 0 {
		return 0
	}
	first, last := off/SectorSize, (off+length-1)/SectorSize
	var stored uint64
	s.forEachStored(first, last, func(uint64, *sector) { stored++ })
	return last - first + 1 - stored
}

// allocate reserves every sector that overlaps [off, off+length) and
// returns the number of sectors it added. It changes only the layout, not
// the data sectors of any chunk, so no chunk needs loading or storing.
func (s *sparseData) allocate(off, length uint64) uint64 {
	if length == 0 {
		return 0
	}
	var added uint64
	for index := off / SectorSize; index <= (off+length-1)/SectorSize; index++ {
		if _, stored := s.sectors.get(index); !stored {
			s.sectors.set(index, nil)
			added++
		}
	}
	return added
}

// punch zeroes [off, off+length) for entry seq, drops the sectors that the
// range covers whole and returns the number of sectors it dropped. A sector
// that the range covers in part keeps its storage unless it becomes all
// zeros. Only the first and last chunk of the range must be loaded: the
// chunks between lose all their sectors, evicted or not.
func (s *sparseData) punch(off, length, seq uint64) uint64 {
	if length == 0 {
		return 0
	}
	first, last := chunkRange(off, length)
	defer maps.DeleteFunc(s.evicted, func(c, _ uint64) bool { return c > first && c < last })
	end := off + length
	var dropped uint64
	s.forEachStored(off/SectorSize, (end-1)/SectorSize, func(index uint64, sec *sector) {
		s.changed(index, seq)
		first := index * SectorSize
		lo := max(off, first) - first
		hi := min(end, first+SectorSize) - first
		if lo == 0 && hi == SectorSize {
			s.sectors.delete(index)
			dropped++
			return
		}
		if sec != nil {
			clear(s.mutable(index)[lo:hi])
			if s.dropIfZero(index) {
				dropped++
			}
		}
	})
	return dropped
}

// truncate drops every sector at or past size and zeroes the tail of the
// sector that size falls in, for entry seq. It returns the number of
// sectors dropped. The chunk that size falls in must be loaded; chunks
// wholly past size go without being loaded.
func (s *sparseData) truncate(size, seq uint64) uint64 {
	var dropped uint64
	firstDropped := (size + SectorSize - 1) / SectorSize
	s.sectors.each(func(index uint64, _ *sector) bool {
		if index >= firstDropped {
			s.sectors.delete(index)
			s.changed(index, seq)
			dropped++
		}
		return true
	})
	firstGone := (size + ChunkSize - 1) / ChunkSize
	maps.DeleteFunc(s.evicted, func(c, _ uint64) bool { return c >= firstGone })
	maps.DeleteFunc(s.dirty, func(c, _ uint64) bool { return c >= firstGone })
	maps.DeleteFunc(s.frozen, func(c uint64, _ bool) bool { return c >= firstGone })
	if size%SectorSize != 0 {
		index := size / SectorSize
		if sec, _ := s.sectors.get(index); sec != nil {
			s.changed(index, seq)
			clear(s.mutable(index)[size%SectorSize:])
			if s.dropIfZero(index) {
				dropped++
			}
		}
	}
	if size <= InlineSize {
		// A file this small stays in memory for good (the storage daemon
		// evicts only larger ones), so its sectors get their own memory
		// instead of keeping the slab of a larger write alive.
		s.sectors.each(func(index uint64, sec *sector) bool {
			if sec != nil && sec != evictedSector {
				fresh := new(sector)
				*fresh = *sec
				s.sectors.set(index, fresh)
			}
			return true
		})
	}
	return dropped
}

// forEachStored calls fn for every stored sector with an index in
// [first, last], in increasing order. It visits the cheaper of the chunks
// of the range and the chunks that store sectors, so that a large punch
// over a small file stays fast. fn may delete the sector it gets.
func (s *sparseData) forEachStored(first, last uint64, fn func(index uint64, sec *sector)) {
	visit := func(c uint64) {
		ch := s.sectors.chunks[c]
		if ch == nil {
			return
		}
		ch.each(c, func(index uint64, sec *sector) bool {
			if index >= first && index <= last {
				fn(index, sec)
			}
			return index < last
		})
	}
	firstChunk, lastChunk := chunkOf(first), chunkOf(last)
	if lastChunk-firstChunk < uint64(len(s.sectors.chunks)) {
		for c := firstChunk; ; c++ {
			visit(c)
			if c == lastChunk {
				return
			}
		}
	}
	for _, c := range s.sectors.sortedChunks() {
		if c >= firstChunk && c <= lastChunk {
			visit(c)
		}
	}
}

// sortedIndexes returns the stored sector indexes in increasing order.
func (s *sparseData) sortedIndexes() []uint64 {
	indexes := make([]uint64, 0, s.sectors.len())
	for _, c := range s.sectors.sortedChunks() {
		s.sectors.chunks[c].each(c, func(index uint64, _ *sector) bool {
			indexes = append(indexes, index)
			return true
		})
	}
	return indexes
}

// seekData returns the first offset at or after off, and below size, that
// lies in a stored sector. ok is false when there is none.
func (s *sparseData) seekData(off, size uint64) (uint64, bool) {
	startIndex := off / SectorSize
	for _, c := range s.sectors.sortedChunks() {
		if c < chunkOf(startIndex) {
			continue
		}
		best, found := uint64(0), false
		s.sectors.chunks[c].each(c, func(index uint64, _ *sector) bool {
			if index >= startIndex {
				best, found = index, true
				return false
			}
			return true
		})
		if found {
			if best*SectorSize >= size {
				return 0, false
			}
			return max(off, best*SectorSize), true
		}
	}
	return 0, false
}

// seekHole returns the first offset at or after off that lies in a hole,
// counting the end of the file as a hole. The caller checks off < size.
func (s *sparseData) seekHole(off, size uint64) uint64 {
	index := off / SectorSize
	for {
		if index*SectorSize >= size {
			return size
		}
		if _, stored := s.sectors.get(index); !stored {
			return max(off, index*SectorSize)
		}
		index++
	}
}

// layout returns the stored sectors as maximal extents.
func (s *sparseData) layout() []Extent {
	var out []Extent
	for _, index := range s.sortedIndexes() {
		sec, _ := s.sectors.get(index)
		reserved := sec == nil
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.First+last.Count == index && last.Reserved == reserved {
				last.Count++
				continue
			}
		}
		out = append(out, Extent{First: index, Count: 1, Reserved: reserved})
	}
	return out
}

// chunkSectors returns the data sectors of chunk c in increasing order.
func (s *sparseData) chunkSectors(c uint64) []*sector {
	var out []*sector
	if ch := s.sectors.chunks[c]; ch != nil {
		for _, sec := range ch.slots {
			if sec != nil {
				out = append(out, sec)
			}
		}
	}
	return out
}

// dataChunks returns the chunks that hold at least one data sector, in
// increasing order.
func (s *sparseData) dataChunks() []uint64 {
	var out []uint64
	for c, ch := range s.sectors.chunks {
		if slices.ContainsFunc(ch.slots[:], func(sec *sector) bool { return sec != nil }) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// evictClean replaces the data sectors of every chunk that is not dirty by
// evictedSector and returns the number of chunks it evicted.
func (s *sparseData) evictClean() int {
	evicted := 0
	for c := range s.sectors.chunks {
		if s.evicted[c] == 0 && s.evictChunk(c) {
			evicted++
		}
	}
	return evicted
}

// evictChunk evicts chunk c when it is clean and in memory, and reports
// whether it did.
func (s *sparseData) evictChunk(c uint64) bool {
	if s.evicted[c] != 0 || s.dirty[c] != 0 {
		return false
	}
	ch := s.sectors.chunks[c]
	if ch == nil {
		return false
	}
	found := false
	for i, sec := range ch.slots {
		if sec != nil {
			ch.slots[i] = evictedSector
			found = true
		}
	}
	if found {
		s.evicted[c] = evictions.Add(1)
	}
	return found
}

// install puts the data of the evicted chunk c back. data contains its data
// sectors in increasing order, as Chunk.Bytes returned them. The sectors
// point into data, which the caller must not use afterwards: a chunk
// costs one allocation, not one per sector.
func (s *sparseData) install(c uint64, data []byte) error {
	ch := s.sectors.chunks[c]
	count := 0
	if ch != nil {
		for _, sec := range ch.slots {
			if sec == evictedSector {
				count++
			}
		}
	}
	if len(data) != count*SectorSize {
		return fmt.Errorf("chunk %d has %d bytes, its %d data sectors need %d", c, len(data), count, count*SectorSize)
	}
	if count == 0 {
		delete(s.evicted, c)
		return nil
	}
	next := 0
	for i, sec := range ch.slots {
		if sec == evictedSector {
			ch.slots[i] = (*sector)(data[next : next+SectorSize])
			next += SectorSize
		}
	}
	delete(s.evicted, c)
	return nil
}

// sparseFromState builds file data from the validated layout and chunks of
// a state. The data sectors of chunks that the state leaves out are
// evicted.
func sparseFromState(extents []Extent, chunks []Chunk) *sparseData {
	s := newSparseData()
	for _, ext := range extents {
		for i := range ext.Count {
			if ext.Reserved {
				s.sectors.set(ext.First+i, nil)
			} else {
				s.sectors.set(ext.First+i, evictedSector)
				s.evicted[chunkOf(ext.First+i)] = evictions.Add(1)
			}
		}
	}
	for _, ch := range chunks {
		// Validated: the sizes match. The state keeps its own bytes.
		_ = s.install(ch.Index, bytes.Clone(ch.Bytes()))
	}
	return s
}
