package principal

import (
	"errors"
	"testing"
)

// TestRememberedSignatureBindsEverything checks that a signature that
// verified once, and is remembered, still fails with another message,
// another context, another key or a changed byte.
func TestRememberedSignatureBindsEverything(t *testing.T) {
	signer, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	message := []byte("header of a chunk")
	sig, err := signer.Sign("test context", message)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := signer.Public().Verify("test context", message, sig); err != nil {
			t.Fatalf("Verify of a good signature: %v", err)
		}
	}
	if !seenVerified(verifiedSum(signer.Public(), digest("test context", [][]byte{message}), sig)) {
		t.Fatal("a signature that verified is not remembered")
	}

	changed := append([]byte(nil), sig...)
	changed[10] ^= 1
	cases := []struct {
		name    string
		key     PublicKey
		context string
		message []byte
		sig     []byte
	}{
		{"other message", signer.Public(), "test context", []byte("header of another chunk"), sig},
		{"other context", signer.Public(), "other context", message, sig},
		{"other key", other.Public(), "test context", message, sig},
		{"changed signature", signer.Public(), "test context", message, changed},
	}
	for _, c := range cases {
		for range 2 {
			if err := c.key.Verify(c.context, c.message, c.sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%s: Verify = %v, expected ErrBadSignature", c.name, err)
			}
		}
		if seenVerified(verifiedSum(c.key, digest(c.context, [][]byte{c.message}), c.sig)) {
			t.Errorf("%s: a signature that failed is remembered", c.name)
		}
	}
}

// TestSignatureVerifiesAfresh checks that what SignParts remembers is a
// signature that ECDSA verification accepts, with the remembered set empty.
func TestSignatureVerifiesAfresh(t *testing.T) {
	signer, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		message := []byte{byte(i)}
		sig, err := signer.Sign("test context", message)
		if err != nil {
			t.Fatal(err)
		}
		if !seenVerified(verifiedSum(signer.Public(), digest("test context", [][]byte{message}), sig)) {
			t.Fatal("Sign did not remember its signature")
		}
		verified.Lock()
		verified.sums = nil
		verified.Unlock()
		if err := signer.Public().Verify("test context", message, sig); err != nil {
			t.Fatalf("signature %d does not verify afresh: %v", i, err)
		}
	}
}

// TestVerifiedSetStartsAgainWhenFull fills the remembered set and checks
// that it stays within its bound.
func TestVerifiedSetStartsAgainWhenFull(t *testing.T) {
	for i := range verifiedMax + 10 {
		var sum [32]byte
		sum[0], sum[1], sum[2] = byte(i), byte(i>>8), byte(i>>16)
		rememberVerified(sum)
	}
	verified.Lock()
	n := len(verified.sums)
	verified.Unlock()
	if n > verifiedMax {
		t.Fatalf("the remembered set holds %d signatures, above its bound %d", n, verifiedMax)
	}
}

func BenchmarkVerify(b *testing.B) {
	signer, err := GenerateSigningKey()
	if err != nil {
		b.Fatal(err)
	}
	message := make([]byte, 600)
	sig, err := signer.Sign("bench", message)
	if err != nil {
		b.Fatal(err)
	}
	key := signer.Public()
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			verified.Lock()
			verified.sums = nil
			verified.Unlock()
			if err := key.Verify("bench", message, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("again", func(b *testing.B) {
		for b.Loop() {
			if err := key.Verify("bench", message, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
