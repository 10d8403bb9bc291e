package principal

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Size is the number of bytes in a principal.
const Size = sha256.Size

// Principal is the SHA-256 hash of a public signing key's canonical encoding.
type Principal [Size]byte

// prefix starts the printable form. It keeps principals recognizable in
// paths and logs and makes a truncated copy fail to parse.
const prefix = "bt"

// encoding is lowercase base32 without padding: case-insensitive file
// systems and URLs keep it intact and it has no path separators.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// TextLen is the length of a principal's printable form.
var TextLen = len(prefix) + encoding.EncodedLen(Size)

// ErrInvalid is wrapped by every Parse failure.
var ErrInvalid = errors.New("invalid principal")

// String returns the printable form, used in paths, logs and the command line.
func (p Principal) String() string { return prefix + encoding.EncodeToString(p[:]) }

// IsZero reports whether p is the zero value, which names no key.
func (p Principal) IsZero() bool { return p == Principal{} }

// MarshalText implements encoding.TextMarshaler with the printable form.
func (p Principal) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Principal) UnmarshalText(text []byte) error {
	parsed, err := Parse(string(text))
	if err != nil {
		return err
	}
	*p = parsed
	return nil
}

// Parse reads the printable form of a principal.
func Parse(s string) (Principal, error) {
	var p Principal
	if len(s) != TextLen || !strings.HasPrefix(s, prefix) {
		return p, fmt.Errorf("%w %q: expected %q followed by %d base32 characters", ErrInvalid, s, prefix, TextLen-len(prefix))
	}
	raw, err := encoding.DecodeString(s[len(prefix):])
	if err != nil || len(raw) != Size {
		return p, fmt.Errorf("%w %q: not lowercase base32 (a-z, 2-7)", ErrInvalid, s)
	}
	copy(p[:], raw)

	// Base32 has spare bits in the last character; reject any non-canonical
	// spelling so that each principal has exactly one printable form.
	if p.String() != s {
		return Principal{}, fmt.Errorf("%w %q: non-canonical last character", ErrInvalid, s)
	}
	return p, nil
}
