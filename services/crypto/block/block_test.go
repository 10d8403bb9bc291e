package block

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

const tenMiB = 10 << 20

var roundTripSizes = []int{0, 1, SectorSize - 1, SectorSize, SectorSize + 1, 3*SectorSize + 17, tenMiB}

func TestSealOpenRoundTrip(t *testing.T) {
	f := newFixture(t)
	for _, size := range roundTripSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := testData(size)
			p := f.params(7)
			encoded := f.seal(p, data)

			for _, reader := range []*principal.Credential{f.writer, f.alice, f.bob} {
				r := f.open(encoded, reader, 7)
				got, err := r.Bytes()
				if err != nil {
					t.Fatalf("Bytes as %s: %v", reader.Principal(), err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("Bytes as %s returned %d bytes that differ from the %d sealed", reader.Principal(), len(got), len(data))
				}
			}

			r := f.open(encoded, f.alice, 0)
			if r.Size() != int64(size) {
				t.Errorf("Size = %d, expected %d", r.Size(), size)
			}
			if r.Version() != 7 {
				t.Errorf("Version = %d, expected 7", r.Version())
			}
			if r.ID() != f.id {
				t.Errorf("ID = %x, expected %x", r.ID(), f.id)
			}
			if r.Path() != p.Path {
				t.Errorf("Path = %q, expected %q", r.Path(), p.Path)
			}
			if !bytes.Equal(r.Metadata(), p.Metadata) {
				t.Errorf("Metadata = %q, expected %q", r.Metadata(), p.Metadata)
			}
			if !r.Writer().Equal(f.writer.Signing.Public()) {
				t.Errorf("Writer = %s, expected %s", r.Writer().Principal(), f.writer.Principal())
			}
			if got := len(r.Readers()); got != 3 {
				t.Errorf("Readers has %d entries, expected 3", got)
			}
			if len(r.Key()) != KeySize {
				t.Errorf("Key is %d bytes, expected %d", len(r.Key()), KeySize)
			}

			header, err := Verify(encoded, f.root.Principal(), f.expect(0).Now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if header.Size != uint64(size) || header.Version != 7 {
				t.Errorf("Verify header has size %d version %d, expected %d and 7", header.Size, header.Version, size)
			}
		})
	}
}

// readAtOffsets returns offsets around sector boundaries, the middle and the
// end of a block of size bytes.
func readAtOffsets(size int) []int64 {
	candidates := []int{0, 1, SectorSize - 1, SectorSize, SectorSize + 1, 2*SectorSize - 5, size / 2, size - SectorSize, size - 1, size, size + 10}
	var offsets []int64
	seen := map[int]bool{}
	for _, off := range candidates {
		if off >= 0 && !seen[off] {
			seen[off] = true
			offsets = append(offsets, int64(off))
		}
	}
	return offsets
}

func TestReaderReadAt(t *testing.T) {
	f := newFixture(t)
	lengths := []int{0, 1, 100, SectorSize, SectorSize + 1, 2*SectorSize + 3, 5 * SectorSize}
	for _, size := range roundTripSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := testData(size)
			r := f.open(f.seal(f.params(1), data), f.alice, 1)
			want := bytes.NewReader(data)

			for _, off := range readAtOffsets(size) {
				for _, length := range lengths {
					got := make([]byte, length)
					n, err := r.ReadAt(got, off)

					expected := make([]byte, length)
					wantN, wantErr := want.ReadAt(expected, off)
					if n != wantN {
						t.Errorf("ReadAt(%d bytes, offset %d) n = %d, expected %d", length, off, n, wantN)
					}
					if err != wantErr {
						t.Errorf("ReadAt(%d bytes, offset %d) error = %v, expected %v", length, off, err, wantErr)
					}
					if !bytes.Equal(got[:n], expected[:wantN]) {
						t.Errorf("ReadAt(%d bytes, offset %d) returned bytes that differ from the data", length, off)
					}
				}
			}
		})
	}
}

func TestReaderReadAtNegativeOffset(t *testing.T) {
	f := newFixture(t)
	r := f.open(f.seal(f.params(1), testData(10)), f.alice, 1)

	n, err := r.ReadAt(make([]byte, 4), -1)
	if err == nil || err == io.EOF {
		t.Fatalf("ReadAt at offset -1 = %d, %v, expected an error", n, err)
	}
	if n != 0 {
		t.Errorf("ReadAt at offset -1 returned n = %d, expected 0", n)
	}
}

func TestReaderConcurrentReadAt(t *testing.T) {
	f := newFixture(t)
	data := testData(16*SectorSize + 99)
	r := f.open(f.seal(f.params(1), data), f.alice, 1)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 32 {
				off := int64((g*32 + i) * 977 % len(data))
				buf := make([]byte, 3000)
				n, err := r.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					errs <- fmt.Errorf("ReadAt offset %d: %w", off, err)
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("ReadAt offset %d returned wrong bytes", off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSealTwiceDiffers(t *testing.T) {
	f := newFixture(t)
	data := testData(3 * SectorSize)
	p := f.params(1)
	p.Key = bytes.Repeat([]byte{0x42}, KeySize)

	first := f.seal(p, data)
	second := f.seal(p, data)
	if len(first) != len(second) {
		t.Fatalf("two seals have lengths %d and %d, expected equal", len(first), len(second))
	}
	if bytes.Equal(first, second) {
		t.Fatal("sealing the same data twice with the same key gave identical blocks")
	}

	h1, h2 := f.open(first, f.alice, 1).Header(), f.open(second, f.alice, 1).Header()
	if h1.Cipher == AES256GCM && h1.SectorSalt == h2.SectorSalt {
		t.Error("both seals used the same sector salt, so the same AES-GCM key and nonces")
	}
	for i := range 3 {
		start, end := sealedSector(t, first, i)
		a, b := first[start:end], second[start:end]
		if h1.Cipher == XChaCha20Poly1305 && bytes.Equal(a[:NonceSize], b[:NonceSize]) {
			t.Errorf("sector %d: both seals used the same nonce", i)
		}
		if bytes.Equal(a, b) {
			t.Errorf("sector %d: both seals gave the same sealed sector", i)
		}
	}

	if bytes.Equal(h1.SealedPath, h2.SealedPath) {
		t.Error("both seals gave the same sealed path")
	}
	if h1.KeyCommitment != h2.KeyCommitment {
		t.Error("the same key gave two different key commitments")
	}
}

func TestSealNewKeyEachTime(t *testing.T) {
	f := newFixture(t)
	a := f.open(f.seal(f.params(1), nil), f.alice, 1)
	b := f.open(f.seal(f.params(1), nil), f.alice, 1)
	if bytes.Equal(a.Key(), b.Key()) {
		t.Error("two seals without Params.Key used the same block key")
	}
}

func TestSealKeepsGivenKey(t *testing.T) {
	f := newFixture(t)
	first := f.open(f.seal(f.params(1), testData(5)), f.alice, 1)

	p := f.params(2)
	p.Key = first.Key()
	second := f.open(f.seal(p, testData(6)), f.alice, 2)
	if !bytes.Equal(first.Key(), second.Key()) {
		t.Error("Seal with Params.Key used another key")
	}
}

func TestSealRejectsInvalidParams(t *testing.T) {
	f := newFixture(t)
	other := newCredential(t)

	tests := []struct {
		name   string
		change func(w *Writer, p *Params)
		want   error // nil where only an error is expected
	}{
		{"noCredential", func(w *Writer, p *Params) { w.Credential = nil }, nil},
		{"relativePath", func(w *Writer, p *Params) { p.Path = "home/notes.txt" }, capability.ErrInvalidPath},
		{"dotDotPath", func(w *Writer, p *Params) { p.Path = f.path("/home/../etc") }, capability.ErrInvalidPath},
		{"longPath", func(w *Writer, p *Params) { p.Path = f.path("/home/" + strings.Repeat("x", MaxPathSize)) }, nil},
		{"largeMetadata", func(w *Writer, p *Params) { p.Metadata = make([]byte, MaxMetadataSize+1) }, nil},
		{"shortKey", func(w *Writer, p *Params) { p.Key = make([]byte, KeySize-1) }, nil},
		{"emptyKey", func(w *Writer, p *Params) { p.Key = []byte{} }, nil},
		{"noReaders", func(w *Writer, p *Params) { p.Readers = nil }, nil},
		{"unknownCipher", func(w *Writer, p *Params) { p.Cipher = 3 }, nil},
		{"tooManyReaders", func(w *Writer, p *Params) {
			p.Readers = make([]principal.Identity, MaxReaders+1)
			for i := range p.Readers {
				p.Readers[i] = f.alice.Identity()
			}
		}, nil},
		{"duplicateReader", func(w *Writer, p *Params) { p.Readers = append(p.Readers, f.alice.Identity()) }, ErrDuplicateReader},
		{"readerWithoutKeys", func(w *Writer, p *Params) { p.Readers = append(p.Readers, principal.Identity{}) }, nil},
		{"outOfScope", func(w *Writer, p *Params) { p.Path = f.path("/etc/passwd") }, capability.ErrOutOfScope},
		{"otherTree", func(w *Writer, p *Params) { p.Path = capability.RootPath(other.Principal()) + "/home/x" }, capability.ErrWrongRoot},
		{"notRootWithoutChain", func(w *Writer, p *Params) { w.Chain = nil }, capability.ErrWrongWriter},
		{"chainOfAnotherWriter", func(w *Writer, p *Params) { w.Credential = other }, capability.ErrWrongWriter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, p := f.sealer(), f.params(1)
			tt.change(&w, &p)
			encoded, err := Seal(w, p, testData(10))
			if err == nil {
				t.Fatalf("Seal returned a %d-byte block, expected an error", len(encoded))
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Seal error = %v, expected one matching %v", err, tt.want)
			}
		})
	}
}

func TestSealByRootWithEmptyChain(t *testing.T) {
	f := newFixture(t)
	root := Writer{Credential: f.root}
	p := f.params(1)
	p.Path = f.path("/etc/hostname")
	p.Readers = []principal.Identity{f.alice.Identity()}
	data := testData(SectorSize + 1)

	encoded, err := Seal(root, p, data)
	if err != nil {
		t.Fatalf("Seal by the root: %v", err)
	}
	got, err := f.open(encoded, f.alice, 1).Bytes()
	if err != nil {
		t.Fatalf("Bytes: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Error("Bytes returned bytes that differ from the data")
	}
	if _, err := Verify(encoded, f.root.Principal(), f.expect(0).Now); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(3), testData(SectorSize+1))
	raw := encoded[7:blockParts(t, encoded).rangesStart]

	h, err := ParseHeader(raw)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	again, err := h.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	if !bytes.Equal(again, raw) {
		t.Fatalf("MarshalBinary gave %d bytes that differ from the %d parsed", len(again), len(raw))
	}
	if h.Sectors() != 2 {
		t.Errorf("Sectors = %d, expected 2", h.Sectors())
	}
}

func TestParseHeaderRejectsNonCanonical(t *testing.T) {
	f := newFixture(t)
	encoded := f.seal(f.params(3), testData(10))
	valid, err := ParseHeader(encoded[7:blockParts(t, encoded).rangesStart])
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}

	tests := map[string]func(h *Header){
		"unsortedRecipients": func(h *Header) {
			h.Recipients[0], h.Recipients[1] = h.Recipients[1], h.Recipients[0]
		},
		"duplicateRecipient": func(h *Header) { h.Recipients[1] = h.Recipients[0] },
		"noRecipients":       func(h *Header) { h.Recipients = nil },
		"readcapForAnother": func(h *Header) {
			h.Recipients[0].Identity, h.Recipients[1].Identity = h.Recipients[1].Identity, h.Recipients[0].Identity
		},
		"sectorSize":      func(h *Header) { h.SectorSize = 512 },
		"sizeAboveMax":    func(h *Header) { h.Size = MaxSize + 1 },
		"shortSealedPath": func(h *Header) { h.SealedPath = h.SealedPath[:SealOverhead-1] },
		"shortMetadata":   func(h *Header) { h.SealedMetadata = nil },
		"noCipher":        func(h *Header) { h.Cipher = CipherAuto },
		"unknownCipher":   func(h *Header) { h.Cipher = 3 },
		"saltForXChaCha": func(h *Header) {
			h.Cipher = XChaCha20Poly1305
			h.SectorSalt[0] = 1
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			h := *valid
			h.Recipients = append([]Recipient(nil), valid.Recipients...)
			mutate(&h)
			h.Signature = valid.Signature
			raw, err := h.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if _, err := ParseHeader(raw); err == nil {
				t.Error("ParseHeader accepted the header, expected an error")
			}
		})
	}
}

func TestMerkleRoot(t *testing.T) {
	leaf := func(i int) [HashSize]byte { return leafHash(uint32(i), []byte{byte(i)}) }
	node := func(a, b [HashSize]byte) [HashSize]byte { return interiorHash(&a, &b) }
	l0, l1, l2, l3, l4 := leaf(0), leaf(1), leaf(2), leaf(3), leaf(4)

	tests := []struct {
		name   string
		leaves [][HashSize]byte
		want   [HashSize]byte
	}{
		{"empty", nil, sha256.Sum256([]byte{0x02})},
		{"one", [][HashSize]byte{l0}, l0},
		{"two", [][HashSize]byte{l0, l1}, node(l0, l1)},
		{"threePromotesLast", [][HashSize]byte{l0, l1, l2}, node(node(l0, l1), l2)},
		{"four", [][HashSize]byte{l0, l1, l2, l3}, node(node(l0, l1), node(l2, l3))},
		{"five", [][HashSize]byte{l0, l1, l2, l3, l4}, node(node(node(l0, l1), node(l2, l3)), l4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := merkleRoot(tt.leaves); got != tt.want {
				t.Errorf("merkleRoot = %x, expected %x", got, tt.want)
			}
		})
	}

	// Duplicating the last leaf would make these two roots equal.
	if merkleRoot([][HashSize]byte{l0, l1, l2}) == merkleRoot([][HashSize]byte{l0, l1, l2, l2}) {
		t.Error("three leaves and the same three with the last repeated have the same root")
	}
}

func TestLeafHash(t *testing.T) {
	sealed := []byte("sealed sector bytes")
	want := sha256.Sum256(append([]byte{0x00, 0, 0, 1, 2}, sealed...))
	if got := leafHash(0x0102, sealed); got != want {
		t.Errorf("leafHash = %x, expected SHA-256(0x00 || index || sealed) = %x", got, want)
	}
}

// TestSectorCiphersDiffer checks that each cipher opens its own blocks, that
// AES-256-GCM stores no nonces, and that a sector sealed under one cipher's
// key does not open under the other's, from the same block key.
func TestSectorCiphersDiffer(t *testing.T) {
	f := newFixture(t)
	data := testData(3 * SectorSize)
	sizes := map[Cipher]int{}
	for _, c := range []Cipher{XChaCha20Poly1305, AES256GCM} {
		p := f.params(1)
		p.Cipher = c
		encoded := f.seal(p, data)
		sizes[c] = len(encoded)
		r := f.open(encoded, f.alice, 1)
		if r.Header().Cipher != c {
			t.Errorf("block sealed with %s has cipher %s in its header", c, r.Header().Cipher)
		}
		got, err := r.Bytes()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("block sealed with %s: Bytes = %d bytes, %v; expected the data", c, len(got), err)
		}
	}
	if a, x := sizes[AES256GCM], sizes[XChaCha20Poly1305]; x-a != 3*NonceSize {
		t.Errorf("AES-256-GCM block is %d bytes and XChaCha20-Poly1305 block %d, expected %d fewer (no stored nonces)", a, x, 3*NonceSize)
	}

	key := bytes.Repeat([]byte{7}, KeySize)
	salt := [SaltSize]byte{1}
	aesKeys, err := deriveKeys(f.id, key, AES256GCM, salt)
	if err != nil {
		t.Fatal(err)
	}
	chachaKeys, err := deriveKeys(f.id, key, XChaCha20Poly1305, [SaltSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	otherSalt, err := deriveKeys(f.id, key, AES256GCM, [SaltSize]byte{2})
	if err != nil {
		t.Fatal(err)
	}
	plain := testData(SectorSize)
	ad := sectorAD(f.id, 0, 1)
	sealed := make([]byte, SectorSize+SealOverhead)
	aesSealed := sealed[:SectorSize+TagSize]
	aesKeys.sealSector(aesSealed, 0, plain, ad)
	if _, err := aesKeys.openSector(nil, aesSealed, 0, ad); err != nil {
		t.Errorf("AES-256-GCM sector does not open under its own key: %v", err)
	}
	if _, err := otherSalt.openSector(nil, aesSealed, 0, ad); err == nil {
		t.Error("AES-256-GCM sector opened under the key of another salt")
	}
	if _, err := aesKeys.openSector(nil, aesSealed, 1, sectorAD(f.id, 1, 1)); err == nil {
		t.Error("AES-256-GCM sector opened as another index")
	}
	chachaKeys.sealSector(sealed, 0, plain, ad)
	if _, err := aesKeys.openSector(nil, sealed, 0, ad); err == nil {
		t.Error("XChaCha20-Poly1305 sector opened under the AES-256-GCM key")
	}
}

// TestRewriteKeepsCipher checks that AddReader and RemoveReader seal with the
// block's own cipher, and that AddReader, which keeps the block key, draws a
// new AES-256-GCM salt so that no key and nonce are used twice.
func TestRewriteKeepsCipher(t *testing.T) {
	f := newFixture(t)
	for _, c := range []Cipher{XChaCha20Poly1305, AES256GCM} {
		p := f.params(1)
		p.Cipher = c
		encoded := f.seal(p, testData(2*SectorSize))
		added, err := AddReader(encoded, f.sealer(), f.carol.Identity())
		if err != nil {
			t.Fatalf("%s: AddReader: %v", c, err)
		}
		removed, err := RemoveReader(added, f.sealer(), f.bob.Principal())
		if err != nil {
			t.Fatalf("%s: RemoveReader: %v", c, err)
		}
		before, after := f.open(encoded, f.alice, 1).Header(), f.open(added, f.carol, 2).Header()
		if after.Cipher != c {
			t.Errorf("AddReader changed the cipher from %s to %s", c, after.Cipher)
		}
		if got := f.open(removed, f.carol, 3).Header().Cipher; got != c {
			t.Errorf("RemoveReader changed the cipher from %s to %s", c, got)
		}
		if before.KeyCommitment != after.KeyCommitment {
			t.Errorf("%s: AddReader changed the block key", c)
		}
		if c == AES256GCM && before.SectorSalt == after.SectorSalt {
			t.Error("AddReader kept the block key and the sector salt, so the same AES-GCM key and nonces")
		}
	}
}

// TestPrivateReaderReadsInPlace checks that a Reader opened with
// Expect.Private reads the data, and still detects a sector changed after
// Open, because it hashes the sector at each read.
func TestPrivateReaderReadsInPlace(t *testing.T) {
	f := newFixture(t)
	data := testData(3*SectorSize + 100)
	encoded := f.seal(f.params(1), data)
	expect := f.expect(1)
	expect.Private = true
	r, err := Open(encoded, f.alice, expect)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	got, err := r.Bytes()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Bytes = %d bytes, %v; expected the data", len(got), err)
	}

	start, _ := sealedSector(t, encoded, 2)
	encoded[start+100] ^= 0x10
	_, err = r.ReadAt(make([]byte, 10), 2*SectorSize+5)
	requireIntegrityError(t, err, ptr(2))
}

// TestManySectorReadStopsAtForgery reads a block of many sectors, with
// holes and a short last sector, whose leaves a private Reader checks in
// batches, at aligned and unaligned offsets. Then a holder of the block key
// seals other data into one sector, which only its leaf hash catches: both
// kinds of Reader return exactly the bytes before that sector, and Verify
// names it.
func TestManySectorReadStopsAtForgery(t *testing.T) {
	f := newFixture(t)
	data := testData(40*SectorSize + 100)
	clear(data[5*SectorSize : 8*SectorSize])
	encoded := f.seal(f.params(1), data)
	for _, private := range []bool{false, true} {
		expect := f.expect(1)
		expect.Private = private
		r, err := Open(encoded, f.alice, expect)
		if err != nil {
			t.Fatalf("Open (private %v): %v", private, err)
		}
		for _, off := range []int{0, 1, SectorSize, 3*SectorSize + 7} {
			got := make([]byte, len(data)-off)
			if n, err := r.ReadAt(got, int64(off)); n != len(got) || err != nil || !bytes.Equal(got, data[off:]) {
				t.Fatalf("private %v: ReadAt at %d = %d bytes, %v; expected the %d bytes of data there", private, off, n, err, len(got))
			}
		}
	}

	forged := bytes.Clone(encoded)
	start, end := sealedSector(t, forged, 20)
	key := f.open(encoded, f.alice, 1)
	key.keys.sealSector(forged[start:end], 20, testData(SectorSize), sectorAD(key.header.ID, 20, key.header.Version))
	_, err := Verify(forged, f.root.Principal(), time.Now())
	requireIntegrityError(t, err, ptr(20))
	for _, private := range []bool{false, true} {
		expect := f.expect(1)
		expect.Private = private
		r, err := Open(forged, f.alice, expect)
		if err != nil {
			t.Fatalf("Open (private %v): %v", private, err)
		}
		got := make([]byte, len(data))
		n, err := r.ReadAt(got, 0)
		requireIntegrityError(t, err, ptr(20))
		if !strings.Contains(err.Error(), "leaf hash") {
			t.Errorf("private %v: error %q does not name the leaf hash, which alone can catch this sector", private, err)
		}
		if n != 20*SectorSize || !bytes.Equal(got[:n], data[:n]) {
			t.Fatalf("private %v: ReadAt returned %d bytes before the forged sector 20; expected the %d bytes of data before it", private, n, 20*SectorSize)
		}
	}
}

// TestSealIntoGarbageBuffer seals into reused buffers full of other bytes.
// Every byte of a block is checked on Open, so a byte that SealInto left
// unwritten would fail it.
func TestSealIntoGarbageBuffer(t *testing.T) {
	f := newFixture(t)
	for _, data := range [][]byte{testData(10), testData(3*SectorSize + 100), sparseData("DHHDHD", 77)} {
		buf := bytes.Repeat([]byte{0xa5}, 8*SectorSize)
		encoded, err := SealInto(buf, f.sealer(), f.params(1), data)
		if err != nil {
			t.Fatalf("SealInto: %v", err)
		}
		if &encoded[0] != &buf[0] {
			t.Errorf("SealInto of %d bytes allocated, although the buffer has room for %d", len(encoded), cap(buf))
		}
		got, err := f.open(encoded, f.alice, 1).Bytes()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Bytes of a block sealed into a garbage buffer = %d bytes, %v; expected the %d bytes sealed", len(got), err, len(data))
		}
		if _, err := Verify(encoded, f.root.Principal(), time.Now()); err != nil {
			t.Errorf("Verify of a block sealed into a garbage buffer: %v", err)
		}
	}
}
