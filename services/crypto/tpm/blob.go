package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/google/go-tpm/tpm2"
)

const (
	// blobVersion is the wire version of SealedBlob. Version 1 is a PCR
	// policy sealed under an ECC P-256 SRK with SHA-256 names.
	blobVersion = 1

	// srkNameSize is the size of a SHA-256 object name: a 2-byte algorithm
	// identifier and the 32-byte digest of the public area.
	srkNameSize = 2 + sha256.Size

	// maxPublicSize and maxPrivateSize bound the TPM2B_PUBLIC and
	// TPM2B_PRIVATE fields of an encoded blob. A sealed object's public area
	// is 80 bytes with its size prefix. Its private area is an integrity
	// HMAC and the encrypted sensitive area, which swtpm 0.7.1 returns as
	// 256 bytes for a MaxSecretSize secret. The limits leave room for other
	// TPMs' layouts while keeping allocations small.
	maxPublicSize  = 1024
	maxPrivateSize = 1024
)

// SealedBlob is a secret sealed to a TPM and a set of PCR values, as Seal
// returns it. Unseal needs the same TPM, an unchanged owner hierarchy and
// the same PCR values.
type SealedBlob struct {
	// SRKName is the name of the storage root key the object was created
	// under: TPM_ALG_SHA256 followed by the SHA-256 of its public area.
	SRKName []byte
	// PCRs lists the SHA-256 bank PCRs of the policy, ascending.
	PCRs []int
	// PCRDigests holds the expected 32-byte value of each PCR in PCRs, in
	// the same order.
	PCRDigests [][]byte
	// Public is the sealed object's TPM2B_PUBLIC, with its size prefix.
	Public []byte
	// Private is the sealed object's TPM2B_PRIVATE, with its size prefix,
	// encrypted under the SRK by the TPM.
	Private []byte
}

// MarshalBinary encodes the blob in the canonical wire format, after the
// same checks as UnmarshalSealedBlob.
func (b *SealedBlob) MarshalBinary() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("encode sealed blob: %w", err)
	}

	e := wire.NewEncoder(wire.KindSealedBlob, blobVersion)
	e.Bytes(b.SRKName)
	e.Uint32(uint32(len(b.PCRs)))
	for i, pcr := range b.PCRs {
		e.Uint8(uint8(pcr))
		e.Bytes(b.PCRDigests[i])
	}
	e.Bytes(b.Public)
	e.Bytes(b.Private)
	return e.Data(), nil
}

// UnmarshalSealedBlob decodes a blob encoded by MarshalBinary. It rejects
// any other kind or version, lengths above the field limits and trailing
// bytes. It also rejects PCR numbers outside 0..23, unsorted or repeated
// PCRs and digests other than 32 bytes. The public area must be the
// sealed-object template with the policy of the listed PCR values. Errors
// wrap the wire package's sentinel errors.
func UnmarshalSealedBlob(data []byte) (*SealedBlob, error) {
	d := wire.NewDecoder(data, wire.KindSealedBlob, blobVersion)
	blob := &SealedBlob{SRKName: d.BytesCopy(srkNameSize)}

	count := d.Count(pcrCount)
	for i := 0; i < count && d.Err() == nil; i++ {
		blob.PCRs = append(blob.PCRs, int(d.Uint8()))
		blob.PCRDigests = append(blob.PCRDigests, d.BytesCopy(sha256.Size))
	}

	blob.Public = d.BytesCopy(maxPublicSize)
	blob.Private = d.BytesCopy(maxPrivateSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode sealed blob: %w", err)
	}
	if err := blob.validate(); err != nil {
		return nil, fmt.Errorf("decode sealed blob: %w: %w", wire.ErrInvalid, err)
	}
	return blob, nil
}

// validate checks every field of the blob, as UnmarshalSealedBlob lists.
func (b *SealedBlob) validate() error {
	if b == nil {
		return errors.New("sealed blob is nil")
	}
	if len(b.SRKName) != srkNameSize || binary.BigEndian.Uint16(b.SRKName) != uint16(tpm2.TPMAlgSHA256) {
		return fmt.Errorf("SRK name %x is not a SHA-256 name of %d bytes", b.SRKName, srkNameSize)
	}

	if _, err := normalizePCRs(b.PCRs); err != nil {
		return err
	}
	for i := 1; i < len(b.PCRs); i++ {
		if b.PCRs[i-1] >= b.PCRs[i] {
			return fmt.Errorf("PCRs %v are not in ascending order", b.PCRs)
		}
	}
	if len(b.PCRDigests) != len(b.PCRs) {
		return fmt.Errorf("%d PCR digests for %d PCRs", len(b.PCRDigests), len(b.PCRs))
	}
	for i, digest := range b.PCRDigests {
		if len(digest) != sha256.Size {
			return fmt.Errorf("digest of PCR %d has %d bytes, expected %d", b.PCRs[i], len(digest), sha256.Size)
		}
	}

	if err := checkSized(b.Public, maxPublicSize, "public area"); err != nil {
		return err
	}
	if err := checkSized(b.Private, maxPrivateSize, "private area"); err != nil {
		return err
	}

	policy, err := b.policy().digest()
	if err != nil {
		return err
	}
	if err := checkPublicArea(b.Public[2:], sealedObjectTemplate(policy), sha256.Size); err != nil {
		return fmt.Errorf("public area: %w", err)
	}
	return nil
}

// policy returns the policy of a validated blob.
func (b *SealedBlob) policy() pcrPolicy {
	return pcrPolicy{pcrs: b.PCRs, values: b.PCRDigests}
}

// checkSized checks that field is a TPM2B: a 2-byte size followed by exactly
// that many bytes, at least one, and at most limit bytes in all.
func checkSized(field []byte, limit int, fieldName string) error {
	if len(field) > limit {
		return fmt.Errorf("%s has %d bytes, limit %d", fieldName, len(field), limit)
	}
	if len(field) < 3 {
		return fmt.Errorf("%s has %d bytes, too short for a TPM2B", fieldName, len(field))
	}
	if size := int(binary.BigEndian.Uint16(field)); size != len(field)-2 {
		return fmt.Errorf("%s has size prefix %d but %d bytes follow", fieldName, size, len(field)-2)
	}
	return nil
}

// checkPublicArea checks that raw, a marshalled TPMT_PUBLIC, is template
// with only the unique field filled in, and that unique is uniqueSize bytes.
// Comparing re-marshalled bytes also rejects trailing bytes and reserved
// attribute bits, which parsing alone would drop.
func checkPublicArea(raw []byte, template tpm2.TPMTPublic, uniqueSize int) error {
	public, err := tpm2.Unmarshal[tpm2.TPMTPublic](raw)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	// The type selects the union member of unique, so a unique field of
	// another type would not marshal inside the template (go-tpm panics).
	if public.Type != template.Type {
		return fmt.Errorf("object type %v, expected %v", public.Type, template.Type)
	}
	if err := checkUniqueSize(public, uniqueSize); err != nil {
		return err
	}

	template.Unique = public.Unique
	if !bytes.Equal(tpm2.Marshal(template), raw) {
		return errors.New("differs from the expected template")
	}
	return nil
}

// checkUniqueSize checks the size of each component of the unique field.
func checkUniqueSize(public *tpm2.TPMTPublic, size int) error {
	switch public.Type {
	case tpm2.TPMAlgKeyedHash:
		unique, err := public.Unique.KeyedHash()
		if err != nil {
			return fmt.Errorf("unique field: %w", err)
		}
		if len(unique.Buffer) != size {
			return fmt.Errorf("unique field has %d bytes, expected %d", len(unique.Buffer), size)
		}
	case tpm2.TPMAlgECC:
		unique, err := public.Unique.ECC()
		if err != nil {
			return fmt.Errorf("unique field: %w", err)
		}
		if len(unique.X.Buffer) != size || len(unique.Y.Buffer) != size {
			return fmt.Errorf("ECC point has coordinates of %d and %d bytes, expected %d", len(unique.X.Buffer), len(unique.Y.Buffer), size)
		}
	default:
		return fmt.Errorf("object type %v is not keyed hash or ECC", public.Type)
	}
	return nil
}
