package block

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// fixtureCipher seals the sectors of the fixture's blocks. TestMain runs the
// package's tests once with each cipher.
var fixtureCipher Cipher

func TestMain(m *testing.M) {
	flag.Parse()
	ciphers := []Cipher{XChaCha20Poly1305, AES256GCM}
	if flagSet("test.fuzz") || flagSet("test.list") {
		// The fuzzing engine and go test -list expect one run, which uses
		// the cipher that Seal picks on this CPU.
		ciphers = []Cipher{sectorCipher(CipherAuto)}
	}
	code := 0
	for _, c := range ciphers {
		fixtureCipher = c
		if len(ciphers) > 1 {
			fmt.Printf("sector cipher: %s\n", c)
		}
		if m.Run() != 0 {
			fmt.Fprintf(os.Stderr, "tests failed with sectors sealed by %s\n", c)
			code = 1
		}
	}
	os.Exit(code)
}

// flagSet reports whether the test flag name has a value.
func flagSet(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() != ""
}

// grantValidity is how long the fixture's writecap is valid, starting an
// hour before the test runs. Seal checks the chain at the real current time,
// so the grant must cover it.
const grantValidity = 24 * time.Hour

// fixture is a tree with a root principal, a writer that the root granted
// "/<root>/home", and three readers. The writer is a reader too, so that it
// can add and remove readers.
type fixture struct {
	t                 testing.TB
	root, writer      *principal.Credential
	alice, bob, carol *principal.Credential
	chain             capability.Chain
	grantExpires      time.Time
	id                [32]byte
}

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return cred
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		t:      t,
		root:   newCredential(t),
		writer: newCredential(t),
		alice:  newCredential(t),
		bob:    newCredential(t),
		carol:  newCredential(t),
	}
	notBefore := time.Now().Add(-time.Hour).Truncate(time.Second)
	f.grantExpires = notBefore.Add(grantValidity)
	grant, err := capability.Issue(f.root.Signing, f.writer.Principal(), f.path("/home"), notBefore, f.grantExpires)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	f.chain = capability.Chain{grant}
	copy(f.id[:], "block id of the fixture's tests.")
	return f
}

// path returns the root's tree path followed by suffix, which is empty or
// starts with "/".
func (f *fixture) path(suffix string) string {
	return capability.RootPath(f.root.Principal()) + suffix
}

func (f *fixture) sealer() Writer {
	return Writer{Credential: f.writer, Chain: f.chain}
}

// params returns the parameters of a file under the writer's grant, readable
// by the writer, Alice and Bob.
func (f *fixture) params(version uint64) Params {
	return Params{
		ID:       f.id,
		Version:  version,
		Path:     f.path("/home/notes.txt"),
		Metadata: []byte("mode=0644 uid=1000"),
		Readers:  []principal.Identity{f.writer.Identity(), f.alice.Identity(), f.bob.Identity()},
		Cipher:   fixtureCipher,
	}
}

func (f *fixture) seal(p Params, data []byte) []byte {
	f.t.Helper()
	encoded, err := Seal(f.sealer(), p, data)
	if err != nil {
		f.t.Fatalf("Seal(%d bytes, version %d): %v", len(data), p.Version, err)
	}
	return encoded
}

func (f *fixture) expect(minVersion uint64) Expect {
	return Expect{Root: f.root.Principal(), ID: f.id, MinVersion: minVersion}
}

func (f *fixture) open(encoded []byte, reader *principal.Credential, minVersion uint64) *Reader {
	f.t.Helper()
	r, err := Open(encoded, reader, f.expect(minVersion))
	if err != nil {
		f.t.Fatalf("Open as %s: %v", reader.Principal(), err)
	}
	return r
}

// testData returns n pseudo-random bytes from a generator seeded with n, so
// that tests of the same size use the same data.
func testData(n int) []byte {
	rng := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
	data := make([]byte, n)
	rng.Read(data)
	return data
}

// parts are the offsets of the sections of an encoded block and its sector
// ranges, computed from the documented layout.
type parts struct {
	overhead     int // bytes that sealing adds to a sector
	rangesStart  int // end of the header
	leavesStart  int
	sectorsStart int
	ranges       []SectorRange
}

// blockParts splits encoded into its sections without the package's
// decoder, so that the tests check the layout that doc.go describes.
func blockParts(t testing.TB, encoded []byte) parts {
	t.Helper()
	d := wire.NewDecoder(encoded, wire.KindBlock, blockVersion)
	header := d.Bytes(maxHeaderSize)
	if err := d.Err(); err != nil {
		t.Fatalf("decode block: %v", err)
	}
	h, err := ParseHeader(header)
	if err != nil {
		t.Fatalf("ParseHeader: %v", err)
	}
	p := parts{overhead: h.Cipher.sectorOverhead(), rangesStart: wire.HeaderSize + 4 + len(header)}

	count := d.Uint32()
	stored := 0
	for range count {
		r := SectorRange{First: uint64(d.Uint32()), Count: uint64(d.Uint32())}
		p.ranges = append(p.ranges, r)
		stored += int(r.Count)
	}
	if err := d.Err(); err != nil {
		t.Fatalf("decode sector ranges: %v", err)
	}
	p.leavesStart = p.rangesStart + 4 + int(count)*8
	p.sectorsStart = p.leavesStart + stored*HashSize
	return p
}

// slot returns the position of sector index among the stored sectors, or -1
// for a hole.
func (p parts) slot(index int) int {
	slot := 0
	for _, r := range p.ranges {
		if uint64(index) < r.First {
			return -1
		}
		if uint64(index) < r.First+r.Count {
			return slot + index - int(r.First)
		}
		slot += int(r.Count)
	}
	return -1
}

// sectorAt returns the index of the sector whose sealed bytes contain
// offset, which is at or after sectorsStart.
func (p parts) sectorAt(offset int) int {
	slot := (offset - p.sectorsStart) / (SectorSize + p.overhead)
	for _, r := range p.ranges {
		if slot < int(r.Count) {
			return int(r.First) + slot
		}
		slot -= int(r.Count)
	}
	panic(fmt.Sprintf("offset %d is beyond the stored sectors", offset))
}

// sealedSector returns the bounds of present sector index in encoded.
func sealedSector(t testing.TB, encoded []byte, index int) (start, end int) {
	t.Helper()
	p := blockParts(t, encoded)
	slot := p.slot(index)
	if slot < 0 {
		t.Fatalf("sector %d is a hole", index)
	}
	start = p.sectorsStart + slot*(SectorSize+p.overhead)
	return start, min(start+SectorSize+p.overhead, len(encoded))
}

// leafAt returns the bounds of the leaf hash of present sector index in
// encoded.
func leafAt(t testing.TB, encoded []byte, index int) (start, end int) {
	t.Helper()
	p := blockParts(t, encoded)
	slot := p.slot(index)
	if slot < 0 {
		t.Fatalf("sector %d is a hole", index)
	}
	start = p.leavesStart + slot*HashSize
	return start, start + HashSize
}

// encodeBlock encodes a block from its sections as doc.go describes, with
// no check that they agree.
func encodeBlock(header []byte, ranges []SectorRange, leaves [][HashSize]byte, sectors []byte) []byte {
	e := wire.NewEncoder(wire.KindBlock, blockVersion)
	e.Bytes(header)
	e.Uint32(uint32(len(ranges)))
	for _, r := range ranges {
		e.Uint32(uint32(r.First))
		e.Uint32(uint32(r.Count))
	}
	for _, leaf := range leaves {
		e.Fixed(leaf[:])
	}
	e.Fixed(sectors)
	return e.Data()
}

// resign decodes encoded, lets mutate change the header, and signs and
// encodes the block again with signer. It builds blocks that a correctly
// signing but misbehaving writer could produce.
func resign(t testing.TB, encoded []byte, signer *principal.Credential, mutate func(h *Header)) []byte {
	t.Helper()
	l, err := decodeBlock(encoded, [32]byte{})
	if err != nil {
		t.Fatalf("decodeBlock: %v", err)
	}
	mutate(l.header)
	unsigned, err := l.header.encodeUnsigned()
	if err != nil {
		t.Fatalf("encodeUnsigned: %v", err)
	}
	signature, err := signer.Signing.Sign(signatureContext, unsigned.Data())
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	unsigned.Fixed(signature)
	return encodeBlock(unsigned.Data(), l.present.ranges, l.leaves, l.sectors)
}

// requireIntegrityError fails unless err matches ErrIntegrity and, when
// sector is not nil, names that sector.
func requireIntegrityError(t testing.TB, err error, sector *int) {
	t.Helper()
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("error = %v, expected one matching ErrIntegrity", err)
	}
	var integrity *IntegrityError
	if !errors.As(err, &integrity) {
		t.Fatalf("error %v is %T, expected *IntegrityError", err, err)
	}
	if sector != nil && integrity.Sector != *sector {
		t.Fatalf("IntegrityError.Sector = %d, expected %d (error: %v)", integrity.Sector, *sector, err)
	}
}

func ptr[T any](v T) *T { return &v }
