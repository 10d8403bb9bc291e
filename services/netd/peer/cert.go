package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// ProtocolName is the ALPN protocol ID of a peer link. Both sides require
// it, so a TLS client of another protocol fails in the handshake. A change
// of what is exchanged after the handshake takes a new name.
const ProtocolName = "blocktree-peer/1"

// tlsKey returns the node's signing key in the form crypto/tls signs with.
//
// NOTE: package principal offers no crypto.Signer, so this rebuilds the key
// from its scalar, and the process holds a second copy of the secret for as
// long as a Listener or a Dial uses it.
func tlsKey(cred *principal.Credential) (*ecdsa.PrivateKey, error) {
	scalar := cred.Signing.Bytes()
	defer principal.Wipe(scalar)
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar)
	if err != nil {
		return nil, fmt.Errorf("peer: node signing key: %w", err)
	}

	// The TLS key must name the same principal as the credential, or the
	// peer would check this node's chain against another principal.
	p, err := publicKeyPrincipal(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("peer: node signing key: %w", err)
	}
	if p != cred.Principal() {
		return nil, fmt.Errorf("peer: TLS key names %s, but the node credential is %s", p, cred.Principal())
	}
	return key, nil
}

// publicKeyPrincipal returns the principal of a P-256 public key.
func publicKeyPrincipal(pub *ecdsa.PublicKey) (principal.Principal, error) {
	if pub.Curve != elliptic.P256() {
		return principal.Principal{}, fmt.Errorf("key on curve %s, expected P-256", pub.Curve.Params().Name)
	}
	raw, err := pub.Bytes()
	if err != nil {
		return principal.Principal{}, err
	}
	key, err := principal.ParsePublicKey(raw)
	if err != nil {
		return principal.Principal{}, err
	}
	return key.Principal(), nil
}

// newCertificate makes a self-signed certificate for key. The certificate
// only carries the public key into the handshake: peers ignore its names
// and dates, because the writecap chain sent after the handshake carries
// the authority and its time limits. The dates are set because X.509
// requires them.
func newCertificate(key *ecdsa.PrivateKey, node principal.Principal) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("peer: certificate serial number: %w", err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node.String()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("peer: create TLS certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// certificatePrincipal checks the certificates a peer sent in the TLS
// handshake and returns the principal of the key they carry. There must be
// exactly one certificate, with a P-256 key and a valid signature by that
// same key. The TLS handshake, once complete, has also shown that the peer
// holds the private key.
func certificatePrincipal(certs []*x509.Certificate) (principal.Principal, error) {
	if len(certs) != 1 {
		return principal.Principal{}, fmt.Errorf("%w: %d certificates, expected 1", ErrCertificate, len(certs))
	}
	cert := certs[0]
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return principal.Principal{}, fmt.Errorf("%w: %T key, expected ECDSA P-256", ErrCertificate, cert.PublicKey)
	}
	p, err := publicKeyPrincipal(pub)
	if err != nil {
		return principal.Principal{}, fmt.Errorf("%w: %w", ErrCertificate, err)
	}

	// CheckSignatureFrom would also demand that the certificate be a CA,
	// so check the signature over the to-be-signed part directly.
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return p, fmt.Errorf("%w: not signed by its own key: %w", ErrCertificate, err)
	}
	return p, nil
}
