package block

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// checkFlipDetected opens encoded, which has one bit flipped, and reads it
// all. It returns an error unless Open or Bytes failed with ErrIntegrity.
func checkFlipDetected(f *fixture, encoded []byte) error {
	r, err := Open(encoded, f.alice, f.expect(1))
	if err == nil {
		_, err = r.Bytes()
	}
	if err == nil {
		return errors.New("Open and Bytes succeeded")
	}
	if !errors.Is(err, ErrIntegrity) {
		return fmt.Errorf("error does not match ErrIntegrity: %w", err)
	}
	return nil
}

// checkSectorFlipDetected reads all of r, whose encoded block has one bit
// flipped in sector damaged. It returns an error unless the read failed with
// an IntegrityError for that sector.
func checkSectorFlipDetected(r *Reader, damaged int) error {
	_, err := r.Bytes()
	if err == nil {
		return errors.New("Bytes succeeded")
	}
	var integrity *IntegrityError
	if !errors.As(err, &integrity) || !errors.Is(err, ErrIntegrity) {
		return fmt.Errorf("error is not an IntegrityError matching ErrIntegrity: %w", err)
	}
	if integrity.Sector != damaged {
		return fmt.Errorf("error names sector %d, expected %d: %w", integrity.Sector, damaged, err)
	}
	return nil
}

// freshOpenEvery is how often a sector flip is also checked with a new Open
// of the flipped block rather than through a Reader opened before the flip.
const freshOpenEvery = 61

// TestBitFlipDetectedSmallBlocks flips every bit of small blocks, one at a
// time, and checks that Open or reading fails with ErrIntegrity.
//
// A flip in the header or the leaf hashes goes through a new Open each time.
// Open reads no byte of the sectors, so a flip in a sector goes through a
// Reader opened once before the flips, which checks each sector again on
// every read. That saves a signature check, a chain check and an ECDH per
// bit. Every freshOpenEvery-th sector flip also goes through a new Open.
// Each half of the bits is checked on its own copy of the block.
func TestBitFlipDetectedSmallBlocks(t *testing.T) {
	f := newFixture(t)
	p := f.params(1)
	p.Readers = []principal.Identity{f.alice.Identity()}
	for _, size := range []int{0, 1, SectorSize - 1, SectorSize + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			checkEveryBitFlip(t, f, f.seal(p, testData(size)))
		})
	}
}

// checkEveryBitFlip flips every bit of original, a block that Alice can
// read, one at a time, as TestBitFlipDetectedSmallBlocks describes.
func checkEveryBitFlip(t *testing.T, f *fixture, original []byte) {
	t.Helper()
	layout := blockParts(t, original)
	bits := len(original) * 8

	const workers = 2
	var wg sync.WaitGroup
	failures := make([][]string, workers)
	for w := range workers {
		wg.Go(func() {
			encoded := bytes.Clone(original)
			r, err := Open(encoded, f.alice, f.expect(1))
			if err != nil {
				failures[w] = append(failures[w], fmt.Sprintf("Open of the intact block: %v", err))
				return
			}
			for bit := w; bit < bits && len(failures[w]) < 10; bit += workers {
				offset := bit / 8
				encoded[offset] ^= 1 << (bit % 8)
				if offset < layout.sectorsStart || bit%freshOpenEvery == 0 {
					err = checkFlipDetected(f, encoded)
				}
				if err == nil && offset >= layout.sectorsStart {
					err = checkSectorFlipDetected(r, layout.sectorAt(offset))
				}
				if err != nil {
					failures[w] = append(failures[w], fmt.Sprintf("bit %d (byte %d): %v", bit, offset, err))
				}
				encoded[offset] ^= 1 << (bit % 8)
			}
		})
	}
	wg.Wait()
	for _, list := range failures {
		for _, failure := range list {
			t.Error(failure)
		}
	}
	t.Logf("flipped each of %d bits of a %d-byte block, %d of them before the sectors", bits, len(original), layout.sectorsStart*8)
}

// TestBitFlipDetectedLargeBlockSample flips a random sample of the bits of a
// 10 MiB block, and a second sample from its header and leaf hashes, which
// are less than 1% of the block. A flip before the sectors must fail Open. A
// flip in a sector must fail the read of that sector, through a Reader
// opened before the flip and, for every freshOpenEvery-th flip, through a new
// Open. A read of another sector must still return the right bytes.
func TestBitFlipDetectedLargeBlockSample(t *testing.T) {
	const samples = 2000
	const headerSamples = 200
	const seed = 20250601
	t.Logf("sampling %d bits of the block and %d of its header and leaves with seed %d", samples, headerSamples, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	f := newFixture(t)
	data := testData(tenMiB)
	encoded := f.seal(f.params(1), data)
	sectorsStart := blockParts(t, encoded).sectorsStart
	sectors := (len(data) + SectorSize - 1) / SectorSize
	shared := f.open(encoded, f.alice, 1)
	buf := make([]byte, SectorSize)

	for i := range samples + headerSamples {
		bit := rng.IntN(len(encoded) * 8)
		if i >= samples {
			bit = rng.IntN(sectorsStart * 8)
		}
		offset := bit / 8
		encoded[offset] ^= 1 << (bit % 8)

		if offset < sectorsStart {
			_, err := Open(encoded, f.alice, f.expect(1))
			if err == nil {
				t.Errorf("bit %d (byte %d) before the sectors: Open succeeded", bit, offset)
			} else if !errors.Is(err, ErrIntegrity) {
				t.Errorf("bit %d (byte %d): Open error does not match ErrIntegrity: %v", bit, offset, err)
			}
			encoded[offset] ^= 1 << (bit % 8)
			continue
		}

		damaged := (offset - sectorsStart) / (SectorSize + fixtureCipher.sectorOverhead())
		readers := []*Reader{shared}
		if i%freshOpenEvery == 0 {
			r, err := Open(encoded, f.alice, f.expect(1))
			if err != nil {
				t.Errorf("bit %d in sector %d: Open: %v (Open reads no sector, so it should succeed)", bit, damaged, err)
			} else {
				readers = append(readers, r)
			}
		}
		for _, r := range readers {
			_, err := r.ReadAt(buf, int64(damaged)*SectorSize)
			var integrity *IntegrityError
			switch {
			case err == nil:
				t.Errorf("bit %d in sector %d: ReadAt of that sector succeeded", bit, damaged)
			case !errors.As(err, &integrity) || !errors.Is(err, ErrIntegrity):
				t.Errorf("bit %d in sector %d: ReadAt error is not an IntegrityError: %v", bit, damaged, err)
			case integrity.Sector != damaged:
				t.Errorf("bit %d in sector %d: ReadAt error names sector %d", bit, damaged, integrity.Sector)
			}

			intact := (damaged + 1 + rng.IntN(sectors-1)) % sectors
			n, err := r.ReadAt(buf, int64(intact)*SectorSize)
			if err != nil {
				t.Errorf("bit %d in sector %d: ReadAt of intact sector %d: %v", bit, damaged, intact, err)
			} else if !bytes.Equal(buf[:n], data[intact*SectorSize:intact*SectorSize+n]) {
				t.Errorf("bit %d in sector %d: intact sector %d returned wrong bytes", bit, damaged, intact)
			}
		}
		encoded[offset] ^= 1 << (bit % 8)
	}
}

func TestSwappedSectorsDetected(t *testing.T) {
	f := newFixture(t)
	data := testData(3 * SectorSize)
	encoded := f.seal(f.params(1), data)

	start0, end0 := sealedSector(t, encoded, 0)
	start1, end1 := sealedSector(t, encoded, 1)
	sector0 := bytes.Clone(encoded[start0:end0])
	copy(encoded[start0:end0], encoded[start1:end1])
	copy(encoded[start1:end1], sector0)

	r, err := Open(encoded, f.alice, f.expect(1))
	if err != nil {
		t.Fatalf("Open: %v (the header and leaves are intact, so Open should succeed)", err)
	}
	_, err = r.Bytes()
	requireIntegrityError(t, err, ptr(0))

	got := make([]byte, SectorSize)
	_, err = r.ReadAt(got, 2*SectorSize)
	if err != nil {
		t.Errorf("ReadAt of the untouched sector 2: %v", err)
	} else if !bytes.Equal(got, data[2*SectorSize:]) {
		t.Error("ReadAt of the untouched sector 2 returned wrong bytes")
	}

	_, err = Verify(encoded, f.root.Principal(), time.Now())
	requireIntegrityError(t, err, ptr(0))
}

func TestTruncatedBlockRejected(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(2*SectorSize+100))
	layout := blockParts(t, encoded)

	cuts := []int{0, 1, 2, 3, 6, 100, layout.rangesStart - 1, layout.rangesStart, layout.rangesStart + 3,
		layout.leavesStart, layout.leavesStart + 5, layout.sectorsStart,
		layout.sectorsStart + 1000, layout.sectorsStart + SectorSize + layout.overhead, len(encoded) - 1}
	for _, cut := range cuts {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			truncated := bytes.Clone(encoded[:cut])
			if _, err := Open(truncated, f.alice, f.expect(1)); err == nil {
				t.Error("Open succeeded")
			} else {
				requireIntegrityError(t, err, ptr(HeaderSector))
			}
			if _, err := Verify(truncated, f.root.Principal(), time.Now()); err == nil {
				t.Error("Verify succeeded")
			} else {
				requireIntegrityError(t, err, ptr(HeaderSector))
			}
		})
	}

	extended := append(bytes.Clone(encoded), 0)
	if _, err := Open(extended, f.alice, f.expect(1)); err == nil {
		t.Error("Open succeeded on the block with a byte appended")
	} else {
		requireIntegrityError(t, err, ptr(HeaderSector))
	}
}

func TestOlderVersionRejectedAsRollback(t *testing.T) {
	f := newFixture(t)
	older := f.seal(f.params(4), testData(100))
	newer := f.seal(f.params(5), testData(200))

	_, err := Open(older, f.alice, f.expect(5))
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("Open of version 4 with MinVersion 5: %v, expected ErrRollback", err)
	}
	var rollback *RollbackError
	if !errors.As(err, &rollback) {
		t.Fatalf("error %v is %T, expected *RollbackError", err, err)
	}
	if rollback.Have != 4 || rollback.Want != 5 || rollback.ID != f.id {
		t.Errorf("RollbackError = %+v, expected Have 4, Want 5 and the block id", rollback)
	}

	if _, err := Open(newer, f.alice, f.expect(5)); err != nil {
		t.Errorf("Open of version 5 with MinVersion 5: %v", err)
	}
	if _, err := Open(older, f.alice, f.expect(4)); err != nil {
		t.Errorf("Open of version 4 with MinVersion 4: %v", err)
	}
}

func TestSectorFromOlderVersionDetected(t *testing.T) {
	f := newFixture(t)
	data := testData(3 * SectorSize)
	older := f.seal(f.params(1), data)

	// The same key and data, so the old sector differs from the new one only
	// in its nonce and its version.
	p := f.params(2)
	p.Key = f.open(older, f.alice, 1).Key()
	newer := f.seal(p, data)

	start, end := sealedSector(t, newer, 1)
	oldStart, oldEnd := sealedSector(t, older, 1)
	copy(newer[start:end], older[oldStart:oldEnd])

	r, err := Open(newer, f.alice, f.expect(2))
	if err != nil {
		t.Fatalf("Open: %v (the header and leaves are intact, so Open should succeed)", err)
	}
	_, err = r.Bytes()
	requireIntegrityError(t, err, ptr(1))

	_, err = Verify(newer, f.root.Principal(), time.Now())
	requireIntegrityError(t, err, ptr(1))
}

// TestOlderSectorWithOwnLeafDetected splices an older sector together with
// its leaf hash, so only the signed root catches it.
func TestOlderSectorWithOwnLeafDetected(t *testing.T) {
	f := newFixture(t)
	data := testData(2 * SectorSize)
	older := f.seal(f.params(1), data)
	p := f.params(2)
	p.Key = f.open(older, f.alice, 1).Key()
	newer := f.seal(p, data)

	start, end := sealedSector(t, newer, 0)
	oldStart, oldEnd := sealedSector(t, older, 0)
	copy(newer[start:end], older[oldStart:oldEnd])
	leafStart, leafEnd := leafAt(t, newer, 0)
	oldLeafStart, oldLeafEnd := leafAt(t, older, 0)
	copy(newer[leafStart:leafEnd], older[oldLeafStart:oldLeafEnd])

	_, err := Open(newer, f.alice, f.expect(2))
	requireIntegrityError(t, err, ptr(HeaderSector))
}

func TestChangeAfterOpenDetected(t *testing.T) {
	f := newFixture(t)
	data := testData(2 * SectorSize)
	encoded := f.seal(f.params(1), data)
	r := f.open(encoded, f.alice, 1)

	start, _ := sealedSector(t, encoded, 1)
	encoded[start+100] ^= 0x80

	_, err := r.ReadAt(make([]byte, 10), SectorSize+5)
	requireIntegrityError(t, err, ptr(1))

	got := make([]byte, SectorSize)
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Errorf("ReadAt of the unchanged sector 0: %v", err)
	} else if !bytes.Equal(got, data[:SectorSize]) {
		t.Error("ReadAt of the unchanged sector 0 returned wrong bytes")
	}
}

func TestOpenRejectsOtherBlockID(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	expect := f.expect(1)
	expect.ID[0] ^= 1
	_, err := Open(encoded, f.alice, expect)
	requireIntegrityError(t, err, ptr(HeaderSector))
}

func TestOpenRejectsHeaderSignedByOther(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))
	forged := resign(t, encoded, f.alice, func(h *Header) {})

	_, err := Open(forged, f.alice, f.expect(1))
	requireIntegrityError(t, err, ptr(HeaderSector))
	if !errors.Is(err, principal.ErrBadSignature) {
		t.Errorf("Open error = %v, expected one matching principal.ErrBadSignature", err)
	}
}

// TestOpenRejectsKeyNotMatchingCommitment gives Bob a readcap for another key
// than the one committed to. A writer that did this for every reader could
// show each reader different data under one signed root.
func TestOpenRejectsKeyNotMatchingCommitment(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))
	otherKey := newBlockKey()
	forged := resign(t, encoded, f.writer, func(h *Header) {
		for i, r := range h.Recipients {
			if r.Readcap.Reader != f.bob.Principal() {
				continue
			}
			readcap, err := capability.WrapKey(h.ID, otherKey, r.Identity)
			if err != nil {
				t.Fatalf("WrapKey: %v", err)
			}
			h.Recipients[i].Readcap = readcap
		}
	})

	_, err := Open(forged, f.bob, f.expect(1))
	requireIntegrityError(t, err, ptr(HeaderSector))

	if _, err := Open(forged, f.alice, f.expect(1)); err != nil {
		t.Errorf("Open as Alice, whose readcap is unchanged: %v", err)
	}
}

func TestOpenRejectsReaderWithRotatedEncryptionKey(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(1), testData(10))

	rotated := *f.alice
	key, err := principal.GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	rotated.Encryption = key
	_, err = Open(encoded, &rotated, f.expect(1))
	if err == nil {
		t.Fatal("Open with a credential whose encryption key differs from the recipient's succeeded")
	}
	if errors.Is(err, ErrIntegrity) {
		t.Errorf("Open error = %v, which blames the block for the credential's key", err)
	}
}
