package fsys

import (
	"slices"
)

// SectorSize is the unit of file data storage: a file is a sparse set of
// sectors, each stored whole. It equals the block layer's sector size, so a
// stored sector maps onto one sealed block sector.
const SectorSize = 4096

// sectorBlocks is the number of 512-byte units that Attr.Blocks counts for
// one stored sector.
const sectorBlocks = SectorSize / 512

// sector is the content of one stored sector. A nil *sector in sparseData is
// a sector that fallocate reserved and no write has filled yet. It reads as
// zeros, counts as stored and costs no data memory.
type sector [SectorSize]byte

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
type sparseData struct {
	sectors map[uint64]*sector
}

func newSparseData() *sparseData {
	return &sparseData{sectors: make(map[uint64]*sector)}
}

// count returns the number of stored sectors.
func (s *sparseData) count() uint64 { return uint64(len(s.sectors)) }

// readAt copies the bytes of [off, off+len(p)) into p. The caller limits the
// range to the file size.
func (s *sparseData) readAt(p []byte, off uint64) {
	for len(p) > 0 {
		index := off / SectorSize
		start := off % SectorSize
		n := min(uint64(len(p)), SectorSize-start)
		if sec := s.sectors[index]; sec != nil {
			copy(p[:n], sec[start:start+n])
		} else {
			clear(p[:n])
		}
		p = p[n:]
		off += n
	}
}

// writeAt stores data at off and returns the change in the number of
// stored sectors, which is negative when zeros overwrite data.
func (s *sparseData) writeAt(data []byte, off uint64) int64 {
	var delta int64
	for len(data) > 0 {
		index := off / SectorSize
		start := off % SectorSize
		n := min(uint64(len(data)), SectorSize-start)
		sec, stored := s.sectors[index]
		if !stored {
			delta++
		}
		if sec == nil {
			sec = new(sector)
			s.sectors[index] = sec
		}
		copy(sec[start:start+n], data[:n])
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
	sec := s.sectors[index]
	if sec == nil || !isZero(sec[:]) {
		return false
	}
	delete(s.sectors, index)
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

// allocate reserves every sector that overlaps [off, off+length) and returns
// the number of sectors it added.
func (s *sparseData) allocate(off, length uint64) uint64 {
	if length == 0 {
		return 0
	}
	var added uint64
	for index := off / SectorSize; index <= (off+length-1)/SectorSize; index++ {
		if _, stored := s.sectors[index]; !stored {
			s.sectors[index] = nil
			added++
		}
	}
	return added
}

// punch zeroes [off, off+length), drops the sectors that the range covers
// whole and returns the number of sectors it dropped. A sector that the
// range covers in part keeps its storage unless it becomes all zeros.
func (s *sparseData) punch(off, length uint64) uint64 {
	if length == 0 {
		return 0
	}
	end := off + length
	var dropped uint64
	s.forEachStored(off/SectorSize, (end-1)/SectorSize, func(index uint64, sec *sector) {
		first := index * SectorSize
		lo := max(off, first) - first
		hi := min(end, first+SectorSize) - first
		if lo == 0 && hi == SectorSize {
			delete(s.sectors, index)
			dropped++
			return
		}
		if sec != nil {
			clear(sec[lo:hi])
			if s.dropIfZero(index) {
				dropped++
			}
		}
	})
	return dropped
}

// truncate drops every sector at or past size and zeroes the tail of the
// sector that size falls in. It returns the number of sectors dropped.
func (s *sparseData) truncate(size uint64) uint64 {
	var dropped uint64
	firstDropped := (size + SectorSize - 1) / SectorSize
	for index := range s.sectors {
		if index >= firstDropped {
			delete(s.sectors, index)
			dropped++
		}
	}
	if size%SectorSize != 0 {
		if sec := s.sectors[size/SectorSize]; sec != nil {
			clear(sec[size%SectorSize:])
			if s.dropIfZero(size / SectorSize) {
				dropped++
			}
		}
	}
	return dropped
}

// forEachStored calls fn for every stored sector with an index in
// [first, last], in any order. It visits the cheaper of the index range and
// the whole map, so that a large punch over a small file stays fast.
func (s *sparseData) forEachStored(first, last uint64, fn func(index uint64, sec *sector)) {
	if last-first < uint64(len(s.sectors)) {
		for index := first; ; index++ {
			if sec, stored := s.sectors[index]; stored {
				fn(index, sec)
			}
			if index == last {
				return
			}
		}
	}
	for _, index := range s.sortedIndexes() {
		if index >= first && index <= last {
			fn(index, s.sectors[index])
		}
	}
}

// sortedIndexes returns the stored sector indexes in increasing order.
func (s *sparseData) sortedIndexes() []uint64 {
	indexes := make([]uint64, 0, len(s.sectors))
	for index := range s.sectors {
		indexes = append(indexes, index)
	}
	slices.Sort(indexes)
	return indexes
}

// seekData returns the first offset at or after off, and below size, that
// lies in a stored sector. ok is false when there is none.
func (s *sparseData) seekData(off, size uint64) (uint64, bool) {
	best := uint64(0)
	found := false
	startIndex := off / SectorSize
	for index := range s.sectors {
		if index < startIndex || index*SectorSize >= size {
			continue
		}
		if !found || index < best {
			best, found = index, true
		}
	}
	if !found {
		return 0, false
	}
	return max(off, best*SectorSize), true
}

// seekHole returns the first offset at or after off that lies in a hole,
// counting the end of the file as a hole. The caller checks off < size.
func (s *sparseData) seekHole(off, size uint64) uint64 {
	index := off / SectorSize
	for {
		if index*SectorSize >= size {
			return size
		}
		if _, stored := s.sectors[index]; !stored {
			return max(off, index*SectorSize)
		}
		index++
	}
}

// extents returns the stored sectors as maximal extents, with copies of
// their bytes. It finds the extents first and then copies each into a
// buffer of its final size. Appending sector after sector to one buffer
// copied a large file several times over.
func (s *sparseData) extents() []Extent {
	indexes := s.sortedIndexes()
	var out []Extent
	for _, index := range indexes {
		stored := s.sectors[index] != nil
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.First+last.Count == index && (last.Data != nil) == stored {
				last.Count++
				continue
			}
		}
		ext := Extent{First: index, Count: 1}
		if stored {
			// A placeholder marks a stored extent until its bytes are copied.
			ext.Data = []byte{}
		}
		out = append(out, ext)
	}
	for i := range out {
		ext := &out[i]
		if ext.Data == nil {
			continue
		}
		ext.Data = make([]byte, ext.Count*SectorSize)
		for j := range ext.Count {
			copy(ext.Data[j*SectorSize:], s.sectors[ext.First+j][:])
		}
	}
	return out
}

// sparseFromExtents builds file data from validated extents.
func sparseFromExtents(extents []Extent) *sparseData {
	s := newSparseData()
	for _, ext := range extents {
		for i := range ext.Count {
			if ext.Data == nil {
				s.sectors[ext.First+i] = nil
				continue
			}
			sec := new(sector)
			copy(sec[:], ext.Data[i*SectorSize:])
			s.sectors[ext.First+i] = sec
		}
	}
	return s
}
