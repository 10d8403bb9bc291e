package block

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Sizes of the block key and of the parts of a sealed sector or field.
const (
	KeySize      = chacha20poly1305.KeySize    // block key
	NonceSize    = chacha20poly1305.NonceSizeX // random nonce in front of each sealed value
	TagSize      = chacha20poly1305.Overhead   // Poly1305 tag at the end of each sealed value
	SealOverhead = NonceSize + TagSize         // bytes a sealed value adds to its plaintext
)

// Context strings. Each names its structure and version so that a signature,
// a key or a ciphertext made for one purpose is never accepted for another.
const (
	signatureContext = "blocktree block header v2"
	sectorContext    = "blocktree block sector v1"
	pathContext      = "blocktree block path v1"
	metadataContext  = "blocktree block metadata v1"

	sectorKeyInfo  = "blocktree block sector key v1"
	fieldKeyInfo   = "blocktree block field key v1"
	commitmentInfo = "blocktree block key commitment v1"
)

// blockKeys are the keys derived from one block key. The AEADs hold copies
// of their keys and are safe for concurrent use.
type blockKeys struct {
	sectors    cipher.AEAD // seals data sectors
	fields     cipher.AEAD // seals the path and the metadata
	commitment [HashSize]byte
}

// newBlockKey returns KeySize random bytes.
func newBlockKey() []byte {
	key := make([]byte, KeySize)
	rand.Read(key) // crypto/rand.Read never returns an error since Go 1.24.
	return key
}

// deriveKeys derives the sector key, the field key and the key commitment
// from key with HKDF-SHA256. The block id is the salt, so a key reused by
// mistake for another block still yields unrelated subkeys.
func deriveKeys(id [32]byte, key []byte) (*blockKeys, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("derive block keys: key is %d bytes, expected %d", len(key), KeySize)
	}
	prk, err := hkdf.Extract(sha256.New, key, id[:])
	if err != nil {
		return nil, fmt.Errorf("derive block keys: extract: %w", err)
	}
	defer principal.Wipe(prk)

	var keys blockKeys
	if keys.sectors, err = newAEAD(prk, sectorKeyInfo); err != nil {
		return nil, err
	}
	if keys.fields, err = newAEAD(prk, fieldKeyInfo); err != nil {
		return nil, err
	}
	commitment, err := hkdf.Expand(sha256.New, prk, commitmentInfo, HashSize)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: expand %q: %w", commitmentInfo, err)
	}
	copy(keys.commitment[:], commitment)
	return &keys, nil
}

func newAEAD(prk []byte, info string) (cipher.AEAD, error) {
	subkey, err := hkdf.Expand(sha256.New, prk, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: expand %q: %w", info, err)
	}
	defer principal.Wipe(subkey)

	aead, err := chacha20poly1305.NewX(subkey)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: %s: %w", info, err)
	}
	return aead, nil
}

// sectorAD returns the associated data of sector index in version of block id.
func sectorAD(id [32]byte, index uint32, version uint64) []byte {
	ad := make([]byte, 0, len(sectorContext)+len(id)+4+8)
	ad = append(ad, sectorContext...)
	ad = append(ad, id[:]...)
	ad = binary.BigEndian.AppendUint32(ad, index)
	ad = binary.BigEndian.AppendUint64(ad, version)
	return ad
}

// fieldAD returns the associated data of a sealed header field.
func fieldAD(context string, id [32]byte, version uint64) []byte {
	ad := make([]byte, 0, len(context)+len(id)+8)
	ad = append(ad, context...)
	ad = append(ad, id[:]...)
	ad = binary.BigEndian.AppendUint64(ad, version)
	return ad
}

// sealValue appends a random nonce, the ciphertext of plaintext and the tag
// to dst.
func sealValue(dst []byte, aead cipher.AEAD, plaintext, ad []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, NonceSize)...)
	nonce := dst[start : start+NonceSize]
	rand.Read(nonce)
	return aead.Seal(dst, nonce, plaintext, ad)
}

var errShortSealed = errors.New("sealed value is shorter than nonce and tag")

// openValue authenticates and decrypts the output of sealValue, appending the
// plaintext to dst. On failure nothing of the plaintext is returned.
func openValue(dst []byte, aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead {
		return nil, errShortSealed
	}
	return aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], ad)
}
