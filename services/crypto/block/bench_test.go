package block

import (
	"testing"
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

// BenchmarkOpen measures Open followed by reading the whole block.
func BenchmarkOpen(b *testing.B) {
	f := newFixture(b)
	encoded := f.seal(f.params(1), testData(benchSize))
	expect := f.expect(1)
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
