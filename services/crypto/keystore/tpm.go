package keystore

import (
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/tpm"
)

// TPMProtector seals a credential with a TPM to the current values of PCRs.
// The TPM's sealed blob cannot carry the owner, but Load checks the unsealed
// credential against the stored identity, so a blob moved between key
// directories is still rejected.
type TPMProtector struct {
	TPM  *tpm.TPM
	PCRs []int
}

// Method returns "tpm".
func (*TPMProtector) Method() string { return "tpm" }

// Protect seals secret to p.PCRs.
func (p *TPMProtector) Protect(secret []byte, _ principal.Principal) ([]byte, error) {
	blob, err := p.TPM.Seal(secret, p.PCRs)
	if err != nil {
		return nil, err
	}
	return blob.MarshalBinary()
}

// Unprotect unseals a blob made by Protect. It returns *tpm.PCRMismatchError
// or tpm.ErrSRKChanged when the TPM refuses, and the caller can then offer
// recovery.
func (p *TPMProtector) Unprotect(data []byte, _ principal.Principal) ([]byte, error) {
	blob, err := tpm.UnmarshalSealedBlob(data)
	if err != nil {
		return nil, err
	}
	return p.TPM.Unseal(blob)
}
