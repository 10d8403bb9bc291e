package block

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

const benchSize = 1 << 20

func BenchmarkSeal(b *testing.B) {
	f := newFixture(b)
	data := testData(benchSize)
	p := f.params(1)
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Seal(f.sealer(), p, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures Open followed by reading the whole block. The
// same block is opened each time, so after the first its signature is
// remembered and not verified again, as for a chunk loaded again.
func BenchmarkOpen(b *testing.B) { benchmarkOpen(b, false) }

// BenchmarkOpenPrivate is BenchmarkOpen with Expect.Private, as the
// storage daemon opens chunks: the read checks the leaves 16 at a time.
func BenchmarkOpenPrivate(b *testing.B) { benchmarkOpen(b, true) }

func benchmarkOpen(b *testing.B, private bool) {
	f := newFixture(b)
	encoded := f.seal(f.params(1), testData(benchSize))
	expect := f.expect(1)
	expect.Private = private
	b.SetBytes(benchSize)
	for b.Loop() {
		r, err := Open(encoded, f.alice, expect)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Bytes(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadAtSector measures one 4 KiB read from an opened block.
func BenchmarkReadAtSector(b *testing.B) {
	f := newFixture(b)
	r := f.open(f.seal(f.params(1), testData(benchSize)), f.alice, 1)
	buf := make([]byte, SectorSize)
	sectors := benchSize / SectorSize
	b.SetBytes(SectorSize)
	i := 0
	for b.Loop() {
		if _, err := r.ReadAt(buf, int64(i%sectors)*SectorSize); err != nil {
			b.Fatal(err)
		}
		i += 7
	}
}

// BenchmarkBaselineAEAD seals the same 1 MiB in 4 KiB sectors with
// XChaCha20-Poly1305 alone: no Merkle tree, no signature, no header. The
// ratio of BenchmarkSeal to it is what block protection adds to bare
// encryption.
func BenchmarkBaselineAEAD(b *testing.B) {
	aead, err := chacha20poly1305.NewX(make([]byte, chacha20poly1305.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	benchmarkSectors(b, aead, func(nonce []byte, _ int) { rand.Read(nonce) })
}

// BenchmarkBaselineAESGCM is BenchmarkBaselineAEAD with AES-256-GCM and the
// sector index as nonce, as AES256GCM blocks seal their sectors.
func BenchmarkBaselineAESGCM(b *testing.B) {
	block, err := aes.NewCipher(make([]byte, KeySize))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	benchmarkSectors(b, aead, func(nonce []byte, index int) { binary.BigEndian.PutUint32(nonce[8:], uint32(index)) })
}

// benchmarkSectors seals 1 MiB in 4 KiB sectors with aead, setting each
// sector's nonce with setNonce.
func benchmarkSectors(b *testing.B, aead cipher.AEAD, setNonce func(nonce []byte, index int)) {
	data := testData(benchSize)
	nonce := make([]byte, aead.NonceSize())
	out := make([]byte, 0, SectorSize+aead.Overhead())
	b.SetBytes(benchSize)
	for b.Loop() {
		for off := 0; off < benchSize; off += SectorSize {
			setNonce(nonce, off/SectorSize)
			out = aead.Seal(out[:0], nonce, data[off:off+SectorSize], nil)
		}
	}
}
