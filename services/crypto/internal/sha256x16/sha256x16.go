// Package sha256x16 computes up to 16 SHA-256 digests of messages of one
// length at once. On amd64 CPUs with AVX-512 it runs the compression
// function of all 16 in the lanes of vector registers. On the machine of
// docs/benchmarks.md that hashes sealed sectors about twice as fast as
// crypto/sha256 with the SHA extensions. Elsewhere, and where a first
// measurement finds the vector code slower, it hashes one message after
// the other with crypto/sha256.
package sha256x16

//go:generate go run gen.go

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// Lanes is the number of messages that one call can hash.
const Lanes = 16

// Size is the size of a digest.
const Size = sha256.Size

// initial is the initial hash value of FIPS 180-4, section 5.3.3.
var initial = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// Sum sets digests[i] to the SHA-256 of heads[i] followed by bodies[i],
// for every i below len(digests). It hashes up to Lanes messages. All
// heads have one length, below 64 bytes, and all bodies one length: a
// head such as a domain prefix and a position need not be copied in
// front of its body.
func Sum(digests [][Size]byte, heads, bodies [][]byte) {
	n := len(digests)
	if n > Lanes || len(heads) != n || len(bodies) != n {
		panic(fmt.Sprintf("sha256x16: %d digests for %d heads and %d bodies, at most %d", n, len(heads), len(bodies), Lanes))
	}
	if n == 0 {
		return
	}
	headLen, bodyLen := len(heads[0]), len(bodies[0])
	if headLen >= 64 {
		panic(fmt.Sprintf("sha256x16: head of %d bytes, must be below 64", headLen))
	}
	for i := range n {
		if len(heads[i]) != headLen || len(bodies[i]) != bodyLen {
			panic(fmt.Sprintf("sha256x16: message %d has a %d-byte head and a %d-byte body, message 0 a %d-byte head and a %d-byte body", i, len(heads[i]), len(bodies[i]), headLen, bodyLen))
		}
	}
	if !available || n == 1 || !vectorFaster() {
		for i := range n {
			h := sha256.New()
			h.Write(heads[i])
			h.Write(bodies[i])
			h.Sum(digests[i][:0])
		}
		return
	}
	sum(digests, heads, bodies)
}

// vectorFaster reports whether the vector code hashed 16 sealed sectors
// faster than crypto/sha256 in a measurement at the first use. The vector
// code loads the messages with gather instructions, which microcode
// against Gather Data Sampling makes slow on some Intel CPUs that also have
// the SHA extensions. That slowdown is reported, not measured here.
var vectorFaster = sync.OnceValue(func() bool {
	var digests [Lanes][Size]byte
	var heads, bodies [Lanes][]byte
	body := make([]byte, 4112)
	for i := range Lanes {
		heads[i] = []byte{0, 0, 0, 0, byte(i)}
		bodies[i] = body
	}
	fastest := func(hash func()) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 3 {
			start := time.Now()
			hash()
			best = min(best, time.Since(start))
		}
		return best
	}
	vector := fastest(func() { sum(digests[:], heads[:], bodies[:]) })
	scalar := fastest(func() {
		for i := range Lanes {
			digests[i] = sha256.Sum256(bodies[i])
		}
	})
	return vector < scalar
})

// sum is Sum on the vector unit. Lanes past n hash message 0 again, which
// costs nothing extra, and their digests are dropped.
func sum(digests [][Size]byte, heads, bodies [][]byte) {
	n := len(digests)
	headLen, bodyLen := len(heads[0]), len(bodies[0])
	total := uint64(headLen) + uint64(bodyLen)

	var state [8][Lanes]uint32
	for word := range state {
		for lane := range Lanes {
			state[word][lane] = initial[word]
		}
	}
	lane := func(i int) int {
		if i < n {
			return i
		}
		return 0
	}

	// The first block joins the head to the start of the body, unless the
	// whole message fits in the padded tail below.
	body := 0
	if headLen > 0 && headLen+bodyLen >= 64 {
		var first [Lanes][64]byte
		var ptrs [Lanes]*byte
		for i := range Lanes {
			copy(first[i][:], heads[lane(i)])
			copy(first[i][headLen:], bodies[lane(i)])
			ptrs[i] = &first[i][0]
		}
		blocks(&state, &ptrs, 1)
		body = 64 - headLen
	}

	// The blocks that lie wholly in the bodies are read where they are.
	if middle := (bodyLen - body) / 64; middle > 0 {
		var ptrs [Lanes]*byte
		for i := range Lanes {
			ptrs[i] = &bodies[lane(i)][body]
		}
		blocks(&state, &ptrs, middle)
		body += 64 * middle
	}

	// The rest, with the padding: 0x80, zeros and the length in bits.
	var tail [Lanes][128]byte
	var ptrs [Lanes]*byte
	rest := 0
	for i := range Lanes {
		rest = 0
		if body == 0 {
			rest = copy(tail[i][:], heads[lane(i)])
		}
		rest += copy(tail[i][rest:], bodies[lane(i)][body:])
		ptrs[i] = &tail[i][0]
	}
	tailLen := 64
	if rest+1+8 > 64 {
		tailLen = 128
	}
	for i := range Lanes {
		tail[i][rest] = 0x80
		binary.BigEndian.PutUint64(tail[i][tailLen-8:], total*8)
	}
	blocks(&state, &ptrs, tailLen/64)

	for i := range n {
		for word := range 8 {
			binary.BigEndian.PutUint32(digests[i][4*word:], state[word][i])
		}
	}
}
