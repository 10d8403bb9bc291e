package principal

import (
	"crypto/elliptic"
	"math/big"
	"testing"
)

func TestVerifyRejectsHighS(t *testing.T) {
	key, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign("test", []byte("message"))
	if err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	if s.Cmp(halfOrder) > 0 {
		t.Fatalf("Sign produced a high s")
	}
	high := append([]byte(nil), sig...)
	new(big.Int).Sub(n, s).FillBytes(high[32:])
	if err := key.Public().Verify("test", []byte("message"), high); err == nil {
		t.Error("Verify accepted the high-s twin of a valid signature")
	}
}
