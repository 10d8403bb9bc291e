package peer

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// certificateSignedByOtherKey returns a certificate whose public key is a
// new P-256 key but whose signature is by another key, and the TLS
// certificate that presents it with the matching private key.
func certificateSignedByOtherKey(t testing.TB) (*tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "not self-signed"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, other)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, parseCertificate(t, der)
}

func parseCertificate(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert
}

// selfSignedWith returns a self-signed certificate for an arbitrary key.
func selfSignedWith(t testing.TB, public, private any) *x509.Certificate {
	t.Helper()
	template := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, template, template, public, private)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return parseCertificate(t, der)
}

func TestTLSKeyNamesNodePrincipal(t *testing.T) {
	cred := newCredential(t)
	key, err := tlsKey(cred)
	if err != nil {
		t.Fatalf("tlsKey: %v", err)
	}
	cert, err := newCertificate(key, cred.Principal())
	if err != nil {
		t.Fatalf("newCertificate: %v", err)
	}

	got, err := certificatePrincipal([]*x509.Certificate{parseCertificate(t, cert.Certificate[0])})
	if err != nil {
		t.Fatalf("certificatePrincipal of the node's own certificate: %v", err)
	}
	if got != cred.Principal() {
		t.Errorf("certificate names %s, expected the node %s", got, cred.Principal())
	}
}

func TestCertificatePrincipalRejects(t *testing.T) {
	own, _ := selfSignedCertificate(t)
	ownCert := parseCertificate(t, own.Certificate[0])
	_, notSelfSigned := certificateSignedByOtherKey(t)

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("generate P-384 key: %v", err)
	}
	edPublic, edPrivate, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate Ed25519 key: %v", err)
	}

	cases := []struct {
		name  string
		certs []*x509.Certificate
	}{
		{"no certificate", nil},
		{"two certificates", []*x509.Certificate{ownCert, ownCert}},
		{"signed by another key", []*x509.Certificate{notSelfSigned}},
		{"P-384 key", []*x509.Certificate{selfSignedWith(t, &p384.PublicKey, p384)}},
		{"Ed25519 key", []*x509.Certificate{selfSignedWith(t, edPublic, edPrivate)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := certificatePrincipal(c.certs)
			if !errors.Is(err, ErrCertificate) {
				t.Errorf("certificatePrincipal = %v, expected an error wrapping ErrCertificate", err)
			}
		})
	}
}
