package block

import (
	"crypto/sha256"
	"encoding/binary"
)

// HashSize is the size of a leaf hash and of the Merkle root.
const HashSize = sha256.Size

// Domain bytes that keep leaves, interior nodes and the empty root apart, so
// that no leaf can be passed off as an interior node or the other way round.
const (
	leafPrefix     = 0x00
	interiorPrefix = 0x01
	emptyPrefix    = 0x02
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
