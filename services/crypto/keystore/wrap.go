package keystore

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Methods of deriving the wrapping key of a WrappedSecret.
const (
	methodRecoveryKey uint8 = 1 // HKDF-SHA256 of a 256-bit random key
	methodPassphrase  uint8 = 2 // Argon2id of a passphrase
)

// Argon2id parameters for new passphrase-wrapped secrets: the second option
// that RFC 9106 section 4 recommends for memory-constrained use (t=3,
// 64 MiB, 4 lanes). The parameters are stored with each secret, so they can be
// raised later without breaking old files.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4

	// Decoding rejects parameters above these, so a crafted file cannot make
	// Load allocate unbounded memory or spin for hours.
	maxArgonTime    = 64
	maxArgonMemory  = 4 * 1024 * 1024 // KiB (4 GiB)
	maxArgonThreads = 64
)

const (
	wrappedVersion = 1
	saltSize       = 16
	wrapInfo       = "blocktree keystore wrap v1"
	maxSecretSize  = 1024
)

// ErrWrongKey is returned when a wrapped secret does not open: the passphrase
// or recovery key is wrong, or the file was altered or belongs to another
// principal.
var ErrWrongKey = errors.New("wrong passphrase or recovery key, or the file was altered")

// wrappedSecret is the on-disk form of a secret wrapped under a passphrase or
// a recovery key.
type wrappedSecret struct {
	method     uint8
	time       uint32
	memory     uint32
	threads    uint8
	salt       []byte
	nonce      []byte
	ciphertext []byte
}

func (w *wrappedSecret) marshal() []byte {
	e := w.headerEncoder()
	e.Bytes(w.ciphertext)
	return e.Data()
}

// header returns the bytes that precede the ciphertext. They are the AEAD's
// associated data, so the stored parameters cannot be changed unnoticed.
func (w *wrappedSecret) header() []byte { return w.headerEncoder().Data() }

func (w *wrappedSecret) headerEncoder() *wire.Encoder {
	e := wire.NewEncoder(wire.KindWrappedSecret, wrappedVersion)
	e.Uint8(w.method)
	e.Uint32(w.time)
	e.Uint32(w.memory)
	e.Uint8(w.threads)
	e.Fixed(w.salt)
	e.Fixed(w.nonce)
	return e
}

func parseWrappedSecret(data []byte) (*wrappedSecret, error) {
	d := wire.NewDecoder(data, wire.KindWrappedSecret, wrappedVersion)
	w := &wrappedSecret{
		method:  d.Uint8(),
		time:    d.Uint32(),
		memory:  d.Uint32(),
		threads: d.Uint8(),
	}
	w.salt = d.Fixed(saltSize)
	w.nonce = d.Fixed(chacha20poly1305.NonceSizeX)
	w.ciphertext = d.Bytes(maxSecretSize + chacha20poly1305.Overhead)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode wrapped secret: %w", err)
	}

	switch w.method {
	case methodRecoveryKey:
		if w.time != 0 || w.memory != 0 || w.threads != 0 {
			return nil, fmt.Errorf("decode wrapped secret: recovery-key method with Argon2id parameters: %w", wire.ErrInvalid)
		}
	case methodPassphrase:
		if w.time == 0 || w.time > maxArgonTime || w.memory < 8*uint32(w.threads) || w.memory > maxArgonMemory || w.threads == 0 || w.threads > maxArgonThreads {
			return nil, fmt.Errorf("decode wrapped secret: Argon2id parameters t=%d m=%d KiB p=%d out of range: %w", w.time, w.memory, w.threads, wire.ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("decode wrapped secret: method %d: %w", w.method, wire.ErrInvalid)
	}
	if len(w.ciphertext) < chacha20poly1305.Overhead {
		return nil, fmt.Errorf("decode wrapped secret: ciphertext of %d bytes: %w", len(w.ciphertext), wire.ErrInvalid)
	}
	return w, nil
}

// wrapKey derives the AEAD key from the user's secret under w's method.
func (w *wrappedSecret) wrapKey(userSecret []byte) ([]byte, error) {
	switch w.method {
	case methodRecoveryKey:
		return hkdf.Key(sha256.New, userSecret, w.salt, wrapInfo, chacha20poly1305.KeySize)
	case methodPassphrase:
		return argon2.IDKey(userSecret, w.salt, w.time, w.memory, w.threads, chacha20poly1305.KeySize), nil
	}
	return nil, fmt.Errorf("wrap method %d: %w", w.method, wire.ErrInvalid)
}

func associatedData(header []byte, owner principal.Principal) []byte {
	return append(append([]byte{}, header...), owner[:]...)
}

// wrap seals secret for owner under userSecret with the given method.
func wrap(method uint8, userSecret, secret []byte, owner principal.Principal) ([]byte, error) {
	w := &wrappedSecret{
		method: method,
		salt:   make([]byte, saltSize),
		nonce:  make([]byte, chacha20poly1305.NonceSizeX),
	}
	if method == methodPassphrase {
		w.time, w.memory, w.threads = argonTime, argonMemory, argonThreads
	}
	if _, err := rand.Read(w.salt); err != nil {
		return nil, fmt.Errorf("wrap secret: %w", err)
	}
	if _, err := rand.Read(w.nonce); err != nil {
		return nil, fmt.Errorf("wrap secret: %w", err)
	}
	key, err := w.wrapKey(userSecret)
	if err != nil {
		return nil, err
	}
	defer principal.Wipe(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("wrap secret: %w", err)
	}
	w.ciphertext = aead.Seal(nil, w.nonce, secret, associatedData(w.header(), owner))
	return w.marshal(), nil
}

// unwrap opens a wrapped secret made by wrap with the same method.
func unwrap(method uint8, userSecret, data []byte, owner principal.Principal) ([]byte, error) {
	w, err := parseWrappedSecret(data)
	if err != nil {
		return nil, err
	}
	if w.method != method {
		return nil, fmt.Errorf("unwrap secret: file uses method %d, expected %d: %w", w.method, method, wire.ErrInvalid)
	}
	key, err := w.wrapKey(userSecret)
	if err != nil {
		return nil, err
	}
	defer principal.Wipe(key)
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("unwrap secret: %w", err)
	}
	secret, err := aead.Open(nil, w.nonce, w.ciphertext, associatedData(w.header(), owner))
	if err != nil {
		return nil, ErrWrongKey
	}
	return secret, nil
}
