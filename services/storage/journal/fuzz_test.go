package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// fuzzOptions returns options with a fixed key and signer, so that segment
// files in a fuzz corpus stay readable across runs. They skip fdatasync,
// which the fuzz target does not test and which would slow it down.
func fuzzOptions(t testing.TB, dir string) Options {
	t.Helper()
	scalar := func(b byte) []byte { return bytes.Repeat([]byte{b}, principal.PrivateKeySize) }
	signing, err := principal.ParseSigningKey(scalar(1))
	if err != nil {
		t.Fatalf("ParseSigningKey: %v", err)
	}
	encryption, err := principal.ParseEncryptionKey(scalar(2))
	if err != nil {
		t.Fatalf("ParseEncryptionKey: %v", err)
	}
	return Options{
		Dir:    dir,
		Key:    bytes.Repeat([]byte{3}, KeySize),
		Signer: &principal.Credential{Signing: signing, Encryption: encryption},
		Logger: slog.New(slog.DiscardHandler),
		hooks:  noSyncHooks(),
	}
}

// fuzzSeeds returns a real segment of two sealed groups of two records each
// and damaged copies of it.
func fuzzSeeds(f *testing.F) [][]byte {
	dir := filepath.Join(f.TempDir(), "journal")
	l, err := Open(fuzzOptions(f, dir))
	if err != nil {
		f.Fatalf("Open: %v", err)
	}
	appendSynced(f, l, 2)
	appendSynced(f, l, 2)
	if err := l.Close(); err != nil {
		f.Fatalf("Close: %v", err)
	}
	path := segmentPaths(f, dir)[0]
	segment := readFile(f, path)
	offsets, seals, end := itemOffsets(f, path)

	flipped := func(offset int64) []byte {
		b := slices.Clone(segment)
		b[offset] ^= 0x01
		return b
	}
	seeds := [][]byte{
		segment,
		segment[:segmentHeaderSize],
		segment[:segmentHeaderSize-1],
		segment[:offsets[1]+20],
		segment[:end-1],
		segment[:seals[1]], // the second group without its seal
		append(slices.Clone(segment), make([]byte, 512)...),
		flipped(offsets[1] + 30),  // header of record 2
		flipped(offsets[1] + 100), // body of record 2
		flipped(seals[0] + 10),    // header of the first seal
		flipped(seals[0] + 40),    // a hash in the first seal
		flipped(end - 1),          // signature of the last seal
		flipped(10),               // segment header
		append(slices.Clone(segment[:seals[0]]), segment[offsets[2]:]...), // the first seal removed
		nil,
	}
	return seeds
}

// FuzzReplay feeds arbitrary bytes to Check, Open and Replay as the only
// segment of a journal. None of them may panic, and a record that Replay
// passes as good must be one that appendSynced wrote for that seq.
func FuzzReplay(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, segment []byte) {
		dir := filepath.Join(t.TempDir(), "journal")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatalf("Mkdir: %v", err)
		}
		writeFile(t, filepath.Join(dir, segmentName(1)), segment)
		opts := fuzzOptions(t, dir)

		problems, err := Check(opts)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		for _, p := range problems {
			if p.Err == nil || p.Offset < 0 || p.Size < 0 || p.Offset+p.Size > int64(len(segment)) {
				t.Fatalf("Check reported an impossible problem: %+v", p)
			}
		}

		l, err := Open(opts)
		if err != nil {
			return
		}
		defer l.Close()

		var position uint64 = 1
		err = l.Replay(1, func(r Record) error {
			if r.Damaged {
				if r.Payload != nil || r.Err == nil {
					t.Fatalf("damaged record seq %d: payload %q, error %v", r.Seq, r.Payload, r.Err)
				}
			} else {
				if r.Seq != position || !bytes.Equal(r.Payload, payloadFor(r.Seq)) || !slices.Equal(r.Tags, tagsFor(r.Seq)) {
					t.Fatalf("good record at position %d: seq %d, tags %v, payload %q", position, r.Seq, r.Tags, r.Payload)
				}
			}
			position++
			return nil
		})
		var corrupt *CorruptError
		if err != nil && !errors.As(err, &corrupt) {
			t.Fatalf("Replay returned %v, expected nil or a *CorruptError", err)
		}
		replayed := err == nil

		// Appending after whatever Open kept must work, and the new record
		// must replay, unless damage before it stops Replay.
		next := l.NextSeq()
		appendSynced(t, l, 1)
		if !replayed {
			return
		}
		records, err := replay(l, next)
		if err != nil {
			t.Fatalf("Replay of the appended record: %v", err)
		}
		checkRecords(t, records, next, next)
	})
}

// FuzzDecodeSeal feeds arbitrary bytes to the seal decoder. It must not
// panic, and what it accepts must be canonical: exactly the bytes that
// assembleSeal makes of the decoded fields. The signature check must not
// panic either.
func FuzzDecodeSeal(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		for off := int64(segmentHeaderSize); off+recordPrefixSize+2 <= int64(len(seed)); {
			length := int64(binary.BigEndian.Uint32(seed[off:]))
			if length == 0 || off+length > int64(len(seed)) {
				break
			}
			f.Add(slices.Clone(seed[off : off+length]))
			off += length
		}
	}
	c, err := newCodec(bytes.Repeat([]byte{3}, KeySize), journalID{}, nil, fuzzOptions(f, f.TempDir()).Signer.Signing.Public())
	if err != nil {
		f.Fatalf("newCodec: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, s, err := decodeSeal(b)
		if err != nil {
			return
		}
		if !h.seal || h.count < 1 || h.count > maxSealRecords || len(b) != sealSize(h.count) {
			t.Fatalf("decoded seal of %d bytes: %+v", len(b), h)
		}
		if again := assembleSeal(h.encoded, s.hashes, s.signature); !bytes.Equal(again, b) {
			t.Fatalf("decoded seal is not canonical:\n%x\n%x", b, again)
		}
		for seq := h.seq - 1; seq <= h.seq+uint64(h.count); seq++ {
			_, ok := s.hash(h, seq)
			if inRange := seq >= h.seq && seq < h.seq+uint64(h.count); ok != inRange {
				t.Fatalf("seal from seq %d of %d records: hash of seq %d found %v", h.seq, h.count, seq, ok)
			}
		}
		_ = c.verifySeal(h, s)
	})
}
