package fsys

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// TestSlabWriteMatchesSectorWrites checks that a large write, whose new
// sectors come from one slab per chunk, stores what the same bytes store
// when written in small pieces: the same data, holes and count of stored
// sectors. The range holds reserved sectors, zero sectors and a chunk that
// a checkpoint reads.
func TestSlabWriteMatchesSectorWrites(t *testing.T) {
	const size = 3*ChunkSize + 5000
	off := uint64(ChunkSize - 3*SectorSize - 100)
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{'s', 'l', 'a', 'b'}).Read(data)
	clear(data[SectorSize*10 : SectorSize*12]) // whole zero sectors become holes
	setup := func() *sparseData {
		s := newSparseData()
		s.allocate(off+ChunkSize, 40*SectorSize) // reserved sectors
		s.writeAt([]byte("kept"), off+2*ChunkSize+SectorSize*7, 1)
		s.frozen[chunkOf((off+2*ChunkSize)/SectorSize)] = true
		return s
	}

	whole, pieces := setup(), setup()
	gotDelta := whole.writeAt(data, off, 2)
	var wantDelta int64
	for start := 0; start < len(data); start += 1000 {
		end := min(start+1000, len(data))
		wantDelta += pieces.writeAt(data[start:end], off+uint64(start), 2)
	}
	if gotDelta != wantDelta {
		t.Errorf("one write changed the stored sectors by %d, writes of 1000 bytes by %d", gotDelta, wantDelta)
	}
	if whole.sectors.len() != pieces.sectors.len() {
		t.Errorf("one write left %d stored sectors, writes of 1000 bytes %d", whole.sectors.len(), pieces.sectors.len())
	}
	if got, want := whole.layout(), pieces.layout(); !slices.Equal(got, want) {
		t.Errorf("layout after one write %v, after writes of 1000 bytes %v", got, want)
	}
	span := off + size + SectorSize
	got, want := make([]byte, span), make([]byte, span)
	whole.readAt(got, 0)
	pieces.readAt(want, 0)
	if !bytes.Equal(got, want) {
		t.Error("one write and writes of 1000 bytes read back different data")
	}
}

// TestTruncateLeavesNoSlab checks that a file truncated to InlineSize or
// less, which the storage daemon never evicts, keeps none of its sectors
// in the slab of an earlier large write, which would hold the whole slab
// in memory.
func TestTruncateLeavesNoSlab(t *testing.T) {
	s := newSparseData()
	data := bytes.Repeat([]byte{7}, ChunkSize)
	s.writeAt(data, 0, 1)
	first, _ := s.sectors.get(0)
	slabStart := uintptr(unsafe.Pointer(first))
	slabEnd := slabStart + ChunkSize
	inSlab := func() int {
		n := 0
		s.sectors.each(func(_ uint64, sec *sector) bool {
			if p := uintptr(unsafe.Pointer(sec)); p >= slabStart && p < slabEnd {
				n++
			}
			return true
		})
		return n
	}
	if got := inSlab(); got != ChunkSectors {
		t.Fatalf("%d of %d sectors of a 1 MiB write are in one slab", got, ChunkSectors)
	}

	s.truncate(InlineSize+SectorSize, 2)
	if got := inSlab(); got != InlineSize/SectorSize+1 {
		t.Errorf("%d sectors in the slab after truncating to InlineSize and a sector, want %d", got, InlineSize/SectorSize+1)
	}
	s.truncate(InlineSize-100, 3)
	if got := inSlab(); got != 0 {
		t.Errorf("%d sectors in the slab after truncating below InlineSize, want 0", got)
	}

	got := make([]byte, InlineSize-100)
	s.readAt(got, 0)
	if !bytes.Equal(got, data[:len(got)]) {
		t.Error("data changed by the truncation")
	}
}
