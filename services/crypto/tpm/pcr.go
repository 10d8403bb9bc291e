package tpm

import (
	"bytes"
	_ "crypto/sha1" // registers SHA-1 for ExtendPCR on TPMs with a SHA-1 bank
	"crypto/sha256"
	_ "crypto/sha512" // registers SHA-384 and SHA-512 for ExtendPCR
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

const (
	// pcrCount is the number of PCRs this package addresses: PCRs 0 to 23,
	// the minimum of the TCG PC Client Platform TPM Profile.
	pcrCount = 24

	// maxPCRReadAttempts bounds how often readPCRs starts over when PCRs
	// change between the TPM2_PCR_Read calls of one read.
	maxPCRReadAttempts = 3
)

// ReadPCRs returns the SHA-256 bank values of the given PCRs, keyed by PCR
// number. The values form one consistent snapshot: if a PCR changes while
// the TPM returns them in several parts, the read starts over. PCRs 16 and
// 23 are the exception on libtpms, because their changes leave the TPM's
// PCR update counter alone.
func (t *TPM) ReadPCRs(pcrs []int) (map[int][]byte, error) {
	sorted, err := normalizePCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("read PCRs %v: %w", pcrs, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("read PCRs %v: %w", pcrs, ErrClosed)
	}
	return t.readPCRs(sorted)
}

// ExtendPCR measures data into PCR pcr: it extends every allocated PCR bank
// with the digest of data in that bank's hash algorithm, as TPM2_PCR_Event
// does but without its 1024-byte limit. Extending every bank, not only
// SHA-256, keeps another bank from holding values that software could forge.
func (t *TPM) ExtendPCR(pcr int, data []byte) error {
	if pcr < 0 || pcr >= pcrCount {
		return fmt.Errorf("extend PCR %d: PCR number out of range 0..%d", pcr, pcrCount-1)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("extend PCR %d: %w", pcr, ErrClosed)
	}
	return t.extendLocked(pcr, data)
}

// extendLocked is ExtendPCR for a caller that holds t.mu.
func (t *TPM) extendLocked(pcr int, data []byte) error {
	digests := make([]tpm2.TPMTHA, 0, len(t.banks))
	for _, bank := range t.banks {
		hash, err := bank.Hash()
		if err == nil && !hash.Available() {
			err = fmt.Errorf("%v is not linked into the binary", hash)
		}
		if err != nil {
			return fmt.Errorf("extend PCR %d: PCR bank %v uses a hash algorithm this package cannot compute: %w", pcr, bank, err)
		}
		h := hash.New()
		h.Write(data)
		digests = append(digests, tpm2.TPMTHA{HashAlg: bank, Digest: h.Sum(nil)})
	}

	_, err := (tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: digests},
	}).Execute(t.transport)
	if err != nil {
		return fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	return nil
}

// readPCRs reads the SHA-256 values of sorted, a valid PCR list. A TPM
// returns at most eight digests per TPM2_PCR_Read, so the read may take
// several commands. The PCR update counter of each response shows whether a
// PCR changed in between, and then the read starts over.
func (t *TPM) readPCRs(sorted []int) (map[int][]byte, error) {
	for attempt := 1; attempt <= maxPCRReadAttempts; attempt++ {
		values, consistent, err := t.readPCRsOnce(sorted)
		if err != nil {
			return nil, fmt.Errorf("read PCRs %v: %w", sorted, err)
		}
		if consistent {
			return values, nil
		}
		t.logger.Debug("PCRs changed during a read, reading again", "pcrs", sorted, "attempt", attempt)
	}
	return nil, fmt.Errorf("read PCRs %v: PCR values changed during each of %d attempts", sorted, maxPCRReadAttempts)
}

// readPCRsOnce reads the PCRs in as many commands as the TPM needs and
// reports whether the PCR update counter stayed the same across them.
func (t *TPM) readPCRsOnce(sorted []int) (map[int][]byte, bool, error) {
	values := make(map[int][]byte, len(sorted))
	remaining := slices.Clone(sorted)
	var firstCounter uint32
	consistent := true

	for call := 0; len(remaining) > 0; call++ {
		rsp, err := (tpm2.PCRRead{PCRSelectionIn: sha256Selection(remaining)}).Execute(t.transport)
		if err != nil {
			return nil, false, err
		}
		if call == 0 {
			firstCounter = rsp.PCRUpdateCounter
		} else if rsp.PCRUpdateCounter != firstCounter {
			consistent = false
		}

		returned, err := returnedSHA256PCRs(rsp.PCRSelectionOut)
		if err != nil {
			return nil, false, err
		}
		if len(returned) == 0 {
			return nil, false, fmt.Errorf("TPM returned no values for PCRs %v", remaining)
		}
		if len(returned) != len(rsp.PCRValues.Digests) {
			return nil, false, fmt.Errorf("TPM selected %d PCRs but returned %d values", len(returned), len(rsp.PCRValues.Digests))
		}

		for i, pcr := range returned {
			if !slices.Contains(remaining, pcr) {
				return nil, false, fmt.Errorf("TPM returned PCR %d, which was not requested", pcr)
			}
			digest := rsp.PCRValues.Digests[i].Buffer
			if len(digest) != sha256.Size {
				return nil, false, fmt.Errorf("TPM returned %d bytes for SHA-256 PCR %d, expected %d", len(digest), pcr, sha256.Size)
			}
			values[pcr] = bytes.Clone(digest)
		}
		remaining = slices.DeleteFunc(remaining, func(pcr int) bool { return slices.Contains(returned, pcr) })
	}
	return values, consistent, nil
}

// returnedSHA256PCRs returns the PCRs a TPM2_PCR_Read response selected,
// which must all be in the SHA-256 bank.
func returnedSHA256PCRs(selection tpm2.TPMLPCRSelection) ([]int, error) {
	var pcrs []int
	for _, bank := range selection.PCRSelections {
		selected := selectedPCRs(bank.PCRSelect)
		if len(selected) == 0 {
			continue
		}
		if bank.Hash != tpm2.TPMAlgSHA256 {
			return nil, fmt.Errorf("TPM returned PCRs of bank %v, expected only SHA-256", bank.Hash)
		}
		pcrs = append(pcrs, selected...)
	}
	return pcrs, nil
}

// sha256Selection selects sorted PCRs of the SHA-256 bank.
func sha256Selection(sorted []int) tpm2.TPMLPCRSelection {
	numbers := make([]uint, len(sorted))
	for i, pcr := range sorted {
		numbers[i] = uint(pcr)
	}
	return tpm2.TPMLPCRSelection{
		PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash:      tpm2.TPMAlgSHA256,
			PCRSelect: tpm2.PCClientCompatible.PCRs(numbers...),
		}},
	}
}

// selectedPCRs decodes a PCR selection bitmap (bit i of byte j selects PCR
// 8*j+i) into ascending PCR numbers.
func selectedPCRs(bitmap []byte) []int {
	var pcrs []int
	for byteIndex, b := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, byteIndex*8+bit)
			}
		}
	}
	return pcrs
}

// normalizePCRs returns a sorted copy of pcrs after checking that the list
// is non-empty, that each number is in 0..23 and that none repeats.
func normalizePCRs(pcrs []int) ([]int, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("PCR list is empty")
	}
	sorted := slices.Clone(pcrs)
	slices.Sort(sorted)
	for i, pcr := range sorted {
		if pcr < 0 || pcr >= pcrCount {
			return nil, fmt.Errorf("PCR %d out of range 0..%d", pcr, pcrCount-1)
		}
		if i > 0 && sorted[i-1] == pcr {
			return nil, fmt.Errorf("PCR %d listed twice", pcr)
		}
	}
	return sorted, nil
}
