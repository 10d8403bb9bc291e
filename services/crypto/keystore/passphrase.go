package keystore

import (
	"errors"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// MinPassphraseLen is the shortest passphrase Passphrase accepts, in bytes.
const MinPassphraseLen = 12

// Passphrase protects a credential with a passphrase through Argon2id. It is
// for workstations without a TPM.
type Passphrase []byte

// Method returns "passphrase".
func (Passphrase) Method() string { return "passphrase" }

// Protect wraps secret under the passphrase.
func (p Passphrase) Protect(secret []byte, owner principal.Principal) ([]byte, error) {
	if len(p) < MinPassphraseLen {
		return nil, errors.New("passphrase is shorter than 12 characters: choose a longer one")
	}
	return wrap(methodPassphrase, p, secret, owner)
}

// Unprotect unwraps a secret made by Protect with the same passphrase.
func (p Passphrase) Unprotect(blob []byte, owner principal.Principal) ([]byte, error) {
	return unwrap(methodPassphrase, p, blob, owner)
}
