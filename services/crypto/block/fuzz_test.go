package block

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// fuzzBlocks returns encoded blocks to seed the fuzz targets. They have
// several sizes, holes at the start, in the middle and at the end, or holes
// only. One is sealed by the root with an empty chain, and one has metadata.
func fuzzBlocks(f *fixture) [][]byte {
	var blocks [][]byte
	for _, size := range []int{0, 1, SectorSize + 1} {
		blocks = append(blocks, f.seal(f.params(1), testData(size)))
	}
	for _, pattern := range []string{"HD", "DHHD", "DDH", "HHH"} {
		blocks = append(blocks, f.seal(f.params(1), sparseData(pattern, 33)))
	}

	p := f.params(2)
	p.Path = f.path("/etc/hostname")
	p.Metadata = nil
	p.Readers = []principal.Identity{f.alice.Identity()}
	byRoot, err := Seal(Writer{Credential: f.root}, p, testData(33))
	if err != nil {
		f.t.Fatalf("Seal by the root: %v", err)
	}
	return append(blocks, byRoot)
}

// FuzzParseHeader checks that ParseHeader never panics and that every header
// it accepts encodes back to exactly the bytes it was parsed from.
func FuzzParseHeader(f *testing.F) {
	fix := newFixture(f)
	for _, encoded := range fuzzBlocks(fix) {
		header := encoded[7:blockParts(f, encoded).rangesStart]
		f.Add(header)
		f.Add(header[:len(header)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x03, 0x02})

	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil {
			if h != nil {
				t.Errorf("ParseHeader returned a header with its error %v", err)
			}
			return
		}
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of an accepted header: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted header of %d bytes encodes to %d different bytes", len(data), len(again))
		}
	})
}

// FuzzOpen checks that Open, Verify and reads of whatever Open accepts never
// panic on arbitrary input. Every seed is a block of the fixture's tree that
// Alice can read, and a mutation cannot forge the writer's signature, so
// whatever Verify accepts must also open and read without error.
func FuzzOpen(f *testing.F) {
	fix := newFixture(f)
	for _, encoded := range fuzzBlocks(fix) {
		f.Add(encoded)
		f.Add(encoded[:len(encoded)-1])
		flipped := bytes.Clone(encoded)
		flipped[len(flipped)/2] ^= 0x10
		f.Add(flipped)
	}
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x09, 0x02, 0xff, 0xff, 0xff, 0xff})

	now := time.Now()
	expect := Expect{Root: fix.root.Principal(), ID: fix.id, Now: now}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, verifyErr := Verify(data, fix.root.Principal(), now)

		r, err := Open(data, fix.alice, expect)
		if err != nil {
			if verifyErr == nil {
				t.Fatalf("Verify accepted the block but Open failed: %v", err)
			}
			return
		}
		_, err = r.Bytes()
		if err != nil && !errors.Is(err, ErrIntegrity) {
			t.Errorf("Bytes of an opened block: %v, expected nil or ErrIntegrity", err)
		}
		if err != nil && verifyErr == nil {
			t.Errorf("Verify accepted the block but Bytes failed: %v", err)
		}
		buf := make([]byte, 100)
		if _, err := r.ReadAt(buf, r.Size()/2); err != nil && err != io.EOF && !errors.Is(err, ErrIntegrity) {
			t.Errorf("ReadAt of an opened block: %v", err)
		}
	})
}
