package fsys

import (
	"bytes"
	"math/rand/v2"
	"testing"
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
	if len(whole.sectors) != len(pieces.sectors) {
		t.Errorf("one write left %d stored sectors, writes of 1000 bytes %d", len(whole.sectors), len(pieces.sectors))
	}
	for index := range pieces.sectors {
		if _, ok := whole.sectors[index]; !ok {
			t.Errorf("sector %d is a hole after one write but stored after writes of 1000 bytes", index)
		}
	}
	span := off + size + SectorSize
	got, want := make([]byte, span), make([]byte, span)
	whole.readAt(got, 0)
	pieces.readAt(want, 0)
	if !bytes.Equal(got, want) {
		t.Error("one write and writes of 1000 bytes read back different data")
	}
}
