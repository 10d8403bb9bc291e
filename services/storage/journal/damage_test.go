package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// writeJournal creates a closed journal of n records and returns it with the
// record offsets of its last segment.
func writeJournal(t *testing.T, n int, segmentSize int64) (*env, []int64) {
	t.Helper()
	e := newEnv(t)
	l := e.open(segmentSize)
	appendSynced(t, l, n)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	paths := segmentPaths(t, e.dir)
	offsets, _ := recordOffsets(t, paths[len(paths)-1])
	return e, offsets
}

func flipByte(t *testing.T, path string, offset int64, mask byte) {
	t.Helper()
	data := readFile(t, path)
	data[offset] ^= mask
	writeFile(t, path, data)
}

// payloadOffset returns the offset of the first ciphertext byte of the
// record at offset, which has the two tags of tagsFor.
func payloadOffset(recordOffset int64) int64 {
	return recordOffset + recordPrefixSize + int64(headerSize(2)) + crcSize + cipherSize + nonceSize
}

// fixBodyCRC recomputes the body CRC of the record at offset, so that a
// change to the body reaches the AEAD instead of stopping at the CRC.
func fixBodyCRC(t *testing.T, path string, offset int64) {
	t.Helper()
	data := readFile(t, path)
	length := int64(binary.BigEndian.Uint32(data[offset:]))
	crcAt := offset + recordPrefixSize + int64(headerSize(2))
	sum := crc32.Checksum(data[crcAt+crcSize:offset+length], castagnoli)
	binary.BigEndian.PutUint32(data[crcAt:], sum)
	writeFile(t, path, data)
}

// spliceRecord overwrites the record at offset with record, which must have
// the same length.
func spliceRecord(t *testing.T, path string, offset int64, record []byte) {
	t.Helper()
	data := readFile(t, path)
	old := int64(binary.BigEndian.Uint32(data[offset:]))
	if old != int64(len(record)) {
		t.Fatalf("spliced record has %d bytes, the one it replaces %d", len(record), old)
	}
	copy(data[offset:], record)
	writeFile(t, path, data)
}

// recordAt returns the bytes of the record at offset.
func recordAt(t *testing.T, path string, offset int64) []byte {
	t.Helper()
	data := readFile(t, path)
	length := int64(binary.BigEndian.Uint32(data[offset:]))
	return slices.Clone(data[offset : offset+length])
}

// checkDamagedRecord fails unless r is record seq, damaged with want.
func checkDamagedRecord(t *testing.T, r Record, seq uint64, want error) {
	t.Helper()
	if r.Seq != seq || !r.Damaged {
		t.Fatalf("record seq %d damaged %v, expected seq %d damaged", r.Seq, r.Damaged, seq)
	}
	if !errors.Is(r.Err, want) {
		t.Fatalf("record seq %d error %v, expected %v", seq, r.Err, want)
	}
	if r.Payload != nil {
		t.Fatalf("damaged record seq %d has a payload", seq)
	}
	if !slices.Equal(r.Tags, tagsFor(seq)) {
		t.Fatalf("damaged record seq %d tags %v, expected %v", seq, r.Tags, tagsFor(seq))
	}
}

// checkOneDamaged replays the journal and fails unless exactly record
// damagedSeq of 1 to last is damaged with want.
func checkOneDamaged(t *testing.T, l *Log, last, damagedSeq uint64, want error) {
	t.Helper()
	checkDamaged(t, l, last, []uint64{damagedSeq}, want)
}

// checkDamaged replays the journal and fails unless records 1 to last are
// there, the ones in damaged Damaged with want and the others good. It
// returns the damaged records.
func checkDamaged(t *testing.T, l *Log, last uint64, damaged []uint64, want error) []Record {
	t.Helper()
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != int(last) {
		t.Fatalf("replayed %d records, expected %d", len(records), last)
	}
	var bad []Record
	for i, r := range records {
		seq := uint64(i + 1)
		if slices.Contains(damaged, seq) {
			checkDamagedRecord(t, r, seq, want)
			bad = append(bad, r)
		} else {
			checkGood(t, r, seq)
		}
	}
	return bad
}

func TestDamagedPayloadInMiddle(t *testing.T) {
	e, offsets := writeJournal(t, 6, 0)
	path := segmentPaths(t, e.dir)[0]
	size := fileSize(t, path)
	flipByte(t, path, payloadOffset(offsets[2])+5, 0x01)

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 {
		t.Fatalf("Check found %d problems, expected 1: %v", len(problems), problems)
	}
	p := problems[0]
	if p.Offset != offsets[2] || p.Seq != 3 || !p.HeaderValid || p.TornTail || !slices.Equal(p.Tags, tagsFor(3)) || !errors.Is(p.Err, ErrChecksum) {
		t.Errorf("Check reported %v, expected a checksum mismatch of seq 3 at offset %d with tags %v", p, offsets[2], tagsFor(3))
	}

	l := e.open(0)
	if got := fileSize(t, path); got != size {
		t.Fatalf("Open changed the segment from %d to %d bytes", size, got)
	}
	if got := l.NextSeq(); got != 7 {
		t.Fatalf("NextSeq = %d, expected 7", got)
	}
	want := fmt.Sprintf("offset=%d seq=3", offsets[2])
	if logs := e.logs.String(); !strings.Contains(logs, "damaged record kept") || !strings.Contains(logs, want) {
		t.Errorf("Open logged no error with %q about the kept damage:\n%s", want, logs)
	}
	checkOneDamaged(t, l, 6, 3, ErrChecksum)

	appendSynced(t, l, 1)
	records, err := replay(l, 7)
	if err != nil {
		t.Fatalf("Replay from 7: %v", err)
	}
	checkRecords(t, records, 7, 7)
}

// TestChangedRecordFailsSeal changes a record inside a sealed group, with
// its CRC fixed, and checks that only that record is damaged.
func TestChangedRecordFailsSeal(t *testing.T) {
	e, offsets := writeJournal(t, 4, 0)
	path := segmentPaths(t, e.dir)[0]
	flipByte(t, path, payloadOffset(offsets[1]), 0x80)
	fixBodyCRC(t, path, offsets[1])

	l := e.open(0)
	checkOneDamaged(t, l, 4, 2, ErrSealMismatch)

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 || problems[0].Seq != 2 || problems[0].Offset != offsets[1] || problems[0].TornTail || !errors.Is(problems[0].Err, ErrSealMismatch) {
		t.Errorf("Check reported %v, expected a seal mismatch of seq 2 at offset %d", problems, offsets[1])
	}
}

func TestDamagedHeaderInMiddle(t *testing.T) {
	e, offsets := writeJournal(t, 6, 0)
	path := segmentPaths(t, e.dir)[0]
	size := fileSize(t, path)
	// The first byte of the second tag of record 3.
	flipByte(t, path, offsets[2]+recordPrefixSize+headerFixedSize-4+8, 0x01)

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 {
		t.Fatalf("Check found %d problems, expected 1: %v", len(problems), problems)
	}
	p := problems[0]
	if p.Offset != offsets[2] || p.Size != offsets[3]-offsets[2] || p.HeaderValid || p.TornTail || p.Seq != 3 {
		t.Errorf("Check reported %v, expected an unreadable header at offset %d up to %d", p, offsets[2], offsets[3])
	}

	l := e.open(0)
	if got := fileSize(t, path); got != size {
		t.Fatalf("Open changed the segment from %d to %d bytes", size, got)
	}
	if got := l.NextSeq(); got != 7 {
		t.Fatalf("NextSeq = %d, expected 7", got)
	}
	records, err := replay(l, 1)
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) {
		t.Fatalf("Replay returned %v, expected a *CorruptError", err)
	}
	if corrupt.Segment != filepath.Base(path) || corrupt.Offset != offsets[2] || corrupt.Seq != 3 {
		t.Errorf("CorruptError names segment %s offset %d seq %d, expected %s offset %d seq 3",
			corrupt.Segment, corrupt.Offset, corrupt.Seq, filepath.Base(path), offsets[2])
	}
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrChecksum) {
		t.Errorf("Replay error %v does not match ErrCorrupt and ErrChecksum", err)
	}
	checkRecords(t, records, 1, 2)

	appendSynced(t, l, 1)
	if got := l.NextSeq(); got != 8 {
		t.Errorf("NextSeq after Append = %d, expected 8", got)
	}
}

// flipOutcome is what happened to a journal with one flipped byte.
type flipOutcome struct {
	openErr  error
	cut      bool // Open made the last segment shorter
	damaged  []uint64
	corrupt  *CorruptError
	good     int
	problems []Problem
}

// TestEveryByteFlipDetected flips each byte of a small journal, once by one
// bit and once by all bits, and checks that every change is reported or cut
// and that no good record ever has wrong contents.
func TestEveryByteFlipDetected(t *testing.T) {
	e, _ := writeJournal(t, 4, 400)
	paths := segmentPaths(t, e.dir)
	if len(paths) != 2 {
		t.Fatalf("4 records made %d segments, expected 2", len(paths))
	}
	lastPath := paths[len(paths)-1]
	_, lastEnd := recordOffsets(t, lastPath)
	seals := sealOffsets(t, lastPath)
	if len(seals) != 1 {
		t.Fatalf("last segment has %d seals, expected 1", len(seals))
	}
	// Damage to the seal of the last group looks like a torn write of that
	// group, so Open cuts the whole group.
	lastSeal := seals[0]

	for fileIndex, path := range paths {
		data := readFile(t, path)
		for offset := range int64(len(data)) {
			for _, mask := range []byte{0x01, 0xff} {
				name := fmt.Sprintf("segment %d offset %d mask %#02x", fileIndex, offset, mask)
				out := flipAndReplay(t, e, fileIndex, offset, mask)
				inLast := fileIndex == len(paths)-1
				switch {
				case offset < segmentHeaderSize && inLast:
					if out.openErr == nil {
						t.Fatalf("%s: Open accepted a damaged header of the last segment", name)
					}
				case offset < segmentHeaderSize:
					if out.corrupt == nil || out.corrupt.Offset != 0 {
						t.Fatalf("%s: Replay did not stop at the damaged segment header: %+v", name, out)
					}
				case inLast && offset >= lastSeal:
					if out.openErr != nil || !out.cut || out.good != 2 || len(out.damaged) != 0 || out.corrupt != nil {
						t.Fatalf("%s: last group not cut as a torn tail: %+v", name, out)
					}
				default:
					if out.openErr != nil {
						t.Fatalf("%s: Open: %v", name, out.openErr)
					}
					if out.cut || (len(out.damaged) == 0 && out.corrupt == nil) {
						t.Fatalf("%s: damage not reported: %+v", name, out)
					}
				}
				if len(out.problems) == 0 {
					t.Fatalf("%s: Check found no problem", name)
				}
				for _, p := range out.problems {
					wantTorn := inLast && offset >= lastSeal && offset < lastEnd
					if p.TornTail != wantTorn {
						t.Fatalf("%s: Check reported %v, torn tail expected %v", name, p, wantTorn)
					}
				}
			}
		}
	}
}

// flipAndReplay flips one byte in a copy of the journal, runs Check, Open
// and Replay on it, and fails if a good record has wrong contents.
func flipAndReplay(t *testing.T, e *env, fileIndex int, offset int64, mask byte) flipOutcome {
	t.Helper()
	c := e.copyJournal()
	paths := segmentPaths(t, c.dir)
	flipByte(t, paths[fileIndex], offset, mask)
	last := paths[len(paths)-1]
	sizeBefore := fileSize(t, last)

	var out flipOutcome
	opts := c.options(0)
	opts.SegmentSize = 400
	opts.hooks = noSyncHooks()
	var err error
	out.problems, err = Check(opts)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	l, err := Open(opts)
	if err != nil {
		out.openErr = err
		return out
	}
	defer l.Close()
	out.cut = fileSize(t, last) < sizeBefore

	var expected uint64 = 1
	err = l.Replay(1, func(r Record) error {
		if r.Damaged {
			if r.Payload != nil {
				t.Fatalf("damaged record seq %d has a payload", r.Seq)
			}
			out.damaged = append(out.damaged, r.Seq)
		} else {
			checkGood(t, r, expected)
			out.good++
		}
		expected++
		return nil
	})
	if err != nil && !errors.As(err, &out.corrupt) {
		t.Fatalf("Replay returned %v, expected nil or a *CorruptError", err)
	}
	return out
}

// TestForgedRecordDetected splices in records that a holder of the journal
// key, but not of the node's signing key, made: they decrypt, but no seal
// of the node lists them.
func TestForgedRecordDetected(t *testing.T) {
	e, offsets := writeJournal(t, 5, 0)
	l := e.open(0)
	id := l.ID()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	intruder := newCredential(t)
	forger, err := newCodec(e.key, id, intruder, intruder.Signing.Public())
	if err != nil {
		t.Fatalf("newCodec: %v", err)
	}
	forged := func(seq uint64) []byte {
		record, err := forger.encode(seq, tagsFor(seq), payloadFor(seq))
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		return record
	}

	t.Run("middle", func(t *testing.T) {
		c := e.copyJournal()
		spliceRecord(t, onlySegment(c), offsets[2], forged(3))
		l := c.open(0)
		checkOneDamaged(t, l, 5, 3, ErrSealMismatch)
		problems, err := Check(c.options(0))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if len(problems) != 1 || problems[0].Seq != 3 || !errors.Is(problems[0].Err, ErrSealMismatch) {
			t.Errorf("Check reported %v, expected a seal mismatch of seq 3", problems)
		}
	})
	t.Run("last", func(t *testing.T) {
		c := e.copyJournal()
		spliceRecord(t, onlySegment(c), offsets[4], forged(5))
		before := readFile(t, onlySegment(c))
		if l, err := Open(c.options(0)); !errors.Is(err, ErrSealMismatch) {
			if err == nil {
				l.Close()
			}
			t.Fatalf("Open with a forged last record returned %v, expected a seal mismatch", err)
		}
		if !bytes.Equal(readFile(t, onlySegment(c)), before) {
			t.Errorf("failed Open changed the segment")
		}
	})
	t.Run("sealed by the intruder", func(t *testing.T) {
		// The intruder also replaces the seal with one of its own over the
		// forged record.
		c := e.copyJournal()
		path := onlySegment(c)
		spliceRecord(t, path, offsets[2], forged(3))
		spliceRecord(t, path, sealOffsets(t, path)[0], sealOver(t, forger, path, 0, 1))
		before := readFile(t, path)
		if l, err := Open(c.options(0)); !errors.Is(err, principal.ErrBadSignature) {
			if err == nil {
				l.Close()
			}
			t.Fatalf("Open with a seal of another key returned %v, expected a bad signature", err)
		}
		if !bytes.Equal(readFile(t, path), before) {
			t.Errorf("failed Open changed the segment")
		}
	})
}

func TestOpenWithWrongKeyFails(t *testing.T) {
	e, _ := writeJournal(t, 3, 0)
	path := segmentPaths(t, e.dir)[0]
	before := readFile(t, path)

	opts := e.options(0)
	opts.Key = bytes.Repeat([]byte{7}, KeySize)
	if l, err := Open(opts); !errors.Is(err, ErrDecrypt) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open with the wrong key returned %v, expected ErrDecrypt", err)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatalf("failed Open changed the segment")
	}

	problems, err := Check(opts)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 3 {
		t.Fatalf("Check with the wrong key found %d problems, expected 3", len(problems))
	}
	for _, p := range problems {
		if !errors.Is(p.Err, ErrDecrypt) || p.TornTail {
			t.Errorf("Check with the wrong key reported %v, expected ErrDecrypt", p)
		}
	}

	checkOpts := e.options(0)
	checkOpts.Signer = nil
	checkOpts.Verifier = newCredential(t).Signing.Public()
	problems, err = Check(checkOpts)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	// Each record of the group and the seal itself are a problem.
	if len(problems) != 4 {
		t.Fatalf("Check with another verifier found %d problems, expected 4: %v", len(problems), problems)
	}
	for i, p := range problems {
		if !errors.Is(p.Err, principal.ErrBadSignature) || p.Seal != (i == 3) || p.TornTail {
			t.Errorf("Check with another verifier reported %v, expected a bad signature of the seal", p)
		}
	}
	for _, p := range problems[:3] {
		if !errors.Is(p.Err, ErrUnsealed) {
			t.Errorf("Check with another verifier reported %v, expected a record without a valid seal", p)
		}
	}
}

func TestOpenChecksKeyInEarlierSegment(t *testing.T) {
	e := newEnv(t)
	l := e.open(smallSegments)
	appendSynced(t, l, 30)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// A new, empty last segment, as a crash right after rotation leaves it.
	paths := segmentPaths(t, e.dir)
	last := paths[len(paths)-1]
	offsets, _ := recordOffsets(t, last)
	if err := os.Truncate(last, segmentHeaderSize); err != nil {
		t.Fatalf("Truncate: %v", err)
	}
	// The records that were in it are gone, so the seqs go back.
	kept := 30 - uint64(len(offsets))

	opts := e.options(smallSegments)
	opts.Key = bytes.Repeat([]byte{7}, KeySize)
	if l, err := Open(opts); !errors.Is(err, ErrDecrypt) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open with the wrong key and an empty last segment returned %v, expected ErrDecrypt", err)
	}
	l = e.open(smallSegments)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, kept)
}

func TestRecordFromOtherJournal(t *testing.T) {
	a, offsetsA := writeJournal(t, 4, 0)
	// Journal B has the same key and signer but its own id.
	b := newEnv(t)
	b.key, b.signer = a.key, a.signer
	l := b.open(0)
	appendSynced(t, l, 4)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	offsetsB, _ := recordOffsets(t, onlySegment(b))
	spliceRecord(t, onlySegment(a), offsetsA[1], recordAt(t, onlySegment(b), offsetsB[1]))

	l = a.open(0)
	checkOneDamaged(t, l, 4, 2, ErrSealMismatch)
}

func TestReorderedRecords(t *testing.T) {
	e, offsets := writeJournal(t, 5, 0)
	path := segmentPaths(t, e.dir)[0]
	second := recordAt(t, path, offsets[1])
	third := recordAt(t, path, offsets[2])
	spliceRecord(t, path, offsets[1], third)
	spliceRecord(t, path, offsets[2], second)

	l := e.open(0)
	if got := l.NextSeq(); got != 6 {
		t.Fatalf("NextSeq = %d, expected 6", got)
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if len(records) != 5 {
		t.Fatalf("replayed %d records, expected 5", len(records))
	}
	checkGood(t, records[0], 1)
	checkDamagedRecord(t, records[1], 3, ErrSequence)
	checkDamagedRecord(t, records[2], 2, ErrSequence)
	checkGood(t, records[3], 4)
	checkGood(t, records[4], 5)

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 2 || !errors.Is(problems[0].Err, ErrSequence) || !errors.Is(problems[1].Err, ErrSequence) {
		t.Errorf("Check reported %v, expected two records out of sequence", problems)
	}
}

func TestCopiedRecordAtEnd(t *testing.T) {
	e, offsets := writeJournal(t, 3, 0)
	path := segmentPaths(t, e.dir)[0]
	data := readFile(t, path)

	// Record 2 appended again after the seal: authentic, but no seal
	// follows it, so Open cuts it like a torn write.
	c := e.copyJournal()
	writeFile(t, onlySegment(c), append(slices.Clone(data), recordAt(t, path, offsets[1])...))
	l := c.open(0)
	if got := l.NextSeq(); got != 4 {
		t.Fatalf("NextSeq = %d, expected 4", got)
	}
	if size := fileSize(t, onlySegment(c)); size != int64(len(data)) {
		t.Fatalf("segment has %d bytes after Open, expected %d", size, len(data))
	}
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 3)

	// The whole group appended again, with its seal: the copied seal
	// covers seqs 1 to 3 where the journal is at seq 4, so the newest seal
	// fails and Open changes nothing.
	c = e.copyJournal()
	writeFile(t, onlySegment(c), append(slices.Clone(data), data[segmentHeaderSize:]...))
	before := readFile(t, onlySegment(c))
	if l, err := Open(c.options(0)); !errors.Is(err, ErrSequence) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open with a copied group at the end returned %v, expected ErrSequence", err)
	}
	if !bytes.Equal(readFile(t, onlySegment(c)), before) {
		t.Errorf("failed Open changed the segment")
	}
}

func TestForeignJournalSegment(t *testing.T) {
	a, _ := writeJournal(t, 18, smallSegments)
	b := newEnv(t)
	b.key, b.signer = a.key, a.signer
	l := b.open(smallSegments)
	appendSynced(t, l, 18)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	pathsA, pathsB := segmentPaths(t, a.dir), segmentPaths(t, b.dir)
	if len(pathsA) < 3 || filepath.Base(pathsA[1]) != filepath.Base(pathsB[1]) {
		t.Fatalf("journals A and B have different segments: %v and %v", pathsA, pathsB)
	}
	writeFile(t, pathsA[1], readFile(t, pathsB[1]))

	_, err := Open(a.options(smallSegments))
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || !errors.Is(err, ErrWrongJournal) || corrupt.Segment != filepath.Base(pathsA[1]) {
		t.Fatalf("Open with a segment of another journal returned %v, expected ErrWrongJournal for %s", err, filepath.Base(pathsA[1]))
	}

	problems, err := Check(a.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 || !errors.Is(problems[0].Err, ErrWrongJournal) || problems[0].Segment != filepath.Base(pathsA[1]) {
		t.Errorf("Check reported %v, expected ErrWrongJournal for %s", problems, filepath.Base(pathsA[1]))
	}
}

func TestMissingSegmentDetected(t *testing.T) {
	e, _ := writeJournal(t, 18, smallSegments)
	paths := segmentPaths(t, e.dir)
	if len(paths) < 3 {
		t.Fatalf("18 records made %d segments, expected at least 3", len(paths))
	}
	firstOffsets, _ := recordOffsets(t, paths[0])
	if err := os.Remove(paths[1]); err != nil {
		t.Fatalf("Remove: %v", err)
	}

	l := e.open(smallSegments)
	records, err := replay(l, 1)
	if !errors.Is(err, ErrSequence) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Replay over a missing segment returned %v, expected ErrCorrupt and ErrSequence", err)
	}
	checkRecords(t, records, 1, uint64(len(firstOffsets)))

	problems, err := Check(e.options(0))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if len(problems) != 1 || !errors.Is(problems[0].Err, ErrSequence) || problems[0].Segment != filepath.Base(paths[2]) {
		t.Errorf("Check reported %v, expected one gap before %s", problems, filepath.Base(paths[2]))
	}
}

func TestErrorsNameTheLocation(t *testing.T) {
	corrupt := &CorruptError{Segment: segmentName(5), Offset: 300, Seq: 7, Err: ErrChecksum}
	for _, want := range []string{segmentName(5), "offset 300", "seq 7", ErrChecksum.Error(), ErrCorrupt.Error()} {
		if !strings.Contains(corrupt.Error(), want) {
			t.Errorf("CorruptError %q does not contain %q", corrupt.Error(), want)
		}
	}

	p := Problem{Segment: segmentName(5), Offset: 300, Size: 251, HeaderValid: true, Seq: 7, Tags: []uint64{70, 71}, TornTail: true, Err: ErrChecksum}
	for _, want := range []string{segmentName(5), "offset 300", "251 bytes", "seq 7", "[70 71]", "torn tail", ErrChecksum.Error()} {
		if !strings.Contains(p.String(), want) {
			t.Errorf("Problem %q does not contain %q", p.String(), want)
		}
	}
}

func TestOpenIgnoresOtherFiles(t *testing.T) {
	e, _ := writeJournal(t, 3, 0)
	others := []string{"README", "1.seg", segmentName(0), "0000000000000000000x.seg", segmentName(2) + ".bak"}
	for _, name := range others {
		writeFile(t, filepath.Join(e.dir, name), []byte("not a segment"))
	}
	l := e.open(0)
	appendSynced(t, l, 1)
	records, err := replay(l, 1)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	checkRecords(t, records, 1, 4)
	for _, name := range others {
		if _, err := os.Stat(filepath.Join(e.dir, name)); err != nil {
			t.Errorf("Open removed or broke %s: %v", name, err)
		}
	}
}
