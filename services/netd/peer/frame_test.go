package peer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/capability"
)

// largestChain returns a chain of capability.MaxChainDepth links whose
// prefixes all have the maximum length, the largest that ParseChain
// accepts.
func largestChain(t testing.TB) capability.Chain {
	tree := newTestTree(t)
	prefix := tree.space("")
	for len(prefix) < capability.MaxPathLen {
		prefix += "/" + strings.Repeat("x", min(200, capability.MaxPathLen-len(prefix)-1))
	}
	if err := capability.ValidatePath(prefix); err != nil || len(prefix) != capability.MaxPathLen {
		t.Fatalf("prefix of %d bytes: %v", len(prefix), err)
	}

	var chain capability.Chain
	issuer := tree.root
	for range capability.MaxChainDepth {
		subject := newCredential(t)
		chain = append(chain, tree.issue(issuer, subject.Principal(), prefix))
		issuer = subject
	}
	return chain
}

func TestLargestChainFitsFrame(t *testing.T) {
	chain := largestChain(t)
	frame, err := encodeChainFrame(chain)
	if err != nil {
		t.Fatalf("encodeChainFrame of the largest chain: %v", err)
	}
	if len(frame)-frameHeaderSize > maxChainFrame {
		t.Errorf("largest chain encodes to %d bytes, above the frame limit %d", len(frame)-frameHeaderSize, maxChainFrame)
	}

	got, err := readChainFrame(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("readChainFrame of the largest chain: %v", err)
	}
	if len(got) != len(chain) {
		t.Errorf("read %d links, expected %d", len(got), len(chain))
	}
}

func TestReadChainFrameStopsAtFrameEnd(t *testing.T) {
	tree := newTestTree(t)
	_, chain := tree.node()
	frame, err := encodeChainFrame(chain)
	if err != nil {
		t.Fatalf("encodeChainFrame: %v", err)
	}
	r := bytes.NewReader(append(frame, "next frame"...))

	if _, err := readChainFrame(r); err != nil {
		t.Fatalf("readChainFrame: %v", err)
	}
	if r.Len() != len("next frame") {
		t.Errorf("readChainFrame left %d bytes, expected %d", r.Len(), len("next frame"))
	}
}

func TestEncodeChainFrameOfRoot(t *testing.T) {
	frame, err := encodeChainFrame(nil)
	if err != nil {
		t.Fatalf("encodeChainFrame of an empty chain: %v", err)
	}
	chain, err := readChainFrame(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("readChainFrame: %v", err)
	}
	if len(chain) != 0 {
		t.Errorf("read %d links, expected 0", len(chain))
	}
}

// seedFrames returns encoded frames for the fuzz seed corpus.
func seedFrames(t testing.TB) [][]byte {
	tree := newTestTree(t)
	_, oneLink := tree.node()
	admin := newCredential(t)
	node := newCredential(t)
	twoLinks := capability.Chain{
		tree.issue(tree.root, admin.Principal(), capability.RootPath(tree.root.Principal())),
		tree.issue(admin, node.Principal(), tree.space("")),
	}
	var frames [][]byte
	for _, chain := range []capability.Chain{nil, oneLink, twoLinks} {
		frame, err := encodeChainFrame(chain)
		if err != nil {
			t.Fatalf("encodeChainFrame: %v", err)
		}
		frames = append(frames, frame)
	}
	return frames
}
