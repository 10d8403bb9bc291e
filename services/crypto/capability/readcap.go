package capability

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// KeySize is the size of a block key.
const KeySize = chacha20poly1305.KeySize

const (
	readcapVersion = 1

	// readcapInfo labels the HKDF output so the wrapping key cannot be
	// confused with any other key derived from the same ECDH secret.
	readcapInfo = "blocktree readcap v1"

	wrappedSize = KeySize + chacha20poly1305.Overhead

	// MaxReadcapSize bounds one encoded readcap.
	MaxReadcapSize = wire.HeaderSize + principal.Size + principal.PublicKeySize + chacha20poly1305.NonceSizeX + wrappedSize
)

// ErrUnwrap is returned when a readcap does not open with the reader's key:
// the readcap was made for another key, or it was altered.
var ErrUnwrap = errors.New("readcap does not open with this reader's key")

// Readcap is a block key wrapped for one reader's encryption key.
type Readcap struct {
	Reader    principal.Principal
	Ephemeral []byte // uncompressed P-256 point of the one-time ECDH key
	Nonce     []byte // XChaCha20-Poly1305 nonce
	Wrapped   []byte // the block key sealed under the derived wrapping key
}

// WrapKey wraps a block key for reader.
func WrapKey(blockID [32]byte, key []byte, reader principal.Identity) (*Readcap, error) {
	if reader.Encryption == nil || reader.Signing.IsZero() {
		return nil, errors.New("wrap block key: reader identity has no keys")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("wrap block key: %d bytes, expected %d", len(key), KeySize)
	}
	ephemeral, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("wrap block key: %w", err)
	}
	shared, err := ephemeral.ECDH(reader.Encryption)
	if err != nil {
		return nil, fmt.Errorf("wrap block key for %s: %w", reader.Principal(), err)
	}
	r := &Readcap{
		Reader:    reader.Principal(),
		Ephemeral: ephemeral.PublicKey().Bytes(),
		Nonce:     make([]byte, chacha20poly1305.NonceSizeX),
	}
	aead, err := wrappingAEAD(shared, r.Ephemeral, reader.Encryption.Bytes(), blockID)
	if err != nil {
		return nil, err
	}
	if _, err := rand.Read(r.Nonce); err != nil {
		return nil, fmt.Errorf("wrap block key: %w", err)
	}
	r.Wrapped = aead.Seal(nil, r.Nonce, key, r.associatedData(blockID))
	return r, nil
}

// Unwrap recovers the block key with the reader's credential.
func (r *Readcap) Unwrap(blockID [32]byte, cred *principal.Credential) ([]byte, error) {
	if len(r.Nonce) != chacha20poly1305.NonceSizeX || len(r.Wrapped) != wrappedSize {
		return nil, fmt.Errorf("unwrap readcap for %s: malformed nonce or key: %w", r.Reader, ErrUnwrap)
	}
	if cred.Principal() != r.Reader {
		return nil, fmt.Errorf("unwrap readcap for %s with the key of %s: %w", r.Reader, cred.Principal(), ErrUnwrap)
	}
	peer, err := ecdh.P256().NewPublicKey(r.Ephemeral)
	if err != nil {
		return nil, fmt.Errorf("unwrap readcap for %s: ephemeral key: %w: %w", r.Reader, ErrUnwrap, err)
	}
	shared, err := cred.Encryption.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("unwrap readcap: %w", err)
	}
	aead, err := wrappingAEAD(shared, r.Ephemeral, cred.Encryption.Public().Bytes(), blockID)
	if err != nil {
		return nil, err
	}
	key, err := aead.Open(nil, r.Nonce, r.Wrapped, r.associatedData(blockID))
	if err != nil {
		return nil, fmt.Errorf("unwrap readcap for %s: %w", r.Reader, ErrUnwrap)
	}
	return key, nil
}

// wrappingAEAD derives the wrapping key. The salt binds both public keys, so
// a wrapped key cannot be moved to another recipient or ephemeral key, and the
// info binds the block id, so it cannot be moved to another block.
func wrappingAEAD(shared, ephemeral, recipient []byte, blockID [32]byte) (aeadCipher, error) {
	salt := append(append([]byte{}, ephemeral...), recipient...)
	info := append([]byte(readcapInfo), blockID[:]...)
	key, err := hkdf.Key(sha256.New, shared, salt, string(info), KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive readcap key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("derive readcap key: %w", err)
	}
	return aead, nil
}

type aeadCipher interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

func (r *Readcap) associatedData(blockID [32]byte) []byte {
	ad := append([]byte(readcapInfo), blockID[:]...)
	return append(ad, r.Reader[:]...)
}

// MarshalBinary returns the canonical encoding.
func (r *Readcap) MarshalBinary() ([]byte, error) {
	if len(r.Ephemeral) != principal.PublicKeySize || len(r.Nonce) != chacha20poly1305.NonceSizeX || len(r.Wrapped) != wrappedSize {
		return nil, errors.New("encode readcap: malformed fields")
	}
	e := wire.NewEncoder(wire.KindReadcap, readcapVersion)
	e.Fixed(r.Reader[:])
	e.Fixed(r.Ephemeral)
	e.Fixed(r.Nonce)
	e.Fixed(r.Wrapped)
	return e.Data(), nil
}

// ParseReadcap decodes a readcap.
func ParseReadcap(data []byte) (*Readcap, error) {
	d := wire.NewDecoder(data, wire.KindReadcap, readcapVersion)
	reader := d.Fixed(principal.Size)
	ephemeral := d.Fixed(principal.PublicKeySize)
	nonce := d.Fixed(chacha20poly1305.NonceSizeX)
	wrapped := d.Fixed(wrappedSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode readcap: %w", err)
	}
	r := &Readcap{
		Ephemeral: append([]byte(nil), ephemeral...),
		Nonce:     append([]byte(nil), nonce...),
		Wrapped:   append([]byte(nil), wrapped...),
	}
	copy(r.Reader[:], reader)
	return r, nil
}
