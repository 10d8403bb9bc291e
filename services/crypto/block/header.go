package block

import (
	"bytes"
	"fmt"
	"math"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Limits of a block.
const (
	// SectorSize is the number of plaintext bytes in every sector but the last.
	SectorSize = 4096

	// MaxSectors keeps sector indexes within the uint32 that the associated
	// data and the leaf hashes carry.
	MaxSectors = math.MaxUint32

	// MaxSize is the largest plaintext a block can hold (16 TiB). In practice
	// memory limits the stored sectors, since Seal and Open work on whole
	// encodings, but holes take no room in an encoding.
	MaxSize = uint64(MaxSectors) * SectorSize

	// MaxPathSize is the longest path in bytes, the capability package's limit.
	MaxPathSize = capability.MaxPathLen

	// MaxMetadataSize bounds the caller's metadata, such as inode attributes.
	MaxMetadataSize = 64 << 10

	// MaxReaders bounds the recipients, because Open parses every one of
	// them. 256 recipients take about 80 KiB of header.
	MaxReaders = 256
)

const (
	// headerVersion is the version of the header encoding. Version 3 added
	// the sector cipher and salt. Version 2 kept the fields of version 1
	// but changed the meaning of the Merkle root, which covers holes since.
	// Versions 1 and 2 are not decoded: stored blocks of version 2 came
	// only from test builds, before any release.
	headerVersion = 3

	// An identity encodes in 133 bytes. The limit leaves room for a later
	// version without letting a corrupt length claim megabytes.
	maxIdentitySize = 256
	maxReadcapSize  = capability.MaxReadcapSize

	// maxChainSize is above the largest chain the capability package encodes
	// (about 34 KiB: 8 links with 4096-byte prefixes). That package enforces
	// the depth and the size of each link.
	maxChainSize = 64 << 10

	maxSealedPathSize     = MaxPathSize + SealOverhead
	maxSealedMetadataSize = MaxMetadataSize + SealOverhead

	maxHeaderSize = wire.HeaderSize + 32 + 8 + 8 + 4 + 1 + SaltSize + 2*HashSize +
		4 + maxSealedPathSize + 4 + maxSealedMetadataSize +
		4 + MaxReaders*(4+maxIdentitySize+4+maxReadcapSize) +
		principal.PublicKeySize + 4 + maxChainSize + principal.SignatureSize
)

// Recipient is a reader of a block: its public identity and the block key
// wrapped for it.
type Recipient struct {
	Identity principal.Identity
	Readcap  *capability.Readcap
}

// Header is the signed part of a block. Its encoding is described in the
// package documentation.
type Header struct {
	ID             [32]byte
	Version        uint64
	Size           uint64 // plaintext bytes
	SectorSize     uint32
	Cipher         Cipher         // the sectors' AEAD
	SectorSalt     [SaltSize]byte // random for AES256GCM, zero for XChaCha20Poly1305
	Root           [HashSize]byte // Merkle root over the sealed present sectors and the holes
	KeyCommitment  [HashSize]byte // derived from the block key, checked by every reader
	SealedPath     []byte
	SealedMetadata []byte
	Recipients     []Recipient // in increasing order of principal, no duplicates
	Writer         principal.PublicKey
	Chain          capability.Chain // writecaps from the tree's root to the writer
	Signature      []byte           // the writer's, over every preceding byte of the encoding
}

// Sectors returns the number of sectors of the block.
func (h *Header) Sectors() uint64 {
	return sectorCount(h.Size)
}

// sectorCount returns ceil(size / SectorSize). It is uint64 because a parsed
// header's size is only checked against the encoding later, and the count of
// a large size would overflow a 32-bit int.
func sectorCount(size uint64) uint64 {
	return (size + SectorSize - 1) / SectorSize
}

// MarshalBinary returns the canonical encoding, signature included.
func (h *Header) MarshalBinary() ([]byte, error) {
	e, err := h.encodeUnsigned()
	if err != nil {
		return nil, err
	}
	if len(h.Signature) != principal.SignatureSize {
		return nil, fmt.Errorf("encode block header %s: signature is %d bytes, expected %d",
			formatID(h.ID), len(h.Signature), principal.SignatureSize)
	}
	e.Fixed(h.Signature)
	return e.Data(), nil
}

// encodeUnsigned encodes every field before the signature: the bytes that the
// writer signs.
func (h *Header) encodeUnsigned() (*wire.Encoder, error) {
	fail := func(format string, args ...any) (*wire.Encoder, error) {
		return nil, fmt.Errorf("encode block header %s: "+format, append([]any{formatID(h.ID)}, args...)...)
	}
	if h.Writer.IsZero() {
		return fail("writer key is missing")
	}

	e := wire.NewEncoder(wire.KindBlockHeader, headerVersion)
	e.Fixed(h.ID[:])
	e.Uint64(h.Version)
	e.Uint64(h.Size)
	e.Uint32(h.SectorSize)
	e.Uint8(uint8(h.Cipher))
	e.Fixed(h.SectorSalt[:])
	e.Fixed(h.Root[:])
	e.Fixed(h.KeyCommitment[:])
	e.Bytes(h.SealedPath)
	e.Bytes(h.SealedMetadata)

	e.Uint32(uint32(len(h.Recipients)))
	for i, r := range h.Recipients {
		identity, err := r.Identity.MarshalBinary()
		if err != nil {
			return fail("recipient %d: %w", i, err)
		}
		if r.Readcap == nil {
			return fail("recipient %d: readcap is missing", i)
		}
		readcap, err := r.Readcap.MarshalBinary()
		if err != nil {
			return fail("recipient %d: %w", i, err)
		}
		e.Bytes(identity)
		e.Bytes(readcap)
	}

	e.Fixed(h.Writer.Bytes())
	chain, err := h.Chain.MarshalBinary()
	if err != nil {
		return fail("chain: %w", err)
	}
	e.Bytes(chain)
	return e, nil
}

// ParseHeader decodes a header and checks its structure: limits, sizes, the
// order of recipients, and that every nested structure is in canonical form.
// It does not check the signature, the chain or the Merkle root. Open and
// Verify do.
func ParseHeader(data []byte) (*Header, error) {
	h, _, err := parseHeader(data)
	return h, err
}

// parseHeader is ParseHeader that also returns the signed bytes, a prefix of
// data.
func parseHeader(data []byte) (*Header, []byte, error) {
	h := &Header{}
	d := wire.NewDecoder(data, wire.KindBlockHeader, headerVersion)
	copy(h.ID[:], d.Fixed(len(h.ID)))
	h.Version = d.Uint64()
	h.Size = d.Uint64()
	h.SectorSize = d.Uint32()
	h.Cipher = Cipher(d.Uint8())
	copy(h.SectorSalt[:], d.Fixed(SaltSize))
	copy(h.Root[:], d.Fixed(HashSize))
	copy(h.KeyCommitment[:], d.Fixed(HashSize))
	h.SealedPath = d.BytesCopy(maxSealedPathSize)
	h.SealedMetadata = d.BytesCopy(maxSealedMetadataSize)

	count := d.Count(MaxReaders)
	rawRecipients := make([][2][]byte, 0, count)
	for range count {
		identity := d.Bytes(maxIdentitySize)
		readcap := d.Bytes(maxReadcapSize)
		rawRecipients = append(rawRecipients, [2][]byte{identity, readcap})
	}

	writer := d.Fixed(principal.PublicKeySize)
	chain := d.Bytes(maxChainSize)
	signedLen := len(data) - d.Remaining()
	h.Signature = append([]byte(nil), d.Fixed(principal.SignatureSize)...)
	if err := d.Finish(); err != nil {
		return nil, nil, fmt.Errorf("parse block header: %w", err)
	}

	fail := func(format string, args ...any) (*Header, []byte, error) {
		return nil, nil, fmt.Errorf("parse block header %s: "+format, append([]any{formatID(h.ID)}, args...)...)
	}
	if h.SectorSize != SectorSize {
		return fail("sector size %d, expected %d: %w", h.SectorSize, SectorSize, wire.ErrInvalid)
	}
	if h.Size > MaxSize {
		return fail("size %d is above the maximum %d: %w", h.Size, MaxSize, wire.ErrInvalid)
	}
	if !h.Cipher.valid() {
		return fail("unknown sector cipher %d, expected %d (%s) or %d (%s): %w", uint8(h.Cipher),
			uint8(XChaCha20Poly1305), XChaCha20Poly1305, uint8(AES256GCM), AES256GCM, wire.ErrInvalid)
	}
	if h.Cipher == XChaCha20Poly1305 && h.SectorSalt != ([SaltSize]byte{}) {
		return fail("sector salt is set, but %s does not use one: %w", XChaCha20Poly1305, wire.ErrInvalid)
	}
	if len(h.SealedPath) < SealOverhead {
		return fail("sealed path is %d bytes, below the minimum %d: %w", len(h.SealedPath), SealOverhead, wire.ErrInvalid)
	}
	if len(h.SealedMetadata) < SealOverhead {
		return fail("sealed metadata is %d bytes, below the minimum %d: %w", len(h.SealedMetadata), SealOverhead, wire.ErrInvalid)
	}

	var err error
	if h.Recipients, err = parseRecipients(rawRecipients); err != nil {
		return fail("%w", err)
	}
	if h.Writer, err = principal.ParsePublicKey(writer); err != nil {
		return fail("writer: %w", err)
	}
	if h.Chain, err = parseCanonicalChain(chain); err != nil {
		return fail("%w", err)
	}
	return h, data[:signedLen], nil
}

// parseRecipients decodes the recipients and checks that they are canonical,
// consistent and in strictly increasing order of principal.
func parseRecipients(raw [][2][]byte) ([]Recipient, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no recipients: %w", wire.ErrInvalid)
	}
	recipients := make([]Recipient, 0, len(raw))
	var previous principal.Principal
	for i, fields := range raw {
		identity, err := principal.ParseIdentity(fields[0])
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i, err)
		}
		if again, err := identity.MarshalBinary(); err != nil || !bytes.Equal(again, fields[0]) {
			return nil, fmt.Errorf("recipient %d: identity is not in canonical form: %w", i, wire.ErrInvalid)
		}

		readcap, err := capability.ParseReadcap(fields[1])
		if err != nil {
			return nil, fmt.Errorf("recipient %d: %w", i, err)
		}
		if again, err := readcap.MarshalBinary(); err != nil || !bytes.Equal(again, fields[1]) {
			return nil, fmt.Errorf("recipient %d: readcap is not in canonical form: %w", i, wire.ErrInvalid)
		}

		reader := identity.Principal()
		if readcap.Reader != reader {
			return nil, fmt.Errorf("recipient %d: readcap is for %s, identity is %s: %w", i, readcap.Reader, reader, wire.ErrInvalid)
		}
		if i > 0 && bytes.Compare(previous[:], reader[:]) >= 0 {
			return nil, fmt.Errorf("recipient %d: %s is not after %s in increasing order: %w", i, reader, previous, wire.ErrInvalid)
		}
		previous = reader
		recipients = append(recipients, Recipient{Identity: identity, Readcap: readcap})
	}
	return recipients, nil
}

// parseCanonicalChain decodes a chain and rejects any encoding that would not
// come back byte for byte, so that the header has exactly one encoding.
func parseCanonicalChain(data []byte) (capability.Chain, error) {
	chain, err := capability.ParseChain(data)
	if err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	if again, err := chain.MarshalBinary(); err != nil || !bytes.Equal(again, data) {
		return nil, fmt.Errorf("chain is not in canonical form: %w", wire.ErrInvalid)
	}
	return chain, nil
}
