package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// recoveryKeySize is the entropy of a recovery key in bytes. 256 bits need no
// stretching, so HKDF derives the wrapping key.
const recoveryKeySize = 32

// recoveryChecksumSize bytes of SHA-256 are appended before encoding, so a
// mistyped key is reported as a typo rather than as a wrong key.
const recoveryChecksumSize = 3

// recoveryEncoding is RFC 4648 base32, whose alphabet leaves out 0, 1 and 8,
// the digits most easily read as O, I and B on paper.
var recoveryEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrRecoveryKeyTypo is returned when a recovery key's checksum does not match.
var ErrRecoveryKeyTypo = errors.New("recovery key checksum does not match: check it for typos")

// RecoveryKey is the secret that unwraps the recovery copy of a credential.
// Its String form is what the user writes down.
type RecoveryKey struct {
	raw [recoveryKeySize]byte
}

func newRecoveryKey() (RecoveryKey, error) {
	var k RecoveryKey
	if _, err := rand.Read(k.raw[:]); err != nil {
		return k, fmt.Errorf("generate recovery key: %w", err)
	}
	return k, nil
}

// String returns the key in groups of five characters joined by dashes.
func (k RecoveryKey) String() string {
	sum := sha256.Sum256(k.raw[:])
	text := recoveryEncoding.EncodeToString(append(k.raw[:], sum[:recoveryChecksumSize]...))
	var groups []string
	for len(text) > 5 {
		groups = append(groups, text[:5])
		text = text[5:]
	}
	return strings.Join(append(groups, text), "-")
}

// ParseRecoveryKey reads a recovery key as the user typed it. Case, dashes
// and white space do not matter.
func ParseRecoveryKey(s string) (RecoveryKey, error) {
	var k RecoveryKey
	cleaned := strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
	raw, err := recoveryEncoding.DecodeString(cleaned)
	if err != nil || len(raw) != recoveryKeySize+recoveryChecksumSize {
		return k, fmt.Errorf("recovery key is not %d base32 characters (A-Z, 2-7) in groups of five: check it for typos", recoveryEncoding.EncodedLen(recoveryKeySize+recoveryChecksumSize))
	}
	copy(k.raw[:], raw)
	sum := sha256.Sum256(k.raw[:])
	if string(sum[:recoveryChecksumSize]) != string(raw[recoveryKeySize:]) {
		return RecoveryKey{}, ErrRecoveryKeyTypo
	}
	return k, nil
}
