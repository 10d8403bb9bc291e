package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// File names inside a key directory.
const (
	identityFile = "identity"  // public identity, in the clear
	recoveryFile = "recovery"  // credential wrapped under the recovery key
	sealedPrefix = "protected" // credential protected by a Protector: "protected.tpm", "protected.passphrase"
)

// Protector protects a credential's secret at rest: a TPM sealing it to a
// policy, or a passphrase. Method names the scheme and is part of the file
// name, so Load can tell which protector a directory needs.
type Protector interface {
	Method() string
	Protect(secret []byte, owner principal.Principal) ([]byte, error)
	Unprotect(blob []byte, owner principal.Principal) ([]byte, error)
}

// ErrExists is returned by Create when the directory already holds a credential.
var ErrExists = errors.New("a credential already exists")

// ErrNotFound is returned by Load when the directory holds no credential.
var ErrNotFound = errors.New("no credential found")

// Create generates a new credential, protects it with p and with a new
// recovery key, and writes the key directory dir atomically. The caller shows
// the recovery key to the user once; it is stored nowhere.
func Create(dir string, p Protector) (*principal.Credential, RecoveryKey, error) {
	if _, err := os.Stat(filepath.Join(dir, identityFile)); err == nil {
		return nil, RecoveryKey{}, fmt.Errorf("create credential in %s: %w (use it, or choose another directory)", dir, ErrExists)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, RecoveryKey{}, fmt.Errorf("create credential in %s: directory is not empty (choose an empty or new directory)", dir)
	}

	cred, err := principal.GenerateCredential()
	if err != nil {
		return nil, RecoveryKey{}, err
	}
	recovery, err := newRecoveryKey()
	if err != nil {
		return nil, RecoveryKey{}, err
	}
	files, err := protectAll(cred, p, recovery)
	if err != nil {
		return nil, RecoveryKey{}, err
	}
	if err := writeDirAtomic(dir, files); err != nil {
		return nil, RecoveryKey{}, err
	}
	slog.Info("credential created", "principal", cred.Principal(), "dir", dir, "method", p.Method())
	return cred, recovery, nil
}

// protectAll returns the files of a key directory for cred.
func protectAll(cred *principal.Credential, p Protector, recovery RecoveryKey) (map[string][]byte, error) {
	secret := cred.Secret()
	defer principal.Wipe(secret)
	owner := cred.Principal()

	identity, err := cred.Identity().MarshalBinary()
	if err != nil {
		return nil, err
	}
	protected, err := p.Protect(secret, owner)
	if err != nil {
		return nil, fmt.Errorf("protect credential with %s: %w", p.Method(), err)
	}
	recovered, err := wrap(methodRecoveryKey, recovery.raw[:], secret, owner)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		identityFile:                    identity,
		sealedPrefix + "." + p.Method(): protected,
		recoveryFile:                    recovered,
	}, nil
}

// LoadIdentity reads the public identity of the credential in dir. It needs
// no secret.
func LoadIdentity(dir string) (principal.Identity, error) {
	data, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return principal.Identity{}, fmt.Errorf("load identity from %s: %w (create one with bt keys create)", dir, ErrNotFound)
	}
	if err != nil {
		return principal.Identity{}, fmt.Errorf("load identity: %w", err)
	}
	id, err := principal.ParseIdentity(data)
	if err != nil {
		return principal.Identity{}, fmt.Errorf("load identity from %s: %w", dir, err)
	}
	return id, nil
}

// Method returns the protection method used in dir ("tpm" or "passphrase").
func Method(dir string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, sealedPrefix+".*"))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("key directory %s: found %d protected credential files, expected one: %w", dir, len(matches), ErrNotFound)
	}
	return filepath.Ext(matches[0])[1:], nil
}

// Load unprotects the credential in dir with p. On failure it writes nothing
// and returns the protector's error, such as a TPM's PCR mismatch, so the
// caller can offer recovery.
func Load(dir string, p Protector) (*principal.Credential, error) {
	id, err := LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	name := filepath.Join(dir, sealedPrefix+"."+p.Method())
	blob, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		method, _ := Method(dir)
		return nil, fmt.Errorf("load credential from %s: protected with %q, not %q", dir, method, p.Method())
	}
	if err != nil {
		return nil, fmt.Errorf("load credential: %w", err)
	}
	secret, err := p.Unprotect(blob, id.Principal())
	if err != nil {
		return nil, fmt.Errorf("load credential %s from %s: %w", id.Principal(), dir, err)
	}
	defer principal.Wipe(secret)
	return parseMatching(secret, id)
}

// parseMatching parses a secret and checks it belongs to identity id.
func parseMatching(secret []byte, id principal.Identity) (*principal.Credential, error) {
	cred, err := principal.ParseCredential(secret)
	if err != nil {
		return nil, err
	}
	if cred.Principal() != id.Principal() || !cred.Encryption.Public().Equal(id.Encryption) {
		return nil, fmt.Errorf("credential does not match identity %s", id.Principal())
	}
	return cred, nil
}

// Recover unwraps the recovery copy in dir with key and protects the
// credential again with p, replacing the protected copy atomically. Use it
// when the TPM refuses to unseal or to move a credential to a new protector.
func Recover(dir string, key RecoveryKey, p Protector) (*principal.Credential, error) {
	id, err := LoadIdentity(dir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, recoveryFile))
	if err != nil {
		return nil, fmt.Errorf("recover credential: %w", err)
	}
	secret, err := unwrap(methodRecoveryKey, key.raw[:], data, id.Principal())
	if err != nil {
		return nil, fmt.Errorf("recover credential %s: %w", id.Principal(), err)
	}
	defer principal.Wipe(secret)
	cred, err := parseMatching(secret, id)
	if err != nil {
		return nil, err
	}

	protected, err := p.Protect(secret, id.Principal())
	if err != nil {
		return nil, fmt.Errorf("protect recovered credential with %s: %w", p.Method(), err)
	}
	old, _ := Method(dir)
	newName := sealedPrefix + "." + p.Method()
	if err := writeFileAtomic(dir, newName, protected); err != nil {
		return nil, err
	}
	if old != "" && old != p.Method() {
		if err := os.Remove(filepath.Join(dir, sealedPrefix+"."+old)); err != nil {
			return nil, fmt.Errorf("recover credential: remove old %s copy: %w", old, err)
		}
	}
	slog.Info("credential recovered", "principal", id.Principal(), "dir", dir, "method", p.Method())
	return cred, nil
}
