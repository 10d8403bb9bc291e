package block

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/blocktree/blocktree/services/crypto/wire"
)

// SectorRange is a run of consecutive sectors, counted in sectors of
// SectorSize bytes.
type SectorRange struct {
	First uint64 // index of the first sector
	Count uint64 // number of sectors, at least 1
}

// rangeSize is the encoded size of one range: uint32 first || uint32 count.
const rangeSize = 8

// presence lists the present sectors of a block, the ones that are stored, as
// runs in increasing order with at least one hole between two runs. Every
// other sector is a hole.
type presence struct {
	ranges []SectorRange

	// slots[k] is the number of present sectors before ranges[k], which is
	// the position of its first sector among the stored sectors and leaves.
	slots  []uint64
	stored uint64
}

func newPresence(ranges []SectorRange) *presence {
	p := &presence{ranges: ranges, slots: make([]uint64, len(ranges))}
	for k, r := range ranges {
		p.slots[k] = p.stored
		p.stored += r.Count
	}
	return p
}

// rangeBefore returns the index of the last range that starts before end, or
// -1 if there is none.
func (p *presence) rangeBefore(end uint64) int {
	return sort.Search(len(p.ranges), func(k int) bool { return p.ranges[k].First >= end }) - 1
}

// slot returns the position of sector i among the stored sectors, and false
// if sector i is a hole.
func (p *presence) slot(i uint64) (uint64, bool) {
	k := p.rangeBefore(i + 1)
	if k < 0 || i-p.ranges[k].First >= p.ranges[k].Count {
		return 0, false
	}
	return p.slots[k] + i - p.ranges[k].First, true
}

// split cuts sectors, the sealed present sectors of a block of size bytes
// stored one after the other, into one slice per sector, and returns them
// with their indexes. Only the last sector of the block can be short.
func (p *presence) split(sectors []byte, size uint64, overhead int) (indexes []uint64, sealed [][]byte) {
	indexes = make([]uint64, 0, p.stored)
	sealed = make([][]byte, 0, p.stored)
	offset := 0
	for _, r := range p.ranges {
		for i := r.First; i < r.First+r.Count; i++ {
			length := int(min(SectorSize, size-i*SectorSize)) + overhead
			indexes = append(indexes, i)
			sealed = append(sealed, sectors[offset:offset+length])
			offset += length
		}
	}
	return indexes, sealed
}

// storedBefore returns the number of present sectors with an index below i.
func (p *presence) storedBefore(i uint64) uint64 {
	k := p.rangeBefore(i)
	if k < 0 {
		return 0
	}
	return p.slots[k] + min(p.ranges[k].Count, i-p.ranges[k].First)
}

// storedBytes returns the plaintext bytes of the present sectors of a block
// of size bytes. Only the last sector of the block can be short.
func (p *presence) storedBytes(size uint64) uint64 {
	total := p.stored * SectorSize
	if len(p.ranges) > 0 {
		last := p.ranges[len(p.ranges)-1]
		n := sectorCount(size)
		if last.First+last.Count == n {
			total -= n*SectorSize - size
		}
	}
	return total
}

// appendSector adds sector i, which is above every sector in ranges, to
// ranges, extending the last range if i follows it directly.
func appendSector(ranges []SectorRange, i uint64) []SectorRange {
	if k := len(ranges) - 1; k >= 0 && ranges[k].First+ranges[k].Count == i {
		ranges[k].Count++
		return ranges
	}
	return append(ranges, SectorRange{First: i, Count: 1})
}

// zeroSector is compared with plaintext sectors to find holes.
var zeroSector [SectorSize]byte

// isZero reports whether plain, at most SectorSize bytes, is all zeros.
func isZero(plain []byte) bool {
	return bytes.Equal(plain, zeroSector[:len(plain)])
}

// dataRanges returns the ranges of the sectors of data that are not all
// zeros.
func dataRanges(data []byte) []SectorRange {
	var ranges []SectorRange
	for i := range sectorCount(uint64(len(data))) {
		if !isZero(data[i*SectorSize : min((i+1)*SectorSize, uint64(len(data)))]) {
			ranges = appendSector(ranges, i)
		}
	}
	return ranges
}

// encodeRanges returns the encoding of ranges: uint32 count, then uint32
// first || uint32 count per range.
func encodeRanges(ranges []SectorRange) []byte {
	var e wire.Encoder
	e.Uint32(uint32(len(ranges)))
	for _, r := range ranges {
		e.Uint32(uint32(r.First))
		e.Uint32(uint32(r.Count))
	}
	return e.Data()
}

// decodeRanges reads the ranges of a block of n sectors and checks that they
// are canonical: not empty, in increasing order, not touching one another
// (touching ranges would be a second encoding of their union) and within the
// n sectors.
func decodeRanges(d *wire.Decoder, n uint64) ([]SectorRange, error) {
	// Ranges with a hole between each two cover at least 2·count-1 sectors.
	// The second bound keeps a damaged count from allocating more than the
	// input could hold.
	limit := min((n+1)/2, uint64(d.Remaining()/rangeSize))
	count := d.Count(int(limit))
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("sector ranges: %w", err)
	}

	ranges := make([]SectorRange, 0, count)
	for k := range count {
		r := SectorRange{First: uint64(d.Uint32()), Count: uint64(d.Uint32())}
		if err := d.Err(); err != nil {
			return nil, fmt.Errorf("sector range %d: %w", k, err)
		}
		if r.Count == 0 {
			return nil, fmt.Errorf("sector range %d at sector %d is empty: %w", k, r.First, wire.ErrInvalid)
		}
		if k > 0 {
			previous := ranges[k-1]
			if end := previous.First + previous.Count; r.First <= end {
				return nil, fmt.Errorf("sector range %d starts at sector %d, expected above %d so that a hole separates it from range %d: %w",
					k, r.First, end, k-1, wire.ErrInvalid)
			}
		}
		if r.First+r.Count > n {
			return nil, fmt.Errorf("sector range %d ends at sector %d, beyond the block's %d sectors: %w", k, r.First+r.Count, n, wire.ErrInvalid)
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}
