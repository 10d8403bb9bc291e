package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocktree/blocktree/services/crypto/principal"
)

func TestParsePeersErrorsNameLine(t *testing.T) {
	var p principal.Principal
	p[0] = 1
	good := p.String() + " 10.0.0.2:7420"
	cases := map[string]string{
		"# comment\n\nbtbad 10.0.0.2:1\n": "peers f:3:",
		good + "\n" + good + "\n":         "peers f:2: node " + p.String() + " is listed twice",
		p.String() + " nohost\n":          "peers f:1: address \"nohost\" is not HOST:PORT",
		p.String() + "\n":                 "peers f:1: 1 fields",
	}
	for text, want := range cases {
		_, err := ParsePeers("f", []byte(text))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParsePeers(%q) = %v, expected an error starting with %q", text, err, want)
		}
	}

	peers, err := ParsePeers("f", []byte("  # peers\n"+good+"\n"))
	if err != nil {
		t.Fatalf("ParsePeers: %v", err)
	}
	if peers[p] != "10.0.0.2:7420" || len(peers) != 1 {
		t.Fatalf("ParsePeers = %v", peers)
	}
}

func TestLoadChainsRejectsBadFiles(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	b.grantedBy(a, a.address("echo"))
	chains, err := LoadChains(b.chainsDir())
	if err != nil {
		t.Fatalf("LoadChains: %v", err)
	}
	if c := chains[a.principal()]; len(c) != 1 || c[0].Subject != b.principal() {
		t.Fatalf("LoadChains = %v, expected b's chain under a's root", chains)
	}

	if err := os.WriteFile(filepath.Join(b.chainsDir(), "junk"+ChainSuffix), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadChains(b.chainsDir()); err == nil || !strings.Contains(err.Error(), "junk.chain") {
		t.Fatalf("LoadChains with a junk file = %v, expected an error naming it", err)
	}
}

func TestLoadMissingFilesGivesEmptyTables(t *testing.T) {
	dir := t.TempDir()
	peers, err := LoadPeers(filepath.Join(dir, "peers"))
	if err != nil || len(peers) != 0 {
		t.Errorf("LoadPeers of a missing file = %v, %v; expected an empty table", peers, err)
	}
	chains, err := LoadChains(filepath.Join(dir, "chains"))
	if err != nil || len(chains) != 0 {
		t.Errorf("LoadChains of a missing directory = %v, %v; expected an empty table", chains, err)
	}
}
