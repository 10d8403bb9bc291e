package state

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// KindTree is the wire kind of the tree file.
const KindTree wire.Kind = 0x0400

const (
	treeVersion = 1
	treeContext = "blocktree tree v1"

	maxIdentitySize = 256
)

// Tree describes the tree a node serves.
type Tree struct {
	// Root is the root principal; every path in the tree starts with it.
	Root principal.Principal

	// Node is the public identity of the node that wrote the tree file.
	Node principal.Identity

	// JournalKey encrypts journal records and checkpoints. On disk it is
	// wrapped for the node's encryption key like a block key in a readcap.
	JournalKey []byte
}

// journalKeyID is the pseudo block id the journal key's readcap is bound
// to, so the readcap cannot be confused with one of a real block.
func journalKeyID(root principal.Principal) [32]byte {
	return sha256.Sum256(append([]byte("blocktree journal key\x00"), root[:]...))
}

func newTree(cred *principal.Credential) (*Tree, error) {
	key := make([]byte, capability.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create journal key: %w", err)
	}
	return &Tree{Root: cred.Principal(), Node: cred.Identity(), JournalKey: key}, nil
}

// marshal encodes the tree and signs it with the node's key.
func (t *Tree) marshal(cred *principal.Credential) ([]byte, error) {
	identity, err := t.Node.MarshalBinary()
	if err != nil {
		return nil, err
	}
	readcap, err := capability.WrapKey(journalKeyID(t.Root), t.JournalKey, t.Node)
	if err != nil {
		return nil, err
	}
	wrapped, err := readcap.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e := wire.NewEncoder(KindTree, treeVersion)
	e.Fixed(t.Root[:])
	e.Bytes(identity)
	e.Bytes(wrapped)
	sig, err := cred.Signing.Sign(treeContext, e.Data())
	if err != nil {
		return nil, err
	}
	e.Fixed(sig)
	return e.Data(), nil
}

// parsedTree is a decoded tree file whose journal key is still wrapped.
type parsedTree struct {
	root      principal.Principal
	node      principal.Identity
	readcap   *capability.Readcap
	signed    []byte
	signature []byte
}

func parseTree(data []byte) (*parsedTree, error) {
	d := wire.NewDecoder(data, KindTree, treeVersion)
	root := d.Fixed(principal.Size)
	identity := d.Bytes(maxIdentitySize)
	wrapped := d.Bytes(capability.MaxReadcapSize)
	signedLen := len(data) - d.Remaining()
	sig := d.Fixed(principal.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode tree file: %w", err)
	}
	p := &parsedTree{signed: data[:signedLen], signature: sig}
	copy(p.root[:], root)
	var err error
	if p.node, err = principal.ParseIdentity(identity); err != nil {
		return nil, fmt.Errorf("decode tree file: %w", err)
	}
	if p.readcap, err = capability.ParseReadcap(wrapped); err != nil {
		return nil, fmt.Errorf("decode tree file: %w", err)
	}
	return p, nil
}

// open checks the tree file's signature and unwraps the journal key with the
// node's credential.
func (p *parsedTree) open(cred *principal.Credential) (*Tree, error) {
	if p.node.Principal() != cred.Principal() {
		return nil, fmt.Errorf("tree file was written by node %s, this node is %s", p.node.Principal(), cred.Principal())
	}
	if err := p.node.Signing.Verify(treeContext, p.signed, p.signature); err != nil {
		return nil, fmt.Errorf("tree file: %w", err)
	}
	key, err := p.readcap.Unwrap(journalKeyID(p.root), cred)
	if err != nil {
		return nil, fmt.Errorf("tree file: journal key: %w", err)
	}
	return &Tree{Root: p.root, Node: p.node, JournalKey: key}, nil
}

// ParseTreeFile decodes a tree file without opening it. fsck and the fuzz
// target use it.
func ParseTreeFile(data []byte) (principal.Principal, error) {
	p, err := parseTree(data)
	if err != nil {
		return principal.Principal{}, err
	}
	return p.root, nil
}

// ReadPrincipals returns the tree root and the node principal recorded in
// the tree file of the state directory dir, without unsealing anything, so
// it works while the node runs. The file is decoded, not verified.
func ReadPrincipals(dir string) (root, node principal.Principal, err error) {
	path := filepath.Join(dir, "node", "tree")
	data, err := os.ReadFile(path)
	if err != nil {
		return root, node, fmt.Errorf("read the node's principal: %w: check that %s is a node's state directory", err, dir)
	}
	p, err := parseTree(data)
	if err != nil {
		return root, node, fmt.Errorf("%s: %w", path, err)
	}
	return p.root, p.node.Principal(), nil
}
