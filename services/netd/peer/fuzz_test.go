package peer

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzReadChainFrame feeds arbitrary bytes to the chain frame reader,
// which reads what a peer sent. A frame that decodes must encode back to
// the bytes it was read from, and errors must not panic.
func FuzzReadChainFrame(f *testing.F) {
	frames := seedFrames(f)
	for _, frame := range frames {
		f.Add(frame)
		f.Add(frame[:len(frame)-1])
		f.Add(append(frame, 0))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add(binary.BigEndian.AppendUint32(nil, 0xffffffff))
	f.Add(binary.BigEndian.AppendUint32(nil, maxChainFrame))
	f.Add(append(binary.BigEndian.AppendUint32(nil, 3), 0, 8, 1))

	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		chain, err := readChainFrame(r)
		if err != nil {
			return
		}
		read := b[:len(b)-r.Len()]
		again, err := encodeChainFrame(chain)
		if err != nil {
			t.Fatalf("decoded %x, which does not encode: %v", read, err)
		}
		if !bytes.Equal(again, read) {
			t.Fatalf("decoded %x, which encodes as %x", read, again)
		}
	})
}

// FuzzCertificatePrincipal feeds arbitrary DER certificates, as a peer
// sends them in the TLS handshake, to the certificate check.
func FuzzCertificatePrincipal(f *testing.F) {
	own, _ := selfSignedCertificate(f)
	f.Add(own.Certificate[0])
	other, _ := certificateSignedByOtherKey(f)
	f.Add(other.Certificate[0])
	f.Add([]byte{0x30, 0x00})

	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		p, err := certificatePrincipal([]*x509.Certificate{cert})
		if err != nil {
			if !errors.Is(err, ErrCertificate) {
				t.Fatalf("certificatePrincipal error %v does not wrap ErrCertificate", err)
			}
			return
		}
		if p.IsZero() {
			t.Fatal("certificatePrincipal accepted a certificate and returned the zero principal")
		}
	})
}
