package block

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// sparseData returns a plaintext with one sector per byte of pattern: 'D' is
// pseudo-random data, 'd' is zeros but for a last byte of 1, and 'H' is a
// hole of zeros. The last sector has lastLen bytes, or SectorSize if lastLen
// is 0.
func sparseData(pattern string, lastLen int) []byte {
	if pattern == "" {
		return nil
	}
	if lastLen == 0 {
		lastLen = SectorSize
	}
	size := (len(pattern)-1)*SectorSize + lastLen
	random := testData(size)
	data := make([]byte, size)
	for i, kind := range []byte(pattern) {
		sector := data[i*SectorSize : min((i+1)*SectorSize, size)]
		switch kind {
		case 'D':
			copy(sector, random[i*SectorSize:])
		case 'd':
			sector[len(sector)-1] = 1
		}
	}
	return data
}

// patternRanges returns the runs of sectors of pattern that are not holes.
func patternRanges(pattern string) []SectorRange {
	var ranges []SectorRange
	for i, kind := range []byte(pattern) {
		if kind != 'H' {
			ranges = appendSector(ranges, uint64(i))
		}
	}
	return ranges
}

// allSectors yields every sector of data, zeros included.
func allSectors(data []byte) iter.Seq2[uint64, []byte] {
	return func(yield func(uint64, []byte) bool) {
		for i := range sectorCount(uint64(len(data))) {
			if !yield(i, data[i*SectorSize:min((i+1)*SectorSize, uint64(len(data)))]) {
				return
			}
		}
	}
}

// listedSectors yields the sectors with the given indexes and contents.
func listedSectors(indexes []uint64, sectors [][]byte) iter.Seq2[uint64, []byte] {
	return func(yield func(uint64, []byte) bool) {
		for k, i := range indexes {
			if !yield(i, sectors[k]) {
				return
			}
		}
	}
}

// presentSectors yields the sectors of data that pattern does not mark as
// holes.
func presentSectors(data []byte, pattern string) iter.Seq2[uint64, []byte] {
	return func(yield func(uint64, []byte) bool) {
		for i, kind := range []byte(pattern) {
			if kind == 'H' {
				continue
			}
			sector := data[i*SectorSize : min((i+1)*SectorSize, len(data))]
			if !yield(uint64(i), sector) {
				return
			}
		}
	}
}

var sparsePatterns = []struct {
	name    string
	pattern string
	lastLen int
}{
	{"empty", "", 0},
	{"dense", "DDD", 0},
	{"holeAtStart", "HHDD", 0},
	{"holeInMiddle", "DHHD", 100},
	{"holeAtEnd", "DDHH", 0},
	{"shortHoleAtEnd", "DDH", 17},
	{"alternating", "DHDHDHD", 0},
	{"nearlyZeroSectors", "dHd", 1},
	{"allHoles", "HHHH", 5},
	{"oneShortHole", "H", 1},
}

// checkSparseBlock opens encoded as Alice and checks its contents, its
// presence queries, reads across every sector boundary, and Verify.
func checkSparseBlock(t *testing.T, f *fixture, encoded, data []byte, ranges []SectorRange) {
	t.Helper()
	r := f.open(encoded, f.alice, 1)

	got, err := r.Bytes()
	if err != nil {
		t.Fatalf("Bytes: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("Bytes returned %d bytes that differ from the %d sealed", len(got), len(data))
	}

	if have := r.DataRanges(); !slices.Equal(have, ranges) {
		t.Errorf("DataRanges = %v, expected %v", have, ranges)
	}
	var stored uint64
	for _, sr := range ranges {
		stored += sr.Count
	}
	if r.StoredSectors() != stored {
		t.Errorf("StoredSectors = %d, expected %d", r.StoredSectors(), stored)
	}
	for i := range sectorCount(uint64(len(data))) + 2 {
		want := slices.ContainsFunc(ranges, func(sr SectorRange) bool { return i >= sr.First && i < sr.First+sr.Count })
		if r.SectorPresent(i) != want {
			t.Errorf("SectorPresent(%d) = %v, expected %v", i, !want, want)
		}
	}

	// Reads that start and end on both sides of every sector boundary, so
	// each hole/data boundary is crossed in both directions.
	reference := bytes.NewReader(data)
	for boundary := 0; boundary <= len(data); boundary += SectorSize {
		for _, off := range []int{boundary - 1, boundary, boundary + 1, boundary - SectorSize/2} {
			if off < 0 {
				continue
			}
			for _, length := range []int{1, 2, SectorSize, SectorSize + 2, 3 * SectorSize} {
				have := make([]byte, length)
				n, err := r.ReadAt(have, int64(off))
				want := make([]byte, length)
				wantN, wantErr := reference.ReadAt(want, int64(off))
				if n != wantN || err != wantErr {
					t.Errorf("ReadAt(%d bytes, offset %d) = %d, %v, expected %d, %v", length, off, n, err, wantN, wantErr)
				}
				if !bytes.Equal(have[:n], want[:wantN]) {
					t.Errorf("ReadAt(%d bytes, offset %d) returned bytes that differ from the data", length, off)
				}
			}
		}
	}

	if _, err := Verify(encoded, f.root.Principal(), time.Now()); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestSparseRoundTrip(t *testing.T) {
	f := newFixture(t)
	for _, tt := range sparsePatterns {
		t.Run(tt.name, func(t *testing.T) {
			data := sparseData(tt.pattern, tt.lastLen)
			ranges := patternRanges(tt.pattern)

			sealed := f.seal(f.params(1), data)
			checkSparseBlock(t, f, sealed, data, ranges)

			sparse, err := SealSparse(f.sealer(), f.params(1), uint64(len(data)), presentSectors(data, tt.pattern))
			if err != nil {
				t.Fatalf("SealSparse: %v", err)
			}
			checkSparseBlock(t, f, sparse, data, ranges)
			if len(sparse) != len(sealed) {
				t.Errorf("SealSparse gave %d bytes, Seal of the same plaintext %d", len(sparse), len(sealed))
			}

			// Zero sectors that the iterator yields become holes as well.
			zeros, err := SealSparse(f.sealer(), f.params(1), uint64(len(data)), allSectors(data))
			if err != nil {
				t.Fatalf("SealSparse of every sector: %v", err)
			}
			checkSparseBlock(t, f, zeros, data, ranges)
		})
	}
}

func TestSealStoresOnlyPresentSectors(t *testing.T) {
	f := newFixture(t)
	dense := f.seal(f.params(1), sparseData("DDDD", 0))
	sparse := f.seal(f.params(1), sparseData("DHHD", 0))

	// Two sectors, their leaves and one range fewer, and one range more.
	want := len(dense) - 2*(SectorSize+fixtureCipher.sectorOverhead()+HashSize) + rangeSize
	if len(sparse) != want {
		t.Errorf("block with two holes of four sectors is %d bytes, expected %d (the dense block is %d)", len(sparse), want, len(dense))
	}
}

// TestSealSparseLargeFile seals a 1 GiB file with 8 KiB written at its end
// and two other sectors, as a file system does for a sparse file.
func TestSealSparseLargeFile(t *testing.T) {
	const size = 1 << 30
	const sectors = size / SectorSize
	f := newFixture(t)
	indexes := []uint64{0, 1000, sectors - 2, sectors - 1}
	contents := make([][]byte, len(indexes))
	for k := range contents {
		contents[k] = testData(SectorSize + k)[k:]
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	encoded, err := SealSparse(f.sealer(), f.params(1), size, listedSectors(indexes, contents))
	if err != nil {
		t.Fatalf("SealSparse: %v", err)
	}
	r := f.open(encoded, f.alice, 1)
	runtime.ReadMemStats(&after)

	if len(encoded) >= 100<<10 {
		t.Errorf("a 1 GiB block with 4 present sectors encodes to %d bytes, expected less than 100 KiB", len(encoded))
	}
	t.Logf("a 1 GiB block with 4 present sectors encodes to %d bytes", len(encoded))
	// NOTE: TotalAlloc counts every goroutine's allocations, so the bound is
	// loose. Holding the plaintext would take 1 GiB.
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16<<20 {
		t.Errorf("SealSparse and Open allocated %d bytes, expected under 16 MiB", allocated)
	}

	if r.Size() != size {
		t.Errorf("Size = %d, expected %d", r.Size(), size)
	}
	if r.StoredSectors() != 4 {
		t.Errorf("StoredSectors = %d, expected 4", r.StoredSectors())
	}
	wantRanges := []SectorRange{{0, 1}, {1000, 1}, {sectors - 2, 2}}
	if have := r.DataRanges(); !slices.Equal(have, wantRanges) {
		t.Errorf("DataRanges = %v, expected %v", have, wantRanges)
	}

	buf := make([]byte, SectorSize)
	for k, i := range indexes {
		if _, err := r.ReadAt(buf, int64(i)*SectorSize); err != nil {
			t.Errorf("ReadAt of present sector %d: %v", i, err)
		} else if !bytes.Equal(buf, contents[k]) {
			t.Errorf("ReadAt of present sector %d returned wrong bytes", i)
		}
	}

	// A read from the last byte of a hole into the next present sector.
	across := make([]byte, 2)
	if _, err := r.ReadAt(across, 1000*SectorSize-1); err != nil {
		t.Errorf("ReadAt across the hole before sector 1000: %v", err)
	} else if across[0] != 0 || across[1] != contents[1][0] {
		t.Errorf("ReadAt across the hole before sector 1000 = %v, expected [0 %d]", across, contents[1][0])
	}
	for _, i := range []int64{1, 999, 1001, sectors / 2, sectors - 3} {
		buf[0] = 0xff
		if _, err := r.ReadAt(buf, i*SectorSize); err != nil {
			t.Errorf("ReadAt of hole %d: %v", i, err)
		} else if !isZero(buf) {
			t.Errorf("ReadAt of hole %d returned bytes that are not zeros", i)
		}
	}

	if _, err := Verify(encoded, f.root.Principal(), time.Now()); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

// TestAddRemoveReaderKeepsHoles checks that rewriting a sparse block keeps
// its holes and does not decrypt it into one plaintext.
func TestAddRemoveReaderKeepsHoles(t *testing.T) {
	const size = 1 << 30
	f := newFixture(t)
	content := testData(SectorSize)
	encoded, err := SealSparse(f.sealer(), f.params(1), size, listedSectors([]uint64{7}, [][]byte{content}))
	if err != nil {
		t.Fatalf("SealSparse: %v", err)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	added, err := AddReader(encoded, f.sealer(), f.carol.Identity())
	if err != nil {
		t.Fatalf("AddReader: %v", err)
	}
	removed, err := RemoveReader(added, f.sealer(), f.bob.Principal())
	if err != nil {
		t.Fatalf("RemoveReader: %v", err)
	}
	runtime.ReadMemStats(&after)
	// The bound is loose, as in TestSealSparseLargeFile. Decrypting the
	// block into one plaintext would take 1 GiB.
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16<<20 {
		t.Errorf("AddReader and RemoveReader allocated %d bytes, expected under 16 MiB", allocated)
	}

	for name, block := range map[string][]byte{"AddReader": added, "RemoveReader": removed} {
		r := f.open(block, f.carol, 2)
		if have := r.DataRanges(); !slices.Equal(have, []SectorRange{{7, 1}}) {
			t.Errorf("%s: DataRanges = %v, expected [{7 1}]", name, have)
		}
		if len(block) > len(encoded)+2048 {
			t.Errorf("%s: block grew from %d to %d bytes, more than one recipient adds", name, len(encoded), len(block))
		}
		buf := make([]byte, SectorSize)
		if _, err := r.ReadAt(buf, 7*SectorSize); err != nil {
			t.Errorf("%s: ReadAt of sector 7: %v", name, err)
		} else if !bytes.Equal(buf, content) {
			t.Errorf("%s: ReadAt of sector 7 returned wrong bytes", name)
		}
	}
}

func TestSealSparseRejectsInvalidSectors(t *testing.T) {
	f := newFixture(t)
	full := testData(SectorSize)
	size := uint64(3*SectorSize + 10)

	tests := []struct {
		name    string
		indexes []uint64
		sectors [][]byte
	}{
		{"decreasingIndex", []uint64{1, 0}, [][]byte{full, full}},
		{"repeatedIndex", []uint64{1, 1}, [][]byte{full, full}},
		{"indexBeyondSize", []uint64{4}, [][]byte{full[:10]}},
		{"shortSector", []uint64{0}, [][]byte{full[:100]}},
		{"longSector", []uint64{0}, [][]byte{append(bytes.Clone(full), 1)}},
		{"fullLastSector", []uint64{3}, [][]byte{full}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encoded, err := SealSparse(f.sealer(), f.params(1), size, listedSectors(tt.indexes, tt.sectors))
			if err == nil {
				t.Errorf("SealSparse returned a %d-byte block, expected an error", len(encoded))
			}
		})
	}

	if _, err := SealSparse(f.sealer(), f.params(1), MaxSize+1, listedSectors(nil, nil)); err == nil {
		t.Error("SealSparse of a block above MaxSize succeeded")
	}
}

// sealedParts returns the sections of encoded that follow the header, with
// the sealed sectors split apart, and the header bytes.
func sealedParts(t *testing.T, encoded []byte) (header []byte, ranges []SectorRange, leaves [][HashSize]byte, sectors [][]byte) {
	t.Helper()
	l, err := decodeBlock(encoded, [32]byte{})
	if err != nil {
		t.Fatalf("decodeBlock: %v", err)
	}
	offset := 0
	for _, r := range l.present.ranges {
		for i := r.First; i < r.First+r.Count; i++ {
			length := int(min(SectorSize, l.header.Size-i*SectorSize)) + l.header.Cipher.sectorOverhead()
			sectors = append(sectors, l.sectors[offset:offset+length])
			offset += length
		}
	}
	header = encoded[7:blockParts(t, encoded).rangesStart]
	return header, slices.Clone(l.present.ranges), slices.Clone(l.leaves), sectors
}

// TestHoleTamperingDetected turns data into holes and holes into data while
// keeping the layout consistent, so that only the signed root can tell.
func TestHoleTamperingDetected(t *testing.T) {
	f := newFixture(t)
	data := sparseData("DHD", 100)
	encoded := f.seal(f.params(1), data)
	header, ranges, leaves, sectors := sealedParts(t, encoded)
	if !slices.Equal(ranges, []SectorRange{{0, 1}, {2, 1}}) {
		t.Fatalf("ranges = %v, expected [{0 1} {2 1}]", ranges)
	}

	// A reader knows the key and can seal sector 1 correctly, with the right
	// associated data, so its AEAD tag is valid.
	r := f.open(encoded, f.alice, 1)
	keys, err := deriveKeys(f.id, r.Key(), r.Header().Cipher, r.Header().SectorSalt)
	if err != nil {
		t.Fatalf("deriveKeys: %v", err)
	}
	sealOne := func(plain []byte) []byte {
		sealed := make([]byte, len(plain)+keys.cipher.sectorOverhead())
		keys.sealSector(sealed, 1, plain, sectorAD(f.id, 1, 1))
		return sealed
	}
	zeros := sealOne(make([]byte, SectorSize))
	zerosLeaf := leafHash(1, zeros)
	other := sealOne(testData(SectorSize))
	otherLeaf := leafHash(1, other)

	tests := []struct {
		name    string
		ranges  []SectorRange
		leaves  [][HashSize]byte
		sectors [][]byte
	}{
		{"firstSectorToHole", []SectorRange{{2, 1}}, leaves[1:], sectors[1:]},
		{"shortLastSectorToHole", []SectorRange{{0, 1}}, leaves[:1], sectors[:1]},
		{"allSectorsToHoles", nil, nil, nil},
		{"holeToZeroSector", []SectorRange{{0, 3}}, [][HashSize]byte{leaves[0], zerosLeaf, leaves[1]}, [][]byte{sectors[0], zeros, sectors[1]}},
		{"holeToDataSector", []SectorRange{{0, 3}}, [][HashSize]byte{leaves[0], otherLeaf, leaves[1]}, [][]byte{sectors[0], other, sectors[1]}},
		{"dataMovedIntoHole", []SectorRange{{1, 2}}, leaves, sectors},
		{"holeSwappedWithData", []SectorRange{{1, 2}}, [][HashSize]byte{otherLeaf, leaves[1]}, [][]byte{other, sectors[1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forged := encodeBlock(header, tt.ranges, tt.leaves, bytes.Join(tt.sectors, nil))
			_, err := Open(forged, f.alice, f.expect(1))
			requireIntegrityError(t, err, ptr(HeaderSector))
			_, err = Verify(forged, f.root.Principal(), time.Now())
			requireIntegrityError(t, err, ptr(HeaderSector))
		})
	}

	// The same sections unchanged must open, or the cases above prove
	// nothing.
	intact := encodeBlock(header, ranges, leaves, bytes.Join(sectors, nil))
	if !bytes.Equal(intact, encoded) {
		t.Fatal("re-encoding the unchanged sections gave other bytes")
	}
}

func TestDecodeRejectsNonCanonicalRanges(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), sparseData("DHD", 0))
	header, _, leaves, sectors := sealedParts(t, encoded)
	joined := bytes.Join(sectors, nil)

	tests := []struct {
		name   string
		ranges []SectorRange
		want   error
	}{
		{"emptyRange", []SectorRange{{0, 0}, {2, 1}}, wire.ErrInvalid},
		{"touchingRanges", []SectorRange{{0, 1}, {1, 1}}, wire.ErrInvalid},
		{"overlappingRanges", []SectorRange{{0, 2}, {1, 1}}, wire.ErrInvalid},
		{"decreasingRanges", []SectorRange{{2, 1}, {0, 1}}, wire.ErrInvalid},
		{"rangeBeyondSize", []SectorRange{{0, 1}, {3, 1}}, wire.ErrInvalid},
		{"rangeEndBeyondSize", []SectorRange{{0, 1}, {2, 2}}, wire.ErrInvalid},
		{"moreRangesThanPossible", []SectorRange{{0, 1}, {2, 1}, {4, 1}}, wire.ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forged := encodeBlock(header, tt.ranges, leaves, joined)
			_, err := Open(forged, f.alice, f.expect(1))
			requireIntegrityError(t, err, ptr(HeaderSector))
			if !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, expected one matching %v", err, tt.want)
			}
		})
	}
}

// TestOldVersionsRejected checks that the decoders accept only block
// version 2 with header version 3. No block of an older version was stored
// by a release: header version 2 had no sector cipher, and in version 1 the
// root did not cover holes.
func TestOldVersionsRejected(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))
	if encoded[2] != 2 || encoded[7+2] != 3 {
		t.Fatalf("block version %d, header version %d, expected 2 and 3", encoded[2], encoded[7+2])
	}

	block := bytes.Clone(encoded)
	block[2] = 1
	_, err := Open(block, f.alice, f.expect(1))
	requireIntegrityError(t, err, ptr(HeaderSector))
	if !errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("Open of a version 1 block: %v, expected ErrUnknownVersion", err)
	}

	for _, old := range []byte{1, 2} {
		header := bytes.Clone(encoded[7:blockParts(t, encoded).rangesStart])
		header[2] = old
		if _, err := ParseHeader(header); !errors.Is(err, wire.ErrUnknownVersion) {
			t.Errorf("ParseHeader of a version %d header: %v, expected ErrUnknownVersion", old, err)
		}
	}
}

// TestBitFlipDetectedSparseBlocks flips every bit of small blocks with holes
// at the start, in the middle and at the end, as
// TestBitFlipDetectedSmallBlocks does for dense blocks.
func TestBitFlipDetectedSparseBlocks(t *testing.T) {
	f := newFixture(t)
	p := f.params(1)
	p.Readers = []principal.Identity{f.alice.Identity()}
	for _, tt := range []struct {
		name    string
		pattern string
		lastLen int
	}{
		{"holeInMiddle", "DHD", 100},
		{"holeAtEnd", "DH", 1},
		{"holeAtStart", "HHD", 0},
		{"allHoles", "HHH", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkEveryBitFlip(t, f, f.seal(p, sparseData(tt.pattern, tt.lastLen)))
		})
	}
}

// referenceRoot computes the root that sparseRoot defines level by level,
// like merkleRoot, from the full list of sectors: two sibling nodes that are
// both runs of holes merge into one longer run.
func referenceRoot(holes []bool, leaves [][HashSize]byte) [HashSize]byte {
	type node struct {
		hash        [HashSize]byte
		first, size uint64
		hole        bool
	}
	hash := func(n node) [HashSize]byte {
		if n.hole {
			return holeHash(n.first, n.size)
		}
		return n.hash
	}
	if len(holes) == 0 {
		return emptyRoot
	}
	var level []node
	slot := 0
	for i, hole := range holes {
		n := node{first: uint64(i), size: 1, hole: hole}
		if !hole {
			n.hash = leaves[slot]
			slot++
		}
		level = append(level, n)
	}
	for len(level) > 1 {
		var next []node
		for i := 0; i < len(level); i += 2 {
			if i+1 == len(level) {
				next = append(next, level[i])
				continue
			}
			a, b := level[i], level[i+1]
			if a.hole && b.hole {
				next = append(next, node{first: a.first, size: a.size + b.size, hole: true})
				continue
			}
			left, right := hash(a), hash(b)
			next = append(next, node{hash: interiorHash(&left, &right), first: a.first, size: a.size + b.size})
		}
		level = next
	}
	return hash(level[0])
}

func TestSparseRoot(t *testing.T) {
	leaf := func(i int) [HashSize]byte { return leafHash(uint32(i), []byte{byte(i)}) }
	node := func(a, b [HashSize]byte) [HashSize]byte { return interiorHash(&a, &b) }
	l0, l1, l2, l4 := leaf(0), leaf(1), leaf(2), leaf(4)

	tests := []struct {
		name    string
		pattern string
		want    [HashSize]byte
	}{
		{"oneHole", "H", holeHash(0, 1)},
		{"allHoles", "HHHHH", holeHash(0, 5)},
		{"holesThenData", "HHHHD", node(holeHash(0, 4), l4)},
		{"holesBetweenData", "DHHHD", node(node(node(l0, holeHash(1, 1)), holeHash(2, 2)), l4)},
		{"holesAtEnd", "DDDHH", node(node(node(l0, l1), node(l2, holeHash(3, 1))), holeHash(4, 1))},
		{"dense", "DDD", node(node(l0, l1), l2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var leaves [][HashSize]byte
			for i, kind := range tt.pattern {
				if kind == 'D' {
					leaves = append(leaves, leaf(i))
				}
			}
			have := sparseRoot(uint64(len(tt.pattern)), newPresence(patternRanges(tt.pattern)), leaves)
			if have != tt.want {
				t.Errorf("sparseRoot = %x, expected %x", have, tt.want)
			}
		})
	}

	if holeHash(0, 1) == holeHash(1, 1) {
		t.Error("hole leaves of sectors 0 and 1 are equal, so a hole's position is not bound")
	}

	const seed = 20250602
	rng := rand.New(rand.NewPCG(seed, 0))
	for trial := range 300 {
		n := 1 + rng.IntN(300)
		holeChance := rng.Float64()
		holes := make([]bool, n)
		var ranges []SectorRange
		var leaves [][HashSize]byte
		for i := range holes {
			holes[i] = rng.Float64() < holeChance
			if !holes[i] {
				ranges = appendSector(ranges, uint64(i))
				leaves = append(leaves, leaf(i))
			}
		}
		have := sparseRoot(uint64(n), newPresence(ranges), leaves)
		if want := referenceRoot(holes, leaves); have != want {
			t.Fatalf("seed %d trial %d: sparseRoot of %d sectors with ranges %v differs from the level-by-level root", seed, trial, n, ranges)
		}
		if len(leaves) == n && have != merkleRoot(leaves) {
			t.Fatalf("seed %d trial %d: sparseRoot of %d sectors without holes differs from merkleRoot", seed, trial, n)
		}
	}
}

func TestHoleHash(t *testing.T) {
	want := sha256.Sum256([]byte{0x03, 0, 0, 1, 2, 0, 0, 0, 7})
	if have := holeHash(0x0102, 7); have != want {
		t.Errorf("holeHash = %x, expected SHA-256(0x03 || uint32 first || uint32 count) = %x", have, want)
	}
}

func TestDataRangesReturnsCopy(t *testing.T) {
	f := newFixture(t)
	r := f.open(f.seal(f.params(1), sparseData("DHD", 0)), f.alice, 1)
	ranges := r.DataRanges()
	ranges[0].Count = 3

	if !r.SectorPresent(0) || r.SectorPresent(1) {
		t.Error("changing the slice from DataRanges changed the Reader's sector ranges")
	}
	if _, err := r.ReadAt(make([]byte, SectorSize), SectorSize); err != nil && err != io.EOF {
		t.Errorf("ReadAt of the hole after changing the DataRanges slice: %v", err)
	}
}

const sparseBenchSize = 1 << 30

// sparseBenchSectors are four sectors of a 1 GiB file: the first, one in the
// middle and the last two.
func sparseBenchSectors() iter.Seq2[uint64, []byte] {
	const sectors = sparseBenchSize / SectorSize
	data := testData(SectorSize)
	return listedSectors([]uint64{0, sectors / 2, sectors - 2, sectors - 1}, [][]byte{data, data, data, data})
}

// BenchmarkSealSparse measures SealSparse of a 1 GiB file with 4 present
// sectors.
func BenchmarkSealSparse(b *testing.B) {
	f := newFixture(b)
	p := f.params(1)
	for b.Loop() {
		if _, err := SealSparse(f.sealer(), p, sparseBenchSize, sparseBenchSectors()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenSparse measures Open of a 1 GiB file with 4 present sectors,
// which computes the root from 3 ranges rather than 262144 leaves.
func BenchmarkOpenSparse(b *testing.B) {
	f := newFixture(b)
	encoded, err := SealSparse(f.sealer(), f.params(1), sparseBenchSize, sparseBenchSectors())
	if err != nil {
		b.Fatal(err)
	}
	expect := f.expect(1)
	for b.Loop() {
		if _, err := Open(encoded, f.alice, expect); err != nil {
			b.Fatal(err)
		}
	}
}
