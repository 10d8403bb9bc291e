package tpm

import (
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// sealingPolicy is the authorization policy of a sealed object. At seal
// time, digest computes the object's authPolicy in software. At unseal time,
// apply runs the same assertions in a policy session, which must end with
// the same policy digest for TPM2_Unseal to succeed.
//
// NOTE: a signed-policy variant would be a second implementation whose
// digest is TPM2_PolicyAuthorize over a signing key's name and a policyRef,
// and whose apply runs the approved PolicyPCR, verifies the signature with
// TPM2_VerifySignature and calls TPM2_PolicyAuthorize with the ticket. It
// lets PCR values change with a signed update instead of a reseal, and its
// blob would carry the approved policy and signature in a new wire version.
type sealingPolicy interface {
	digest() ([]byte, error)
	apply(tpm transport.TPM, session tpm2.Session) error
}

// pcrPolicy is TPM2_PolicyPCR over SHA-256 bank PCRs with expected values.
type pcrPolicy struct {
	pcrs   []int    // sorted and valid
	values [][]byte // SHA-256 values in the order of pcrs
}

// command returns the TPM2_PolicyPCR command without its session handle.
// pcrDigest is SHA-256 over the expected values concatenated in ascending
// PCR order, the order in which the TPM concatenates the selected PCRs.
func (p pcrPolicy) command() tpm2.PolicyPCR {
	h := sha256.New()
	for _, value := range p.values {
		h.Write(value)
	}
	return tpm2.PolicyPCR{
		PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)},
		Pcrs:      sha256Selection(p.pcrs),
	}
}

func (p pcrPolicy) digest() ([]byte, error) {
	calculator, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("compute PCR policy: %w", err)
	}
	if err := p.command().Update(calculator); err != nil {
		return nil, fmt.Errorf("compute PCR policy: %w", err)
	}
	return calculator.Hash().Digest, nil
}

// apply runs PolicyPCR. The TPM rejects it with TPM_RC_VALUE when the PCRs
// no longer hold the expected values.
func (p pcrPolicy) apply(tpm transport.TPM, session tpm2.Session) error {
	cmd := p.command()
	cmd.PolicySession = session.Handle()
	if _, err := cmd.Execute(tpm); err != nil {
		return fmt.Errorf("run TPM2_PolicyPCR on PCRs %v: %w", p.pcrs, err)
	}
	return nil
}
