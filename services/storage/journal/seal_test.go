package journal

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// checkGroupDamaged replays the journal and fails unless records 1 to last
// are there, the ones in damaged Damaged with want and ErrUnsealed, and the
// others good.
func checkGroupDamaged(t *testing.T, l *Log, last uint64, damaged []uint64, want error) {
	t.Helper()
	for _, r := range checkDamaged(t, l, last, damaged, want) {
		if !errors.Is(r.Err, ErrUnsealed) {
			t.Errorf("record seq %d error %v, expected ErrUnsealed", r.Seq, r.Err)
		}
	}
}

// sealOver returns a seal made by c over the records of the segment at path
// between the seals at index sealIndex-1 (or the segment header) and
// sealIndex, naming firstSeq as its first seq.
func sealOver(t *testing.T, c *codec, path string, sealIndex int, firstSeq uint64) []byte {
	t.Helper()
	records, seals, _ := itemOffsets(t, path)
	from := int64(0)
	if sealIndex > 0 {
		from = seals[sealIndex-1]
	}
	var hashes [][hashSize]byte
	for _, off := range records {
		if off > from && off < seals[sealIndex] {
			hashes = append(hashes, sha256.Sum256(recordAt(t, path, off)))
		}
	}
	seal, err := c.seal(firstSeq, hashes)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return seal
}

// TestDamagedSealDamagesItsGroup damages the seal of the middle one of three
// groups in several ways and checks that exactly the records of that group
// are damaged.
func TestDamagedSealDamagesItsGroup(t *testing.T) {
	e, path := writeGroups(t, 2, 3, 2)
	seals := sealOffsets(t, path)
	l := e.open(0)
	id := l.ID()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var otherID journalID
	if _, err := rand.Read(otherID[:]); err != nil {
		t.Fatalf("rand.Read: %v", err)
	}
	otherJournal, err := newCodec(e.key, otherID, e.signer, e.signer.Signing.Public())
	if err != nil {
		t.Fatalf("newCodec: %v", err)
	}
	thisJournal, err := newCodec(e.key, id, e.signer, e.signer.Signing.Public())
	if err != nil {
		t.Fatalf("newCodec: %v", err)
	}

	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		want   error
	}{
		{"hash list changed", func(t *testing.T, path string) {
			flipByte(t, path, seals[1]+recordPrefixSize+sealHeaderSize+crcSize+40, 0x01)
		}, ErrChecksum},
		{"signature changed", func(t *testing.T, path string) {
			flipByte(t, path, seals[1]+int64(sealSize(3))-10, 0x01)
			fixSealCRC(t, path, seals[1])
		}, principal.ErrBadSignature},
		{"signed for another journal id", func(t *testing.T, path string) {
			spliceRecord(t, path, seals[1], sealOver(t, otherJournal, path, 1, 3))
		}, principal.ErrBadSignature},
		{"wrong seq range", func(t *testing.T, path string) {
			spliceRecord(t, path, seals[1], sealOver(t, thisJournal, path, 1, 4))
		}, ErrSequence},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := e.copyJournal()
			tc.damage(t, onlySegment(c))
			size := fileSize(t, onlySegment(c))

			l := c.open(0)
			if got := fileSize(t, onlySegment(c)); got != size {
				t.Fatalf("Open changed the segment from %d to %d bytes", size, got)
			}
			if got := l.NextSeq(); got != 8 {
				t.Fatalf("NextSeq = %d, expected 8", got)
			}
			checkGroupDamaged(t, l, 7, []uint64{3, 4, 5}, tc.want)

			problems, err := Check(c.options(0))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if len(problems) != 4 {
				t.Fatalf("Check found %d problems, expected 3 records and their seal: %v", len(problems), problems)
			}
			for i, p := range problems {
				wantSeal := i == 3
				if p.TornTail || p.Seal != wantSeal || !errors.Is(p.Err, tc.want) || (!wantSeal && p.Seq != uint64(3+i)) {
					t.Errorf("Check reported %v, expected a problem of seq %d (seal %v) with %v", p, 3+i, wantSeal, tc.want)
				}
			}
		})
	}
}

// TestDamagedSealHeaderDamagesItsGroup makes the header of the middle seal
// unreadable. Replay verifies the groups around it and stops there, and
// Check searches past it and finds the group after it intact.
func TestDamagedSealHeaderDamagesItsGroup(t *testing.T) {
	e, path := writeGroups(t, 2, 3, 2)
	seals := sealOffsets(t, path)
	flipByte(t, path, seals[1]+recordPrefixSize+4, 0x01)

	l := e.open(0)
	records, err := replay(l, 1)
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || corrupt.Offset != seals[1] {
		t.Fatalf("Replay returned %v, expected a *CorruptError at offset %d", err, seals[1])
	}
	if len(records) != 5 {
		t.Fatalf("replayed %d records before the damaged seal, expected 5", len(records))
	}
	checkRecords(t, records[:2], 1, 2)
	for i, r := range records[2:] {
		checkDamagedRecord(t, r, uint64(3+i), ErrUnsealed)
	}

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 4 {
		t.Fatalf("Check found %d problems, expected 3 records and the damaged header: %v", len(problems), problems)
	}
	for i, p := range problems[:3] {
		if p.Seq != uint64(3+i) || !errors.Is(p.Err, ErrUnsealed) || p.TornTail {
			t.Errorf("Check reported %v, expected seq %d without a valid seal", p, 3+i)
		}
	}
	if p := problems[3]; p.Offset != seals[1] || p.HeaderValid || p.TornTail {
		t.Errorf("Check reported %v, expected an unreadable header at offset %d", p, seals[1])
	}
}

// fixSealCRC recomputes the body CRC of the seal at offset, so that a
// change to its body reaches the signature check.
func fixSealCRC(t *testing.T, path string, offset int64) {
	t.Helper()
	data := readFile(t, path)
	length := int64(binary.BigEndian.Uint32(data[offset:]))
	crcAt := offset + recordPrefixSize + sealHeaderSize
	binary.BigEndian.PutUint32(data[crcAt:], crc32.Checksum(data[crcAt+crcSize:offset+length], castagnoli))
	writeFile(t, path, data)
}

// TestOldFormatVersionRejected rewrites the segment headers of a journal
// to format versions 1 and 2, with good CRCs, and checks that Open and Check
// fail with one line naming both versions and leave the directory as it was.
func TestOldFormatVersionRejected(t *testing.T) {
	for _, old := range []byte{1, 2} {
		t.Run(fmt.Sprintf("version %d", old), func(t *testing.T) {
			e := newEnv(t)
			l := e.open(smallSegments)
			appendSynced(t, l, 12)
			if err := l.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for _, path := range segmentPaths(t, e.dir) {
				data := readFile(t, path)
				data[2] = old
				setSegmentHeaderCRC(data)
				writeFile(t, path, data)
			}
			// A leftover temporary file, which Open would otherwise remove.
			writeFile(t, filepath.Join(e.dir, segmentName(99)+tempSuffix), []byte("half a header"))
			before := snapshotDir(t, e.dir)

			_, err := Open(e.options(smallSegments))
			if !errors.Is(err, ErrFormatVersion) {
				t.Fatalf("Open of a version %d journal returned %v, expected ErrFormatVersion", old, err)
			}
			for _, want := range []string{fmt.Sprintf("format version %d, expected %d", old, formatVersion), segmentName(1), e.dir} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Open error %q is more than one line", err)
			}

			if _, err := Check(e.options(0)); !errors.Is(err, ErrFormatVersion) {
				t.Errorf("Check of a version %d journal returned %v, expected ErrFormatVersion", old, err)
			}
			if after := snapshotDir(t, e.dir); !maps.Equal(before, after) {
				t.Errorf("Open or Check changed the directory of a version %d journal", old)
			}
		})
	}
}

func setSegmentHeaderCRC(data []byte) {
	sum := crc32.Checksum(data[:segmentHeaderSize-crcSize], castagnoli)
	binary.BigEndian.PutUint32(data[segmentHeaderSize-crcSize:], sum)
}

// snapshotDir returns the contents of every file in dir by name.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	files := map[string]string{}
	for _, entry := range entries {
		files[entry.Name()] = string(readFile(t, filepath.Join(dir, entry.Name())))
	}
	return files
}

func TestSealRoundTrip(t *testing.T) {
	e, path := writeGroups(t, 3)
	seal := recordAt(t, path, sealOffsets(t, path)[0])
	h, s, err := decodeSeal(seal)
	if err != nil {
		t.Fatalf("decodeSeal of a written seal: %v", err)
	}
	if h.seq != 1 || h.count != 3 {
		t.Errorf("seal covers %d records from seq %d, expected 3 from seq 1", h.count, h.seq)
	}
	l := e.open(0)
	if err := l.codec.verifySeal(h, s); err != nil {
		t.Errorf("verifySeal of a written seal: %v", err)
	}
	records, _ := recordOffsets(t, path)
	for i, off := range records {
		want := sha256.Sum256(recordAt(t, path, off))
		if got, ok := s.hash(h, uint64(i+1)); !ok || string(got) != string(want[:]) {
			t.Errorf("seal lists hash %x for seq %d, expected %x", got, i+1, want)
		}
	}
}

// sealCounts returns the number of records that each seal of the segment
// at path covers, in order.
func sealCounts(t *testing.T, path string) []int {
	t.Helper()
	var counts []int
	for _, off := range sealOffsets(t, path) {
		h, _, err := decodeSeal(recordAt(t, path, off))
		if err != nil {
			t.Fatalf("decodeSeal at offset %d: %v", off, err)
		}
		counts = append(counts, h.count)
	}
	return counts
}

func TestSealBoundsSplitBatch(t *testing.T) {
	t.Run("records", func(t *testing.T) {
		e, path := writeGroups(t, 3*maxSealRecords+17)
		if got, want := sealCounts(t, path), []int{maxSealRecords, maxSealRecords, maxSealRecords, 17}; !slices.Equal(got, want) {
			t.Errorf("one Sync of %d records made seals of %v records, expected %v", 3*maxSealRecords+17, got, want)
		}
		records, err := replay(e.open(0), 1)
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		checkRecords(t, records, 1, 3*maxSealRecords+17)
	})
	t.Run("bytes", func(t *testing.T) {
		e := newEnv(t)
		l := e.open(64 << 20)
		payload := make([]byte, 1<<20)
		for range 10 {
			if _, err := l.Append(nil, payload); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		// Seven records of 1 MiB and their overhead fit in 8 MiB, eight do
		// not.
		if got, want := sealCounts(t, segmentPaths(t, e.dir)[0]), []int{7, 3}; !slices.Equal(got, want) {
			t.Errorf("one Sync of 10 records of 1 MiB made seals of %v records, expected %v", got, want)
		}
		records, err := replay(l, 1)
		if err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if len(records) != 10 {
			t.Fatalf("replayed %d records, expected 10", len(records))
		}
		for _, r := range records {
			if r.Damaged || len(r.Payload) != len(payload) {
				t.Fatalf("record seq %d: damaged %v (%v), %d payload bytes", r.Seq, r.Damaged, r.Err, len(r.Payload))
			}
		}
	})
}

// TestGroupWithoutSealPastBounds removes the seal of a full group, so that
// its records run into the next group. Readers must give up on the first
// group at the bound instead of holding both, and the next group must
// still verify.
func TestGroupWithoutSealPastBounds(t *testing.T) {
	const n = maxSealRecords + 6
	e, path := writeGroups(t, n)
	first := sealOffsets(t, path)[0]
	data := readFile(t, path)
	length := int64(sealSize(maxSealRecords))
	writeFile(t, path, append(slices.Clone(data[:first]), data[first+length:]...))

	l := e.open(0)
	if got := l.NextSeq(); got != n+1 {
		t.Fatalf("NextSeq = %d, expected %d", got, n+1)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != n {
		t.Fatalf("replayed %d records, expected %d", len(records), n)
	}
	for i, r := range records {
		seq := uint64(i + 1)
		if seq <= maxSealRecords {
			checkDamagedRecord(t, r, seq, ErrUnsealed)
		} else {
			checkGood(t, r, seq)
		}
	}

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != maxSealRecords {
		t.Fatalf("Check found %d problems, expected %d", len(problems), maxSealRecords)
	}
	for _, p := range problems {
		if !errors.Is(p.Err, ErrUnsealed) || p.TornTail || p.Seq > maxSealRecords {
			t.Fatalf("Check reported %v, expected a record of the first group without a seal", p)
		}
	}
}

// TestDeferredHashesAcrossSyncs appends records on both sides of
// deferHashSize over several Syncs, so that record buffers are recycled
// between them, and checks that every record replays intact under its
// seal.
func TestDeferredHashesAcrossSyncs(t *testing.T) {
	e := newEnv(t)
	l := e.open(64 << 20)
	sizes := []int{deferHashSize - 200, deferHashSize, deferHashSize + 1, 1 << 20}
	var payloads [][]byte
	for round := range 4 {
		for i, size := range sizes {
			payload := bytes.Repeat([]byte{byte(round*len(sizes) + i + 1)}, size)
			payloads = append(payloads, payload)
			if _, err := l.Append(nil, payload); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != len(payloads) {
		t.Fatalf("replayed %d records, expected %d", len(records), len(payloads))
	}
	for i, r := range records {
		if r.Damaged {
			t.Errorf("record seq %d is damaged: %v", r.Seq, r.Err)
		}
		if !bytes.Equal(r.Payload, payloads[i]) {
			t.Errorf("record seq %d: payload of %d bytes differs from the appended one", r.Seq, len(r.Payload))
		}
	}
}
