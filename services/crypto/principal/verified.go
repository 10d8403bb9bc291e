package principal

import (
	"crypto/sha256"
	"sync"
)

// verifiedMax bounds the signatures that verified remembers. A full set
// takes about 1.3 MB of heap and starts again empty.
const verifiedMax = 1 << 14

// verified remembers signatures that verified or that SignParts made, each
// as the hash of the public key, the signed digest and the signature. An
// ECDSA verification depends on nothing else. So a signature seen again,
// such as the header of a chunk loaded again after eviction, costs a hash
// instead of a verification: 1 µs instead of 70 µs on the machine of
// docs/benchmarks.md (BenchmarkVerify). Only a valid signature gets in, so
// no input can make a bad signature pass.
var verified struct {
	sync.Mutex
	sums map[[sha256.Size]byte]struct{}
}

// verifiedSum returns the memo key of sig by k over digest.
func verifiedSum(k PublicKey, digest, sig []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(k.Bytes())
	h.Write(digest)
	h.Write(sig)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func seenVerified(sum [sha256.Size]byte) bool {
	verified.Lock()
	defer verified.Unlock()
	_, ok := verified.sums[sum]
	return ok
}

func rememberVerified(sum [sha256.Size]byte) {
	verified.Lock()
	defer verified.Unlock()
	if verified.sums == nil || len(verified.sums) >= verifiedMax {
		verified.sums = make(map[[sha256.Size]byte]struct{})
	}
	verified.sums[sum] = struct{}{}
}
