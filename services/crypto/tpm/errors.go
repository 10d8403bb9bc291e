package tpm

import (
	"errors"
	"strconv"
	"strings"
)

// ErrSRKChanged is returned by Unseal when the storage root key differs from
// the one the blob was sealed under. The TPM was cleared or replaced, so the
// blob can never be unsealed again: recover the secret another way and seal
// it anew.
var ErrSRKChanged = errors.New("storage root key changed since sealing: the TPM was cleared or replaced, recovery is needed")

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("TPM is closed")

// PCRMismatchError is returned by Unseal when PCRs hold values other than
// the ones the blob was sealed to. Unseal returns it before loading
// anything, and the blob stays valid for the sealed values. Seal returns it,
// wrapped, when a PCR changed while it ran.
type PCRMismatchError struct {
	// PCRs lists the differing PCR numbers in ascending order.
	PCRs []int
}

func (e *PCRMismatchError) Error() string {
	numbers := make([]string, len(e.PCRs))
	for i, pcr := range e.PCRs {
		numbers[i] = strconv.Itoa(pcr)
	}
	verb := "differ"
	if len(e.PCRs) == 1 {
		verb = "differs"
	}
	return "PCR " + strings.Join(numbers, ", ") + " " + verb + " from the sealing policy"
}
