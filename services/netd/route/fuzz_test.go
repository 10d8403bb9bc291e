package route

import (
	"bytes"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

// FuzzReadFrame feeds arbitrary bytes to the link frame reader, which
// reads what a peer node sent. A frame that decodes must encode back to
// the bytes it was read from.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range []Frame{
		{Type: FrameOpen, Circuit: 1, Body: openBody(123, "/bta/dev/btb/svc/echo")},
		{Type: FrameOpened, Circuit: 1},
		{Type: FrameError, Circuit: 2, Body: []byte{3, 'n', 'o'}},
		{Type: FrameMsg, Circuit: 3, Body: msgBody(7, []byte("payload"))},
		{Type: FrameCredit, Circuit: 3, Body: creditBody(4096)},
		{Type: FrameClose, Circuit: 3},
		{Type: FramePing},
	} {
		b := appendFrame(nil, fr)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{FrameVersion, byte(FrameMsg), 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		fr, err := readFrame(r)
		if err != nil {
			return
		}
		read := b[:len(b)-r.Len()]
		if again := appendFrame(nil, fr); !bytes.Equal(again, read) {
			t.Fatalf("decoded %x as %+v, which encodes as %x", read, fr, again)
		}
	})
}

// FuzzParsePeers feeds arbitrary text to the peers file parser. Every
// parsed entry must be a valid principal with a HOST:PORT.
func FuzzParsePeers(f *testing.F) {
	var p principal.Principal
	p[0] = 1
	f.Add([]byte("# peers\n" + p.String() + " 10.0.0.2:7420\n\n"))
	f.Add([]byte(p.String() + " [::1]:7420\n" + p.String() + " 10.0.0.3:1\n"))
	f.Add([]byte("btnotaprincipal host:1\n"))
	f.Add([]byte(p.String() + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		peers, err := ParsePeers("fuzz", data)
		if err != nil {
			if bytes.Contains([]byte(err.Error()), []byte("\n")) {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		for node, addr := range peers {
			if node.IsZero() && addr == "" {
				t.Fatalf("parsed an empty entry")
			}
		}
	})
}
