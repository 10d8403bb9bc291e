package principal_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

const base32Alphabet = "abcdefghijklmnopqrstuvwxyz234567"

func newCredential(t testing.TB) *principal.Credential {
	t.Helper()
	cred, err := principal.GenerateCredential()
	if err != nil {
		t.Fatalf("GenerateCredential: %v", err)
	}
	return cred
}

func TestPrincipalStringRoundTrip(t *testing.T) {
	tests := map[string]principal.Principal{
		"generated": newCredential(t).Principal(),
		"zero":      {},
		"ones":      [principal.Size]byte{0: 0xff, 31: 0xff},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			s := p.String()
			if len(s) != principal.TextLen {
				t.Errorf("String %q has %d characters, expected TextLen %d", s, len(s), principal.TextLen)
			}
			if !strings.HasPrefix(s, "bt") {
				t.Errorf("String %q does not start with \"bt\"", s)
			}

			parsed, err := principal.Parse(s)
			if err != nil {
				t.Fatalf("Parse(%q): %v", s, err)
			}
			if parsed != p {
				t.Errorf("Parse(%q) = %x, expected %x", s, parsed, p)
			}
		})
	}
}

func TestPrincipalTextRoundTrip(t *testing.T) {
	p := newCredential(t).Principal()

	text, err := p.MarshalText()
	if err != nil {
		t.Fatalf("MarshalText: %v", err)
	}
	if string(text) != p.String() {
		t.Errorf("MarshalText = %q, expected String %q", text, p.String())
	}

	var parsed principal.Principal
	if err := parsed.UnmarshalText(text); err != nil {
		t.Fatalf("UnmarshalText(%q): %v", text, err)
	}
	if parsed != p {
		t.Errorf("UnmarshalText(%q) = %x, expected %x", text, parsed, p)
	}
}

func TestUnmarshalTextInvalidKeepsValue(t *testing.T) {
	p := newCredential(t).Principal()
	before := p

	err := p.UnmarshalText([]byte("bt-not-a-principal"))
	if !errors.Is(err, principal.ErrInvalid) {
		t.Errorf("UnmarshalText error = %v, expected ErrInvalid", err)
	}
	if p != before {
		t.Errorf("UnmarshalText changed the principal to %x on failure", p)
	}
}

func TestPrincipalIsZero(t *testing.T) {
	var zero principal.Principal
	if !zero.IsZero() {
		t.Errorf("zero Principal: IsZero = false, expected true")
	}
	if newCredential(t).Principal().IsZero() {
		t.Errorf("generated Principal: IsZero = true, expected false")
	}
}

// withChar returns s with the character at index i replaced by c.
func withChar(s string, i int, c byte) string {
	b := []byte(s)
	b[i] = c
	return string(b)
}

func TestParseRejects(t *testing.T) {
	valid := newCredential(t).Principal().String()
	body := valid[2:]

	tests := map[string]string{
		"empty":         "",
		"prefixOnly":    "bt",
		"noPrefix":      body,
		"wrongPrefix":   "bx" + body,
		"prefixSwapped": "tb" + body,
		"upperPrefix":   "BT" + body,
		"oneShort":      valid[:len(valid)-1],
		"oneLong":       valid + "a",
		// "bt" followed by 52 characters of a valid principal could itself
		// be one (1 in 16 keys), so the extra prefix keeps the whole body.
		"extraPrefix":    "bt" + valid,
		"allUpper":       "bt" + strings.ToUpper(body),
		"oneUpper":       withChar(valid, 10, 'A'),
		"digitZero":      withChar(valid, 10, '0'),
		"digitOne":       withChar(valid, 10, '1'),
		"digitEight":     withChar(valid, 10, '8'),
		"padding":        withChar(valid, len(valid)-1, '='),
		"space":          withChar(valid, 10, ' '),
		"slash":          withChar(valid, 10, '/'),
		"newline":        withChar(valid, 10, '\n'),
		"nonASCII":       withChar(valid, 10, 0xc3),
		"trailingNUL":    valid[:len(valid)-1] + "\x00",
		"pathComponents": "/" + valid[:len(valid)-1],
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := principal.Parse(s)
			if !errors.Is(err, principal.ErrInvalid) {
				t.Fatalf("Parse(%q) error = %v, expected ErrInvalid", s, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Errorf("Parse error %q does not name the value %q", err, s)
			}
			if !p.IsZero() {
				t.Errorf("Parse(%q) returned %x with its error, expected the zero Principal", s, p)
			}
		})
	}
}

func TestParseRejectsNonCanonicalLast(t *testing.T) {
	// 32 bytes are 256 bits and 52 base32 characters carry 260, so the last
	// character has 1 data bit and 4 bits that must be zero. Only 'a' and 'q'
	// can end a principal.
	for _, p := range []principal.Principal{{}, {31: 0xff}, newCredential(t).Principal()} {
		valid := p.String()
		last := strings.IndexByte(base32Alphabet, valid[len(valid)-1])
		if last&0x0f != 0 {
			t.Fatalf("String %q ends in a non-canonical character", valid)
		}

		for value := range len(base32Alphabet) {
			if value&0x0f == 0 {
				continue
			}
			s := withChar(valid, len(valid)-1, base32Alphabet[value])
			_, err := principal.Parse(s)
			if !errors.Is(err, principal.ErrInvalid) {
				t.Errorf("Parse(%q) with last character %q: error %v, expected ErrInvalid", s, base32Alphabet[value], err)
				continue
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", s)) {
				t.Errorf("Parse error %q does not name the value %q", err, s)
			}
		}
	}
}

func TestSignVerify(t *testing.T) {
	key := newCredential(t).Signing
	message := []byte("grant for /bt.../etc")

	sig, err := key.Sign("test context v1", message)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if len(sig) != principal.SignatureSize {
		t.Errorf("signature is %d bytes, expected SignatureSize %d", len(sig), principal.SignatureSize)
	}
	if err := key.Public().Verify("test context v1", message, sig); err != nil {
		t.Errorf("Verify of a fresh signature: %v", err)
	}
}

// TestSignPartsIsSignOfConcatenation checks that a signature over parts
// verifies as one over the joined message and the other way round, and
// that moving bytes between parts keeps it valid.
func TestSignPartsIsSignOfConcatenation(t *testing.T) {
	key := newCredential(t).Signing
	const context = "test context v1"

	sig, err := key.SignParts(context, []byte("head|"), []byte("body"))
	if err != nil {
		t.Fatalf("SignParts: %v", err)
	}
	if err := key.Public().Verify(context, []byte("head|body"), sig); err != nil {
		t.Errorf("Verify of the joined message: %v", err)
	}
	if err := key.Public().VerifyParts(context, sig, []byte("he"), []byte("ad|bo"), nil, []byte("dy")); err != nil {
		t.Errorf("VerifyParts with other boundaries: %v", err)
	}
	if err := key.Public().VerifyParts(context, sig, []byte("head|"), []byte("bodY")); err == nil {
		t.Errorf("VerifyParts accepted a changed part")
	}

	whole, err := key.Sign(context, []byte("head|body"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := key.Public().VerifyParts(context, whole, []byte("head|"), []byte("body")); err != nil {
		t.Errorf("VerifyParts of a Sign signature: %v", err)
	}
}

func TestSignVerifyEmptyMessage(t *testing.T) {
	key := newCredential(t).Signing

	sig, err := key.Sign("", nil)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := key.Public().Verify("", []byte{}, sig); err != nil {
		t.Errorf("Verify of an empty message in the empty context: %v", err)
	}
}

func TestVerifyOtherContext(t *testing.T) {
	key := newCredential(t).Signing
	message := []byte("message")

	sig, err := key.Sign("blocktree writecap v1", message)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	for _, context := range []string{"blocktree readcap v1", "blocktree writecap v2", "", "blocktree writecap v1\x00"} {
		err := key.Public().Verify(context, message, sig)
		if !errors.Is(err, principal.ErrBadSignature) {
			t.Errorf("Verify in context %q of a signature made for %q: error %v, expected ErrBadSignature", context, "blocktree writecap v1", err)
		}
	}
}

func TestVerifyContextBoundary(t *testing.T) {
	// The zero byte after the context keeps "ab" + "c" apart from "a" + "bc".
	key := newCredential(t).Signing

	sig, err := key.Sign("ab", []byte("c"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	err = key.Public().Verify("a", []byte("bc"), sig)
	if !errors.Is(err, principal.ErrBadSignature) {
		t.Errorf("Verify(\"a\", \"bc\") of a signature over (\"ab\", \"c\"): error %v, expected ErrBadSignature", err)
	}
}

func TestVerifyFlippedMessageBit(t *testing.T) {
	key := newCredential(t).Signing
	message := []byte("sixteen byte msg")
	sig, err := key.Sign("test", message)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	for bit := range 8 * len(message) {
		changed := []byte(string(message))
		changed[bit/8] ^= 1 << (bit % 8)
		if err := key.Public().Verify("test", changed, sig); !errors.Is(err, principal.ErrBadSignature) {
			t.Errorf("message bit %d flipped: Verify error %v, expected ErrBadSignature", bit, err)
		}
	}
}

func TestVerifyFlippedSignatureBit(t *testing.T) {
	key := newCredential(t).Signing
	message := []byte("message")
	sig, err := key.Sign("test", message)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	for bit := range 8 * len(sig) {
		changed := []byte(string(sig))
		changed[bit/8] ^= 1 << (bit % 8)
		if err := key.Public().Verify("test", message, changed); !errors.Is(err, principal.ErrBadSignature) {
			t.Errorf("signature bit %d flipped: Verify error %v, expected ErrBadSignature", bit, err)
		}
	}
}

func TestVerifyOtherKey(t *testing.T) {
	signer := newCredential(t).Signing
	other := newCredential(t).Signing.Public()

	sig, err := signer.Sign("test", []byte("message"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := other.Verify("test", []byte("message"), sig); !errors.Is(err, principal.ErrBadSignature) {
		t.Errorf("Verify with another key: error %v, expected ErrBadSignature", err)
	}
}

func TestVerifyWrongSignatureSize(t *testing.T) {
	key := newCredential(t).Signing
	sig, err := key.Sign("test", []byte("message"))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}

	tests := map[string][]byte{
		"nil":      nil,
		"oneShort": sig[:len(sig)-1],
		"oneLong":  append([]byte(string(sig)), 0),
		"zeros":    make([]byte, principal.SignatureSize),
	}
	for name, bad := range tests {
		err := key.Public().Verify("test", []byte("message"), bad)
		if !errors.Is(err, principal.ErrBadSignature) {
			t.Errorf("%s signature (%d bytes): Verify error %v, expected ErrBadSignature", name, len(bad), err)
		}
	}
}

func TestVerifyZeroPublicKey(t *testing.T) {
	var zero principal.PublicKey
	err := zero.Verify("test", []byte("message"), make([]byte, principal.SignatureSize))
	if !errors.Is(err, principal.ErrBadSignature) {
		t.Errorf("Verify with the zero PublicKey: error %v, expected ErrBadSignature", err)
	}
}

func TestPublicKeyRoundTrip(t *testing.T) {
	key := newCredential(t).Signing.Public()
	encoded := key.Bytes()

	if len(encoded) != principal.PublicKeySize {
		t.Errorf("Bytes is %d bytes, expected PublicKeySize %d", len(encoded), principal.PublicKeySize)
	}
	parsed, err := principal.ParsePublicKey(encoded)
	if err != nil {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	if !parsed.Equal(key) {
		t.Errorf("ParsePublicKey(Bytes()) is not Equal to the original key")
	}
	if parsed.Principal() != key.Principal() {
		t.Errorf("parsed key has principal %s, expected %s", parsed.Principal(), key.Principal())
	}
}

func TestPublicKeyPrincipalIsHash(t *testing.T) {
	key := newCredential(t).Signing.Public()

	want := principal.Principal(sha256.Sum256(key.Bytes()))
	if key.Principal() != want {
		t.Errorf("Principal = %s, expected SHA-256 of the encoded key %s", key.Principal(), want)
	}
}

func TestPublicKeyEqual(t *testing.T) {
	a := newCredential(t).Signing.Public()
	b := newCredential(t).Signing.Public()
	var zero principal.PublicKey

	if !a.Equal(a) {
		t.Errorf("key is not Equal to itself")
	}
	if a.Equal(b) {
		t.Errorf("two generated keys are Equal")
	}
	if zero.Equal(zero) {
		t.Errorf("zero PublicKey is Equal to itself, expected false because it holds no key")
	}
	if !zero.IsZero() {
		t.Errorf("zero PublicKey: IsZero = false, expected true")
	}
	if a.IsZero() {
		t.Errorf("generated key: IsZero = true, expected false")
	}
}

// p256Prime is the field modulus of P-256, big-endian.
var p256Prime = []byte{
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// offCurvePoint returns the uncompressed encoding of (1, 1), which is not on
// P-256 because 1 != 1 - 3 + b.
func offCurvePoint() []byte {
	point := make([]byte, principal.PublicKeySize)
	point[0] = 4
	point[32] = 1
	point[64] = 1
	return point
}

func TestParsePublicKeyRejects(t *testing.T) {
	valid := newCredential(t).Signing.Public().Bytes()

	compressed := append([]byte{2 + valid[64]&1}, valid[1:33]...)
	wrongTag := append([]byte(nil), valid...)
	wrongTag[0] = 5
	xNotReduced := append(append([]byte{4}, p256Prime...), valid[33:]...)

	tests := map[string][]byte{
		"empty":       nil,
		"infinity":    {0},
		"offCurve":    offCurvePoint(),
		"compressed":  compressed,
		"wrongTag":    wrongTag,
		"oneShort":    valid[:len(valid)-1],
		"oneLong":     append(append([]byte(nil), valid...), 0),
		"xNotReduced": xNotReduced,
	}
	for name, b := range tests {
		if _, err := principal.ParsePublicKey(b); err == nil {
			t.Errorf("ParsePublicKey(%s, %x) = nil error, expected a rejection", name, b)
		}
	}
}

func TestSigningKeyRoundTrip(t *testing.T) {
	key := newCredential(t).Signing
	encoded := key.Bytes()

	if len(encoded) != principal.PrivateKeySize {
		t.Errorf("Bytes is %d bytes, expected PrivateKeySize %d", len(encoded), principal.PrivateKeySize)
	}
	parsed, err := principal.ParseSigningKey(encoded)
	if err != nil {
		t.Fatalf("ParseSigningKey: %v", err)
	}
	if parsed.Principal() != key.Principal() {
		t.Errorf("parsed signing key has principal %s, expected %s", parsed.Principal(), key.Principal())
	}

	sig, err := parsed.Sign("test", []byte("message"))
	if err != nil {
		t.Fatalf("Sign with the parsed key: %v", err)
	}
	if err := key.Public().Verify("test", []byte("message"), sig); err != nil {
		t.Errorf("Verify with the original public key of a signature by the parsed key: %v", err)
	}
}

func TestParseSigningKeyRejects(t *testing.T) {
	tests := map[string][]byte{
		"empty":    nil,
		"zero":     make([]byte, principal.PrivateKeySize),
		"allOnes":  []byte(strings.Repeat("\xff", principal.PrivateKeySize)), // above the group order
		"oneShort": make([]byte, principal.PrivateKeySize-1),
	}
	for name, b := range tests {
		if _, err := principal.ParseSigningKey(b); err == nil {
			t.Errorf("ParseSigningKey(%s) = nil error, expected a rejection", name)
		}
		if _, err := principal.ParseEncryptionKey(b); err == nil {
			t.Errorf("ParseEncryptionKey(%s) = nil error, expected a rejection", name)
		}
	}
}

func TestEncryptionKeyECDH(t *testing.T) {
	a := newCredential(t).Encryption
	b := newCredential(t).Encryption

	ab, err := a.ECDH(b.Public())
	if err != nil {
		t.Fatalf("a.ECDH(b): %v", err)
	}
	ba, err := b.ECDH(a.Public())
	if err != nil {
		t.Fatalf("b.ECDH(a): %v", err)
	}
	if string(ab) != string(ba) {
		t.Errorf("shared secrets differ: %x and %x", ab, ba)
	}

	parsed, err := principal.ParseEncryptionKey(a.Bytes())
	if err != nil {
		t.Fatalf("ParseEncryptionKey: %v", err)
	}
	if !parsed.Public().Equal(a.Public()) {
		t.Errorf("ParseEncryptionKey(Bytes()) has another public key")
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	cred := newCredential(t)
	id := cred.Identity()

	data, err := id.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	if len(data) != wire.HeaderSize+2*principal.PublicKeySize {
		t.Errorf("encoding is %d bytes, expected header and two points, %d", len(data), wire.HeaderSize+2*principal.PublicKeySize)
	}

	parsed, err := principal.ParseIdentity(data)
	if err != nil {
		t.Fatalf("ParseIdentity: %v", err)
	}
	if !parsed.Signing.Equal(id.Signing) {
		t.Errorf("parsed signing key differs from the original")
	}
	if !parsed.Encryption.Equal(id.Encryption) {
		t.Errorf("parsed encryption key differs from the original")
	}
	if parsed.Principal() != cred.Principal() {
		t.Errorf("parsed Principal = %s, expected %s", parsed.Principal(), cred.Principal())
	}

	again, err := parsed.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of the parsed identity: %v", err)
	}
	if string(again) != string(data) {
		t.Errorf("re-encoding = %x, expected the original %x", again, data)
	}
}

func TestIdentityMarshalMissingKey(t *testing.T) {
	cred := newCredential(t)

	tests := map[string]principal.Identity{
		"zero":         {},
		"noSigning":    {Encryption: cred.Encryption.Public()},
		"noEncryption": {Signing: cred.Signing.Public()},
	}
	for name, id := range tests {
		if _, err := id.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary of identity %s = nil error, expected a rejection", name)
		}
	}
}

func encodedIdentity(t testing.TB) []byte {
	t.Helper()
	data, err := newCredential(t).Identity().MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return data
}

func TestParseIdentityOffCurve(t *testing.T) {
	valid := encodedIdentity(t)
	signingAt := wire.HeaderSize
	encryptionAt := wire.HeaderSize + principal.PublicKeySize

	for name, at := range map[string]int{"signing": signingAt, "encryption": encryptionAt} {
		data := append([]byte(nil), valid...)
		copy(data[at:], offCurvePoint())

		if _, err := principal.ParseIdentity(data); err == nil {
			t.Errorf("ParseIdentity with an off-curve %s key = nil error, expected a rejection", name)
		}
	}
}

func TestParseIdentityNonReducedPoint(t *testing.T) {
	valid := encodedIdentity(t)

	for name, at := range map[string]int{"signing": wire.HeaderSize, "encryption": wire.HeaderSize + principal.PublicKeySize} {
		data := append([]byte(nil), valid...)
		copy(data[at+1:], p256Prime)

		if _, err := principal.ParseIdentity(data); err == nil {
			t.Errorf("ParseIdentity with the %s key's x equal to the field prime = nil error, expected a rejection", name)
		}
	}
}

func TestParseIdentityTrailing(t *testing.T) {
	data := append(encodedIdentity(t), 0)

	_, err := principal.ParseIdentity(data)
	if !errors.Is(err, wire.ErrTrailing) {
		t.Errorf("ParseIdentity with a trailing byte: error %v, expected ErrTrailing", err)
	}
}

func TestParseIdentityTruncated(t *testing.T) {
	data := encodedIdentity(t)

	for cut := range len(data) {
		_, err := principal.ParseIdentity(data[:cut])
		if !errors.Is(err, wire.ErrTruncated) {
			t.Errorf("ParseIdentity of the first %d of %d bytes: error %v, expected ErrTruncated", cut, len(data), err)
		}
	}
}

func TestParseIdentityHeader(t *testing.T) {
	valid := encodedIdentity(t)

	wrongKind := append([]byte(nil), valid...)
	wrongKind[1] = 0x01 // the writecap kind
	if _, err := principal.ParseIdentity(wrongKind); !errors.Is(err, wire.ErrWrongKind) {
		t.Errorf("ParseIdentity of another kind: error %v, expected ErrWrongKind", err)
	}

	unknownVersion := append([]byte(nil), valid...)
	unknownVersion[2] = 2
	if _, err := principal.ParseIdentity(unknownVersion); !errors.Is(err, wire.ErrUnknownVersion) {
		t.Errorf("ParseIdentity of version 2: error %v, expected ErrUnknownVersion", err)
	}
}

func TestCredentialSecretRoundTrip(t *testing.T) {
	cred := newCredential(t)

	secret := cred.Secret()
	if len(secret) != principal.SecretSize {
		t.Errorf("Secret is %d bytes, expected SecretSize %d", len(secret), principal.SecretSize)
	}

	parsed, err := principal.ParseCredential(secret)
	if err != nil {
		t.Fatalf("ParseCredential: %v", err)
	}
	if parsed.Principal() != cred.Principal() {
		t.Errorf("parsed Principal = %s, expected %s", parsed.Principal(), cred.Principal())
	}
	if !parsed.Identity().Encryption.Equal(cred.Identity().Encryption) {
		t.Errorf("parsed encryption key differs from the original")
	}
	if string(parsed.Secret()) != string(secret) {
		t.Errorf("Secret of the parsed credential differs from the original")
	}
}

func TestParseCredentialWrongLength(t *testing.T) {
	secret := newCredential(t).Secret()

	for _, n := range []int{0, principal.PrivateKeySize, principal.SecretSize - 1, principal.SecretSize + 1} {
		b := make([]byte, n)
		copy(b, secret)

		_, err := principal.ParseCredential(b)
		if err == nil {
			t.Errorf("ParseCredential of %d bytes = nil error, expected a rejection", n)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%d bytes", n)) {
			t.Errorf("ParseCredential error %q does not name the length %d", err, n)
		}
	}
}

func TestParseCredentialZeroScalar(t *testing.T) {
	secret := newCredential(t).Secret()

	zeroSigning := append(make([]byte, principal.PrivateKeySize), secret[principal.PrivateKeySize:]...)
	if _, err := principal.ParseCredential(zeroSigning); err == nil {
		t.Errorf("ParseCredential with a zero signing scalar = nil error, expected a rejection")
	}

	zeroEncryption := append(append([]byte(nil), secret[:principal.PrivateKeySize]...), make([]byte, principal.PrivateKeySize)...)
	if _, err := principal.ParseCredential(zeroEncryption); err == nil {
		t.Errorf("ParseCredential with a zero encryption scalar = nil error, expected a rejection")
	}
}

func TestWipe(t *testing.T) {
	secret := newCredential(t).Secret()

	principal.Wipe(secret)
	for i, b := range secret {
		if b != 0 {
			t.Fatalf("byte %d = %#x after Wipe, expected 0", i, b)
		}
	}
}

func FuzzParsePrincipal(f *testing.F) {
	valid := newCredential(f).Principal().String()
	f.Add(valid)
	f.Add(principal.Principal{}.String())
	f.Add(valid[:len(valid)-1] + "b") // non-canonical last character
	f.Add(strings.ToUpper(valid))
	f.Add("bt")
	f.Add("")
	f.Add(valid + "a")

	f.Fuzz(func(t *testing.T, s string) {
		p, err := principal.Parse(s)
		if err != nil {
			if !errors.Is(err, principal.ErrInvalid) {
				t.Errorf("Parse(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if p.String() != s {
			t.Errorf("accepted %q prints as %q", s, p.String())
		}
	})
}

func FuzzParseIdentity(f *testing.F) {
	valid := encodedIdentity(f)
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(append([]byte(nil), valid...), 0))
	offCurve := append([]byte(nil), valid...)
	copy(offCurve[wire.HeaderSize:], offCurvePoint())
	f.Add(offCurve)
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x05, 0x01})

	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := principal.ParseIdentity(data)
		if err != nil {
			return
		}
		again, err := id.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted identity %x does not encode: %v", data, err)
		}
		if string(again) != string(data) {
			t.Errorf("accepted identity %x re-encodes as %x", data, again)
		}
	})
}
