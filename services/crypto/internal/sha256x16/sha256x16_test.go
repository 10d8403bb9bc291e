package sha256x16

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// check compares Sum on n messages with crypto/sha256.
func check(t testing.TB, rng *rand.Rand, n, headLen, bodyLen int) {
	t.Helper()
	heads := make([][]byte, n)
	bodies := make([][]byte, n)
	for i := range n {
		heads[i] = make([]byte, headLen)
		bodies[i] = make([]byte, bodyLen)
		for j := range heads[i] {
			heads[i][j] = byte(rng.Uint32())
		}
		for j := range bodies[i] {
			bodies[i][j] = byte(rng.Uint32())
		}
	}
	digests := make([][Size]byte, n)
	Sum(digests, heads, bodies)
	// Sum may take either path, so the vector code runs here too.
	vector := make([][Size]byte, n)
	if available && n > 0 {
		sum(vector, heads, bodies)
	}
	for i := range n {
		want := sha256.Sum256(append(append([]byte(nil), heads[i]...), bodies[i]...))
		if digests[i] != want {
			t.Fatalf("%d messages of a %d-byte head and a %d-byte body: digest %d is %x, want %x", n, headLen, bodyLen, i, digests[i], want)
		}
		if available && vector[i] != want {
			t.Fatalf("%d messages of a %d-byte head and a %d-byte body: vector digest %d is %x, want %x", n, headLen, bodyLen, i, vector[i], want)
		}
	}
}

func TestSumMatchesSHA256(t *testing.T) {
	t.Logf("vector code available: %v, faster than crypto/sha256: %v", available, available && vectorFaster())
	rng := rand.New(rand.NewPCG(1, 2))
	// Every head length with bodies around each block boundary that the
	// padding can fall on, and a sealed sector's length.
	for headLen := range 64 {
		for _, bodyLen := range []int{0, 1, 54, 55, 56, 63, 64, 65, 118, 119, 120, 128, 200, 4112} {
			check(t, rng, Lanes, headLen, bodyLen)
		}
	}
}

func TestSumFewerLanes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range Lanes + 1 {
		check(t, rng, n, 5, 4112)
	}
}

func TestSumRejectsMixedLengths(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Sum accepted bodies of different lengths")
		}
	}()
	digests := make([][Size]byte, 2)
	Sum(digests, [][]byte{{1}, {2}}, [][]byte{make([]byte, 10), make([]byte, 11)})
}

func FuzzSum(f *testing.F) {
	f.Add(uint64(1), uint8(16), uint8(5), uint16(4112))
	f.Add(uint64(2), uint8(3), uint8(0), uint16(55))
	f.Add(uint64(3), uint8(9), uint8(63), uint16(0))
	f.Fuzz(func(t *testing.T, seed uint64, n, headLen uint8, bodyLen uint16) {
		rng := rand.New(rand.NewPCG(seed, seed))
		check(t, rng, int(n)%(Lanes+1), int(headLen)%64, int(bodyLen)%9000)
	})
}

func BenchmarkSum(b *testing.B) {
	heads := make([][]byte, Lanes)
	bodies := make([][]byte, Lanes)
	for i := range Lanes {
		heads[i] = []byte{0, 0, 0, 0, byte(i)}
		bodies[i] = make([]byte, 4112)
	}
	digests := make([][Size]byte, Lanes)
	b.Run("x16", func(b *testing.B) {
		b.SetBytes(Lanes * (5 + 4112))
		for b.Loop() {
			Sum(digests, heads, bodies)
		}
	})
	b.Run("one by one", func(b *testing.B) {
		b.SetBytes(Lanes * (5 + 4112))
		for b.Loop() {
			for i := range Lanes {
				Sum(digests[i:i+1], heads[i:i+1], bodies[i:i+1])
			}
		}
	})
}
