package block

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"

	"github.com/blocktree/blocktree/services/crypto/internal/sha256x16"
)

// HashSize is the size of a leaf hash and of the Merkle root.
const HashSize = sha256.Size

// Domain bytes that keep leaves, interior nodes, the empty root and runs of
// holes apart, so that no node can be passed off as a node of another kind.
const (
	leafPrefix     = 0x00
	interiorPrefix = 0x01
	emptyPrefix    = 0x02
	holePrefix     = 0x03
)

// emptyRoot is the Merkle root of a block with no sectors.
var emptyRoot = sha256.Sum256([]byte{emptyPrefix})

// leafHash returns SHA-256(0x00 || uint32 index || sealed sector).
func leafHash(index uint32, sealed []byte) [HashSize]byte {
	var prefix [5]byte
	prefix[0] = leafPrefix
	binary.BigEndian.PutUint32(prefix[1:], index)

	h := sha256.New()
	h.Write(prefix[:])
	h.Write(sealed)

	var sum [HashSize]byte
	h.Sum(sum[:0])
	return sum
}

// leafHashes sets leaves[k] to leafHash(indexes[k], sealed[k]) for every k.
// It hashes runs of sealed sectors of one length together, up to
// sha256x16.Lanes of them, which the vector unit of some CPUs does in about
// the time of two.
func leafHashes(leaves [][HashSize]byte, indexes []uint64, sealed [][]byte) {
	var prefixes [sha256x16.Lanes][5]byte
	var heads [sha256x16.Lanes][]byte
	for start := 0; start < len(sealed); {
		end := start + 1
		for end < len(sealed) && end-start < sha256x16.Lanes && len(sealed[end]) == len(sealed[start]) {
			end++
		}
		for k := start; k < end; k++ {
			prefix := &prefixes[k-start]
			prefix[0] = leafPrefix
			binary.BigEndian.PutUint32(prefix[1:], uint32(indexes[k]))
			heads[k-start] = prefix[:]
		}
		sha256x16.Sum(leaves[start:end], heads[:end-start], sealed[start:end])
		start = end
	}
}

// holeHash returns SHA-256(0x03 || uint32 first || uint32 count), the hash of
// a subtree whose count sectors from first are all holes. A hole leaf is the
// case count = 1. Binding the position means that the same run of holes
// elsewhere in the block has another hash.
func holeHash(first, count uint64) [HashSize]byte {
	var buf [9]byte
	buf[0] = holePrefix
	binary.BigEndian.PutUint32(buf[1:], uint32(first))
	binary.BigEndian.PutUint32(buf[5:], uint32(count))
	return sha256.Sum256(buf[:])
}

// interiorHash returns SHA-256(0x01 || left || right).
func interiorHash(left, right *[HashSize]byte) [HashSize]byte {
	var buf [1 + 2*HashSize]byte
	buf[0] = interiorPrefix
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return sha256.Sum256(buf[:])
}

// merkleRoot returns the root over leaves. An odd last node moves up a level
// unchanged. The root of no leaves is emptyRoot.
func merkleRoot(leaves [][HashSize]byte) [HashSize]byte {
	if len(leaves) == 0 {
		return emptyRoot
	}

	// Each level is written over the front of the previous one: node i of the
	// next level is computed from nodes 2i and 2i+1, which are never read again.
	level := append([][HashSize]byte(nil), leaves...)
	for len(level) > 1 {
		next := 0
		for i := 0; i < len(level); i += 2 {
			if i+1 < len(level) {
				level[next] = interiorHash(&level[i], &level[i+1])
			} else {
				level[next] = level[i]
			}
			next++
		}
		level = level[:next]
	}
	return level[0]
}

// sparseRoot returns the Merkle root over the n sectors of a block whose
// present sectors are listed in present and have the leaf hashes leaves, in
// index order. The other sectors are holes.
//
// The tree has the shape that merkleRoot gives n leaves, so node j of level
// L spans sectors [j·2^L, min((j+1)·2^L, n)). A node whose span has no present
// sector is holeHash of its span, a node whose span has only present sectors
// is merkleRoot of their leaves, and any other node is the interior hash of
// its children. The root thus costs O(ranges · log n + present sectors)
// hashes rather than n, which keeps the Open of a large sparse block cheap.
// With no holes it equals merkleRoot(leaves).
func sparseRoot(n uint64, present *presence, leaves [][HashSize]byte) [HashSize]byte {
	if n == 0 {
		return emptyRoot
	}
	// The root is at the lowest level whose single node spans all n sectors.
	return sparseNode(n, present, leaves, 0, uint(bits.Len64(n-1)))
}

// sparseNode returns the hash of the node at level that spans the sectors
// from first, as sparseRoot defines it.
func sparseNode(n uint64, present *presence, leaves [][HashSize]byte, first uint64, level uint) [HashSize]byte {
	end := min(first+1<<level, n)
	from, to := present.storedBefore(first), present.storedBefore(end)
	switch {
	case from == to:
		return holeHash(first, end-first)
	case to-from == end-first:
		return merkleRoot(leaves[from:to])
	}

	// The span mixes holes and present sectors, so it has at least two
	// sectors and level is at least 1. A node without a right child is its
	// left child moved up unchanged, as in merkleRoot.
	half := uint64(1) << (level - 1)
	left := sparseNode(n, present, leaves, first, level-1)
	if first+half >= n {
		return left
	}
	right := sparseNode(n, present, leaves, first+half, level-1)
	return interiorHash(&left, &right)
}
