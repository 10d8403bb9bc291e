package endpoint

import (
	"bytes"
	"testing"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
)

// FuzzHello feeds arbitrary bytes to the hello decoder, which reads what a
// local dialer sent. A hello that decodes must encode back to the same
// bytes.
func FuzzHello(f *testing.F) {
	none, _ := encodeHello(nil)
	f.Add(none)
	cred, err := principal.GenerateCredential()
	if err != nil {
		f.Fatal(err)
	}
	w, err := capability.Issue(cred.Signing, cred.Principal(), capability.RootPath(cred.Principal()), time.Unix(0, 0), time.Unix(1<<40, 0))
	if err != nil {
		f.Fatal(err)
	}
	withChain, _ := encodeHello(&Origin{Principal: cred.Principal(), Chain: capability.Chain{w}})
	f.Add(withChain)
	empty, _ := encodeHello(&Origin{Principal: cred.Principal()})
	f.Add(empty)
	f.Add([]byte{})
	f.Add([]byte{WireVersion, 2})

	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeHello(b)
		if err != nil {
			return
		}
		again, err := encodeHello(o)
		if err != nil {
			t.Fatalf("decoded hello %x does not encode: %v", b, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %x, which encodes as %x", b, again)
		}
	})
}

// FuzzOpen feeds arbitrary bytes to the open request decoder, which netd
// runs on what a local process sent.
func FuzzOpen(f *testing.F) {
	p := principal.Principal{1, 2, 3}
	f.Add(encodeOpen(openRequest{deadline: 1, address: Service(p, p, "echo").String()}))
	f.Add(encodeOpen(openRequest{address: "/x"}))
	f.Add([]byte{WireVersion})

	f.Fuzz(func(t *testing.T, b []byte) {
		a, deadline, err := DecodeOpen(b)
		if err != nil {
			return
		}
		if again := encodeOpen(openRequest{deadline: deadline, address: a.String()}); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x as %s, which encodes as %x", b, a, again)
		}
	})
}

// FuzzOpenFailed feeds arbitrary bytes to the decoder of netd's open
// failure.
func FuzzOpenFailed(f *testing.F) {
	f.Add(EncodeOpenFailed(CodeUnreachable, "connect: refused"))
	f.Add([]byte{0})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeOpenFailed(b)
		if err != nil {
			return
		}
		if again := EncodeOpenFailed(e.Code, e.Reason); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x, which encodes as %x", b, again)
		}
	})
}

// FuzzPrincipalFile feeds arbitrary bytes to the parser of the run
// directory's node and root files. A file that parses must hold exactly
// the principal's text.
func FuzzPrincipalFile(f *testing.F) {
	cred, err := principal.GenerateCredential()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(cred.Principal().String() + "\n"))
	f.Add([]byte(cred.Principal().String()))
	f.Add([]byte(cred.Principal().String() + "\n\n"))
	f.Add([]byte{})
	f.Add([]byte("bt\n"))

	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePrincipalFile(b)
		if err != nil {
			return
		}
		if text := p.String(); string(b) != text && string(b) != text+"\n" {
			t.Fatalf("parsed %q as %s, expected the principal's text with at most one newline", b, p)
		}
	})
}
