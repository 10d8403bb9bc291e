package storaged

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// ErrOldFormat means that the state directory was written by an older
// Blocktree in a format that this one does not read.
var ErrOldFormat = errors.New("state directory format is too old")

// Wire kinds of the storage daemon.
const (
	KindCheckpoint     wire.Kind = 0x0500
	kindCheckpointBody wire.Kind = 0x0501
)

const (
	checkpointVersion = 1
	checkpointContext = "blocktree checkpoint v1"

	// checkpointBodyVersion is the format of the checkpoint body, which
	// also determines how the blocks it names are laid out. Version 1 named
	// blocks that each held a whole file; version 2 names inode blocks
	// whose file data is in chunk blocks.
	checkpointBodyVersion = 2

	// maxInodes bounds the inode table of one checkpoint when decoding.
	maxInodes = 1 << 28

	maxEngineHeader = 1 << 16
)

// InodeVersion records which block holds an inode and which version of it.
type InodeVersion struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Version uint64
}

// DamagedVersion is an inode that was damaged when the checkpoint was
// written. It stays damaged after a restart: its last good block version
// (Version 0 when it never had one) is kept as evidence but not served.
type DamagedVersion struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Version uint64
	Reason  string
}

// maxReasonLen bounds a damage reason in a checkpoint.
const maxReasonLen = 1024

// Checkpoint is the durable summary of the tree up to journal entry Seq:
// every inode's block and version. Blocks hold the inodes' contents; the
// journal entries after Seq are replayed on top.
type Checkpoint struct {
	Seq     uint64 // last journal entry included
	Counter uint64 // TPM rollback counter value when it was written
	Engine  []byte // the engine's own header (inode counter and the like)
	Inodes  []InodeVersion
	Damaged []DamagedVersion
}

func (c *Checkpoint) marshalBody() []byte {
	e := wire.NewEncoder(kindCheckpointBody, checkpointBodyVersion)
	e.Uint64(c.Seq)
	e.Uint64(c.Counter)
	e.Bytes(c.Engine)
	e.Uint32(uint32(len(c.Inodes)))
	for _, in := range c.Inodes {
		e.Uint64(uint64(in.Ino))
		e.Fixed(in.BlockID[:])
		e.Uint64(in.Version)
	}
	e.Uint32(uint32(len(c.Damaged)))
	for _, dmg := range c.Damaged {
		e.Uint64(uint64(dmg.Ino))
		e.Fixed(dmg.BlockID[:])
		e.Uint64(dmg.Version)
		e.String(dmg.Reason)
	}
	return e.Data()
}

func parseCheckpointBody(data []byte) (*Checkpoint, error) {
	d := wire.NewDecoder(data, kindCheckpointBody, checkpointBodyVersion)
	if v := d.Version(); errors.Is(d.Err(), wire.ErrUnknownVersion) && v < checkpointBodyVersion {
		return nil, fmt.Errorf("checkpoint format %d was written by an older Blocktree, which stored each file as one block; this one reads format %d: copy the files out with the older bt, then start from a new state directory: %w", v, checkpointBodyVersion, ErrOldFormat)
	}
	c := &Checkpoint{Seq: d.Uint64(), Counter: d.Uint64()}
	c.Engine = d.BytesCopy(maxEngineHeader)
	n := d.Count(min(maxInodes, d.Remaining()/48))
	c.Inodes = make([]InodeVersion, 0, n)
	var last fsapi.Ino
	for i := range n {
		in := InodeVersion{Ino: fsapi.Ino(d.Uint64())}
		copy(in.BlockID[:], d.Fixed(32))
		in.Version = d.Uint64()
		if d.Err() == nil && i > 0 && in.Ino <= last {
			d.Fail(fmt.Errorf("inode %d after %d: table not in increasing order: %w", in.Ino, last, wire.ErrInvalid))
		}
		last = in.Ino
		c.Inodes = append(c.Inodes, in)
	}
	n = d.Count(min(maxInodes, d.Remaining()/52))
	last = 0
	for i := range n {
		dmg := DamagedVersion{Ino: fsapi.Ino(d.Uint64())}
		copy(dmg.BlockID[:], d.Fixed(32))
		dmg.Version = d.Uint64()
		dmg.Reason = d.String(maxReasonLen)
		if d.Err() == nil && i > 0 && dmg.Ino <= last {
			d.Fail(fmt.Errorf("damaged inode %d after %d: list not in increasing order: %w", dmg.Ino, last, wire.ErrInvalid))
		}
		last = dmg.Ino
		c.Damaged = append(c.Damaged, dmg)
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	return c, nil
}

// sealCheckpoint encrypts the checkpoint under the journal key, because the
// inode table shows the tree's shape, and signs it with the node's key.
func sealCheckpoint(c *Checkpoint, key []byte, root principal.Principal, cred *principal.Credential) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("seal checkpoint: %w", err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal checkpoint: %w", err)
	}
	e := wire.NewEncoder(KindCheckpoint, checkpointVersion)
	e.Fixed(nonce)
	e.Bytes(aead.Seal(nil, nonce, c.marshalBody(), checkpointAD(root)))
	sig, err := cred.Signing.Sign(checkpointContext, e.Data())
	if err != nil {
		return nil, err
	}
	e.Fixed(sig)
	return e.Data(), nil
}

func checkpointAD(root principal.Principal) []byte {
	return append([]byte(checkpointContext), root[:]...)
}

// openCheckpoint checks the signature with the node's public key and
// decrypts the checkpoint.
func openCheckpoint(data, key []byte, root principal.Principal, signer principal.PublicKey) (*Checkpoint, error) {
	d := wire.NewDecoder(data, KindCheckpoint, checkpointVersion)
	nonce := d.Fixed(chacha20poly1305.NonceSizeX)
	ciphertext := d.Bytes(len(data))
	signedLen := len(data) - d.Remaining()
	sig := d.Fixed(principal.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	if err := signer.Verify(checkpointContext, data[:signedLen], sig); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	body, err := aead.Open(nil, nonce, ciphertext, checkpointAD(root))
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: does not decrypt with this tree's journal key")
	}
	return parseCheckpointBody(body)
}

// writeCheckpoint replaces the checkpoint file atomically. renamed reports
// whether the new file took the old one's name, even when the directory
// sync after that failed: a start may then load either of the two.
func writeCheckpoint(path string, data []byte) (renamed bool, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("write checkpoint: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("write checkpoint: %w", err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return true, fmt.Errorf("write checkpoint: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return true, fmt.Errorf("write checkpoint: %w", err)
	}
	return true, nil
}
