package bus

import (
	"bytes"
	"testing"
)

// FuzzSetupMessage feeds arbitrary bytes to the setup decoder, which reads
// what a dialer sent. A message that decodes must encode back to the same
// bytes.
func FuzzSetupMessage(f *testing.F) {
	f.Add(encodeSetup(setup{version: Version, ringSize: DefaultRingSize}))
	f.Add(encodeSetup(setup{version: 0xffff, ringSize: 0xffffffff}))
	f.Add([]byte{})
	f.Add([]byte("btbs"))
	f.Add(append(encodeSetup(setup{version: Version, ringSize: 4096}), 0))

	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSetup(b)
		if err != nil {
			return
		}
		if again := encodeSetup(s); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", b, s, again)
		}
		// The listener's check must not panic on any decoded size.
		_ = checkRingSize(uint64(s.ringSize), DefaultMaxRingSize)
	})
}

// FuzzSetupReply feeds arbitrary bytes to the reply decoder, which reads
// what a listener sent.
func FuzzSetupReply(f *testing.F) {
	f.Add(encodeReply(reply{version: Version, status: statusAccepted}))
	f.Add(encodeReply(reply{version: 9, status: statusVersionUnsupported}))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReply(b)
		if err != nil {
			return
		}
		if again := encodeReply(r); !bytes.Equal(again, b) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", b, r, again)
		}
	})
}
