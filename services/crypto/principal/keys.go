package principal

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Sizes of the canonical encodings.
const (
	PublicKeySize  = 65 // uncompressed SEC 1 point of P-256
	PrivateKeySize = 32 // P-256 scalar
	SignatureSize  = 64 // r||s, each 32 bytes big-endian
)

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// PublicKey is a principal's public signing key.
type PublicKey struct {
	key *ecdsa.PublicKey
}

// ParsePublicKey reads an uncompressed SEC 1 P-256 point.
func ParsePublicKey(b []byte) (PublicKey, error) {
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("parse signing public key (%d bytes): %w", len(b), err)
	}
	return PublicKey{key: key}, nil
}

// Bytes returns the canonical encoding: an uncompressed SEC 1 point.
func (k PublicKey) Bytes() []byte {
	b, err := k.key.Bytes()
	if err != nil {
		// A PublicKey is only built from a valid point, so this cannot fail.
		panic("principal: encode public key: " + err.Error())
	}
	return b
}

// Principal returns the hash that names the key's owner.
func (k PublicKey) Principal() Principal { return sha256.Sum256(k.Bytes()) }

// Equal reports whether k and other are the same key.
func (k PublicKey) Equal(other PublicKey) bool {
	return k.key != nil && other.key != nil && k.key.Equal(other.key)
}

// IsZero reports whether k holds no key.
func (k PublicKey) IsZero() bool { return k.key == nil }

// Verify checks sig over message in the given context.
func (k PublicKey) Verify(context string, message, sig []byte) error {
	return k.VerifyParts(context, sig, message)
}

// VerifyParts checks sig over the concatenation of parts in the given
// context, without building the concatenation.
func (k PublicKey) VerifyParts(context string, sig []byte, parts ...[]byte) error {
	if k.key == nil || len(sig) != SignatureSize {
		return ErrBadSignature
	}
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	if s.Cmp(halfOrder) > 0 {
		return ErrBadSignature
	}
	d := digest(context, parts)
	sum := verifiedSum(k, d, sig)
	if seenVerified(sum) {
		return nil
	}
	if !ecdsa.Verify(k.key, d, r, s) {
		return ErrBadSignature
	}
	rememberVerified(sum)
	return nil
}

// digest separates signatures by context: the context names the structure
// and its version, and the zero byte keeps "ab"+"c" apart from "a"+"bc".
// The message is the concatenation of parts.
func digest(context string, parts [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte(context))
	h.Write([]byte{0})
	for _, part := range parts {
		h.Write(part)
	}
	return h.Sum(nil)
}

// SigningKey is a private ECDSA P-256 key.
type SigningKey struct {
	key *ecdsa.PrivateKey
}

// GenerateSigningKey creates a new signing key from crypto/rand.
func GenerateSigningKey() (SigningKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	return SigningKey{key: key}, nil
}

// ParseSigningKey reads a 32-byte P-256 scalar.
func ParseSigningKey(b []byte) (SigningKey, error) {
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return SigningKey{}, fmt.Errorf("parse signing key: %w", err)
	}
	return SigningKey{key: key}, nil
}

// Bytes returns the 32-byte scalar. The caller must treat it as a secret.
func (k SigningKey) Bytes() []byte {
	b, err := k.key.Bytes()
	if err != nil {
		panic("principal: encode signing key: " + err.Error())
	}
	return b
}

// Public returns the public half.
func (k SigningKey) Public() PublicKey { return PublicKey{key: &k.key.PublicKey} }

// Principal returns the principal that this key signs for.
func (k SigningKey) Principal() Principal { return k.Public().Principal() }

// Sign signs message in the given context and returns a 64-byte r||s signature.
func (k SigningKey) Sign(context string, message []byte) ([]byte, error) {
	return k.SignParts(context, message)
}

// SignParts signs the concatenation of parts in the given context, as Sign
// does, without building the concatenation.
func (k SigningKey) SignParts(context string, parts ...[]byte) ([]byte, error) {
	d := digest(context, parts)
	der, err := ecdsa.SignASN1(rand.Reader, k.key, d)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", context, err)
	}
	sig, err := derToFixed(der)
	if err != nil {
		return nil, err
	}
	// A block that this process sealed and reads back then needs no
	// verification: TestSignatureVerifiesAfresh checks what is remembered.
	rememberVerified(verifiedSum(k.Public(), d, sig))
	return sig, nil
}

// halfOrder is n/2 for P-256. ECDSA accepts (r, s) and (r, n-s) alike, so
// Sign always emits the low s and Verify rejects the high one. Each signed
// message then has exactly one valid signature encoding, so code that hashes
// signed bytes (to name or revoke a grant) cannot be bypassed by flipping s.
var halfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// derToFixed converts an ASN.1 ECDSA signature to fixed-width low-s r||s.
func derToFixed(der []byte) ([]byte, error) {
	var r, s big.Int
	var inner cryptobyte.String
	input := cryptobyte.String(der)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, errors.New("sign: malformed ASN.1 signature")
	}
	if s.Cmp(halfOrder) > 0 {
		s.Sub(elliptic.P256().Params().N, &s)
	}
	out := make([]byte, SignatureSize)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

// EncryptionKey is a private ECDH P-256 key that receives wrapped block keys.
type EncryptionKey struct {
	key *ecdh.PrivateKey
}

// GenerateEncryptionKey creates a new encryption key from crypto/rand.
func GenerateEncryptionKey() (EncryptionKey, error) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return EncryptionKey{}, fmt.Errorf("generate encryption key: %w", err)
	}
	return EncryptionKey{key: key}, nil
}

// ParseEncryptionKey reads a 32-byte P-256 scalar.
func ParseEncryptionKey(b []byte) (EncryptionKey, error) {
	key, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		return EncryptionKey{}, fmt.Errorf("parse encryption key: %w", err)
	}
	return EncryptionKey{key: key}, nil
}

// Bytes returns the 32-byte scalar. The caller must treat it as a secret.
func (k EncryptionKey) Bytes() []byte { return k.key.Bytes() }

// Public returns the public half.
func (k EncryptionKey) Public() *ecdh.PublicKey { return k.key.PublicKey() }

// ECDH returns the shared secret with a peer's public key.
func (k EncryptionKey) ECDH(peer *ecdh.PublicKey) ([]byte, error) { return k.key.ECDH(peer) }

// Identity is the public half of a principal's keys, as published to others.
type Identity struct {
	Signing    PublicKey
	Encryption *ecdh.PublicKey
}

// Principal returns the principal that the identity belongs to.
func (id Identity) Principal() Principal { return id.Signing.Principal() }

// identityVersion is the current encoding version of an Identity.
const identityVersion = 1

// MarshalBinary returns the canonical encoding.
func (id Identity) MarshalBinary() ([]byte, error) {
	if id.Signing.IsZero() || id.Encryption == nil {
		return nil, errors.New("encode identity: missing key")
	}
	e := wire.NewEncoder(wire.KindPublicIdentity, identityVersion)
	e.Fixed(id.Signing.Bytes())
	e.Fixed(id.Encryption.Bytes())
	return e.Data(), nil
}

// ParseIdentity decodes an Identity and checks both points.
func ParseIdentity(data []byte) (Identity, error) {
	d := wire.NewDecoder(data, wire.KindPublicIdentity, identityVersion)
	signing := d.Fixed(PublicKeySize)
	encryption := d.Fixed(PublicKeySize)
	if err := d.Finish(); err != nil {
		return Identity{}, fmt.Errorf("decode identity: %w", err)
	}
	var id Identity
	var err error
	if id.Signing, err = ParsePublicKey(signing); err != nil {
		return Identity{}, fmt.Errorf("decode identity: %w", err)
	}
	if id.Encryption, err = ecdh.P256().NewPublicKey(encryption); err != nil {
		return Identity{}, fmt.Errorf("decode identity: encryption key: %w", err)
	}
	return id, nil
}

// Credential is a principal's private keys. It is held in memory only:
// on disk it exists sealed by a TPM or wrapped by a passphrase or recovery key.
type Credential struct {
	Signing    SigningKey
	Encryption EncryptionKey
}

// GenerateCredential creates a fresh pair of keys.
func GenerateCredential() (*Credential, error) {
	signing, err := GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	encryption, err := GenerateEncryptionKey()
	if err != nil {
		return nil, err
	}
	return &Credential{Signing: signing, Encryption: encryption}, nil
}

// Principal returns the credential's principal.
func (c *Credential) Principal() Principal { return c.Signing.Principal() }

// Identity returns the public halves.
func (c *Credential) Identity() Identity {
	return Identity{Signing: c.Signing.Public(), Encryption: c.Encryption.Public()}
}

// SecretSize is the size of a credential's secret encoding: two scalars.
const SecretSize = 2 * PrivateKeySize

// Secret returns the private scalars, signing first. It fits in a TPM
// sealed-data object (at most 128 bytes). The caller must wipe it after use.
func (c *Credential) Secret() []byte {
	return append(c.Signing.Bytes(), c.Encryption.Bytes()...)
}

// ParseCredential reads the encoding made by Secret.
func ParseCredential(secret []byte) (*Credential, error) {
	if len(secret) != SecretSize {
		return nil, fmt.Errorf("parse credential: %d bytes, expected %d", len(secret), SecretSize)
	}
	signing, err := ParseSigningKey(secret[:PrivateKeySize])
	if err != nil {
		return nil, err
	}
	encryption, err := ParseEncryptionKey(secret[PrivateKeySize:])
	if err != nil {
		return nil, err
	}
	return &Credential{Signing: signing, Encryption: encryption}, nil
}

// Wipe overwrites b with zeros. Go may have copied a secret elsewhere, so this
// limits exposure rather than guaranteeing erasure.
func Wipe(b []byte) {
	clear(b)
}
