package block

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// Sizes of the block key and of the parts of a sealed field, and of a
// sector sealed with XChaCha20-Poly1305.
const (
	KeySize      = chacha20poly1305.KeySize    // block key
	NonceSize    = chacha20poly1305.NonceSizeX // random nonce in front of each sealed value
	TagSize      = chacha20poly1305.Overhead   // Poly1305 tag at the end of each sealed value
	SealOverhead = NonceSize + TagSize         // bytes a sealed value adds to its plaintext
	SaltSize     = 32                          // Header.SectorSalt
)

// Cipher names the AEAD that seals the sectors of a block. The path and
// the metadata are always sealed with XChaCha20-Poly1305.
type Cipher uint8

const (
	// CipherAuto, in Params only, picks AES256GCM on a CPU with AES and
	// carry-less multiplication instructions and XChaCha20Poly1305 on others.
	CipherAuto Cipher = 0

	// XChaCha20Poly1305 seals each sector under the sector key with a
	// random 192-bit nonce stored in front of it: SealOverhead bytes.
	XChaCha20Poly1305 Cipher = 1

	// AES256GCM seals each sector under a key derived for this sealing
	// from the block key and the header's random SectorSalt, with the
	// sector index as nonce. It stores only the tag: TagSize bytes.
	AES256GCM Cipher = 2
)

func (c Cipher) String() string {
	switch c {
	case CipherAuto:
		return "auto"
	case XChaCha20Poly1305:
		return "XChaCha20-Poly1305"
	case AES256GCM:
		return "AES-256-GCM"
	}
	return fmt.Sprintf("cipher %d", uint8(c))
}

// valid reports whether c can be stored in a header.
func (c Cipher) valid() bool { return c == XChaCha20Poly1305 || c == AES256GCM }

// sectorOverhead returns the bytes that sealing adds to a sector.
func (c Cipher) sectorOverhead() int {
	if c == AES256GCM {
		return TagSize
	}
	return SealOverhead
}

// hardwareAES reports whether the CPU runs AES-GCM in hardware. There Go's
// AES-256-GCM sealed 4 KiB sectors 2.1 to 2.7 times as fast as
// XChaCha20-Poly1305 (docs/benchmarks.md, "Block protection"). Without
// these instructions Go's AES uses table lookups, whose timing depends on
// the key.
// The condition is the one under which Go's crypto/aes uses its assembly
// AES-GCM on amd64 and arm64, the only architectures this checks.
var hardwareAES = runtime.GOARCH == "amd64" && cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSE41 && cpu.X86.HasSSSE3 ||
	runtime.GOARCH == "arm64" && cpu.ARM64.HasAES && cpu.ARM64.HasPMULL

// HardwareAES reports whether this CPU runs Go's AES-GCM in hardware, so
// that AES-256-GCM is the faster AEAD. Other packages that choose between
// AES-256-GCM and XChaCha20-Poly1305 ask it too.
func HardwareAES() bool { return hardwareAES }

// sectorCipher returns the cipher that Seal uses for c.
func sectorCipher(c Cipher) Cipher {
	if c != CipherAuto {
		return c
	}
	if hardwareAES {
		return AES256GCM
	}
	return XChaCha20Poly1305
}

// Context strings. Each names its structure and version so that a signature,
// a key or a ciphertext made for one purpose is never accepted for another.
const (
	signatureContext = "blocktree block header v3"
	sectorContext    = "blocktree block sector v1"
	pathContext      = "blocktree block path v1"
	metadataContext  = "blocktree block metadata v1"

	sectorKeyInfo  = "blocktree block sector key v1"
	aesKeyInfo     = "blocktree block sector key aes-256-gcm v1"
	fieldKeyInfo   = "blocktree block field key v1"
	commitmentInfo = "blocktree block key commitment v1"
)

// blockKeys are the keys derived from one block key for one sealing. The
// AEADs hold copies of their keys and are safe for concurrent use.
type blockKeys struct {
	cipher     Cipher
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
// mistake for another block still yields unrelated subkeys. The AES-256-GCM
// sector key also depends on salt, which the writer draws for each
// sealing, so that no key seals two sectors with the same index.
func deriveKeys(id [32]byte, key []byte, c Cipher, salt [SaltSize]byte) (*blockKeys, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("derive block keys: key is %d bytes, expected %d", len(key), KeySize)
	}
	prk, err := hkdf.Extract(sha256.New, key, id[:])
	if err != nil {
		return nil, fmt.Errorf("derive block keys: extract: %w", err)
	}
	defer principal.Wipe(prk)

	keys := blockKeys{cipher: c}
	switch c {
	case XChaCha20Poly1305:
		keys.sectors, err = newAEAD(prk, sectorKeyInfo)
	case AES256GCM:
		keys.sectors, err = newGCM(prk, aesKeyInfo+string(salt[:]))
	default:
		err = fmt.Errorf("derive block keys: unknown sector cipher %d", uint8(c))
	}
	if err != nil {
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

func newGCM(prk []byte, info string) (cipher.AEAD, error) {
	subkey, err := hkdf.Expand(sha256.New, prk, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: expand the AES-256-GCM sector key: %w", err)
	}
	defer principal.Wipe(subkey)

	block, err := aes.NewCipher(subkey)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: AES-256: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive block keys: GCM: %w", err)
	}
	return aead, nil
}

// sealSector seals plain, sector index, into sealed, which has room for
// exactly the sealed sector, with associated data ad.
func (k *blockKeys) sealSector(sealed []byte, index uint32, plain, ad []byte) {
	if k.cipher == AES256GCM {
		var nonce [12]byte
		binary.BigEndian.PutUint32(nonce[8:], index)
		k.sectors.Seal(sealed[:0], nonce[:], plain, ad)
		return
	}
	nonce := sealed[:NonceSize]
	rand.Read(nonce)
	k.sectors.Seal(sealed[NonceSize:NonceSize], nonce, plain, ad)
}

// openSector authenticates and decrypts a sector sealed by sealSector,
// appending the plaintext to dst.
func (k *blockKeys) openSector(dst, sealed []byte, index uint32, ad []byte) ([]byte, error) {
	if k.cipher == AES256GCM {
		var nonce [12]byte
		binary.BigEndian.PutUint32(nonce[8:], index)
		return k.sectors.Open(dst, nonce[:], sealed, ad)
	}
	return openValue(dst, k.sectors, sealed, ad)
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
