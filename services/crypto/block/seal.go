package block

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

const blockVersion = 1

// Writer is the principal that seals a block: its keys and its chain of
// writecaps from the tree's root principal. An empty chain means the writer
// is the root.
type Writer struct {
	Credential *principal.Credential
	Chain      capability.Chain
}

// Params describes the block to seal.
type Params struct {
	ID       [32]byte
	Version  uint64
	Path     string // canonical path, "/<root principal>/a/b"
	Metadata []byte // opaque to this package, at most MaxMetadataSize bytes

	// Key is the block key, or nil to draw a new random one. Passing Reader.Key
	// of the previous version keeps the key, so that everyone who knew it,
	// listed in Readers or not, can decrypt this version too.
	Key []byte

	// Readers receive a readcap each. The writer needs one too if it is to
	// open the block again, as AddReader and RemoveReader do.
	Readers []principal.Identity
}

// Seal encrypts data, wraps the block key for every reader, signs the header
// and returns the encoded block.
//
// Seal first checks the writer's chain for the path at the current time, as
// Open does at its expect.Now, so that it never produces a block that
// readers reject for its chain at that time.
func Seal(w Writer, p Params, data []byte) ([]byte, error) {
	if err := checkParams(w, p, data); err != nil {
		return nil, err
	}
	root, err := capability.PathRoot(p.Path)
	if err != nil {
		return nil, fmt.Errorf("seal block %s version %d: %w", formatID(p.ID), p.Version, err)
	}
	writer := w.Credential.Principal()
	if err := w.Chain.Verify(root, writer, p.Path, time.Now()); err != nil {
		return nil, fmt.Errorf("seal block %s version %d: writer %s: %w", formatID(p.ID), p.Version, writer, err)
	}
	return seal(w, p, data)
}

// checkParams validates everything about a seal request except the chain.
func checkParams(w Writer, p Params, data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("seal block %s version %d: "+format, append([]any{formatID(p.ID), p.Version}, args...)...)
	}
	if w.Credential == nil {
		return fail("writer credential is missing")
	}
	if len(p.Path) > MaxPathSize {
		return fail("path is %d bytes, above the maximum %d", len(p.Path), MaxPathSize)
	}
	if err := capability.ValidatePath(p.Path); err != nil {
		return fail("%w", err)
	}
	if len(p.Metadata) > MaxMetadataSize {
		return fail("metadata is %d bytes, above the maximum %d", len(p.Metadata), MaxMetadataSize)
	}
	if p.Key != nil && len(p.Key) != KeySize {
		return fail("key is %d bytes, expected %d (or nil for a new key)", len(p.Key), KeySize)
	}
	if uint64(len(data)) > MaxSize {
		return fail("data is %d bytes, above the maximum %d", len(data), MaxSize)
	}
	if len(p.Readers) == 0 {
		return fail("no readers: nobody could open the block")
	}
	if len(p.Readers) > MaxReaders {
		return fail("%d readers, above the maximum %d", len(p.Readers), MaxReaders)
	}
	return nil
}

// seal is Seal without the chain check.
func seal(w Writer, p Params, data []byte) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("seal block %s version %d: %w", formatID(p.ID), p.Version, err)
	}

	key := p.Key
	if key == nil {
		key = newBlockKey()
		defer principal.Wipe(key)
	}
	keys, err := deriveKeys(p.ID, key)
	if err != nil {
		return fail(err)
	}
	recipients, err := wrapKey(p.ID, key, p.Readers)
	if err != nil {
		return fail(err)
	}

	h := &Header{
		ID:             p.ID,
		Version:        p.Version,
		Size:           uint64(len(data)),
		SectorSize:     SectorSize,
		KeyCommitment:  keys.commitment,
		SealedPath:     sealValue(nil, keys.fields, []byte(p.Path), fieldAD(pathContext, p.ID, p.Version)),
		SealedMetadata: sealValue(nil, keys.fields, p.Metadata, fieldAD(metadataContext, p.ID, p.Version)),
		Recipients:     recipients,
		Writer:         w.Credential.Signing.Public(),
		Chain:          w.Chain,
	}
	chain, err := w.Chain.MarshalBinary()
	if err != nil {
		return fail(fmt.Errorf("encode chain: %w", err))
	}
	if len(chain) > maxChainSize {
		return fail(fmt.Errorf("chain encodes to %d bytes, above the maximum %d", len(chain), maxChainSize))
	}

	// Every header field has its final size before the root and the signature
	// are known, so the sectors can be sealed straight into the output and the
	// header copied in front of them afterwards.
	unsigned, err := h.encodeUnsigned()
	if err != nil {
		return nil, err
	}
	headerLen := len(unsigned.Data()) + principal.SignatureSize
	prefixLen := wire.HeaderSize + 4
	sectors := int(sectorCount(h.Size))
	leavesLen := sectors * HashSize
	out := make([]byte, prefixLen+headerLen+leavesLen+len(data)+sectors*SealOverhead)

	leaves := sealSectors(keys, p.ID, p.Version, data, out[prefixLen+headerLen+leavesLen:])
	for i := range leaves {
		copy(out[prefixLen+headerLen+i*HashSize:], leaves[i][:])
	}
	h.Root = merkleRoot(leaves)

	if unsigned, err = h.encodeUnsigned(); err != nil {
		return nil, err
	}
	signature, err := w.Credential.Signing.Sign(signatureContext, unsigned.Data())
	if err != nil {
		return fail(err)
	}
	unsigned.Fixed(signature)
	prefix := wire.NewEncoder(wire.KindBlock, blockVersion)
	prefix.Bytes(unsigned.Data())
	if len(prefix.Data()) != prefixLen+headerLen {
		// Only a field whose size depends on the root or the signature could
		// cause this, and the header has none.
		return fail(fmt.Errorf("header changed size from %d to %d bytes while sealing", prefixLen+headerLen, len(prefix.Data())))
	}
	copy(out, prefix.Data())
	return out, nil
}

// sealSectors seals data sector by sector into out, which has exactly the
// room for the sealed sectors, and returns their leaf hashes.
func sealSectors(keys *blockKeys, id [32]byte, version uint64, data, out []byte) [][HashSize]byte {
	leaves := make([][HashSize]byte, sectorCount(uint64(len(data))))
	for i := range leaves {
		plain := data[i*SectorSize : min((i+1)*SectorSize, len(data))]
		sealed := out[i*(SectorSize+SealOverhead):][:len(plain)+SealOverhead]
		nonce := sealed[:NonceSize]
		rand.Read(nonce)
		keys.sectors.Seal(sealed[NonceSize:NonceSize], nonce, plain, sectorAD(id, uint32(i), version))
		leaves[i] = leafHash(uint32(i), sealed)
	}
	return leaves
}

// wrapKey wraps key for every reader and returns the recipients in the
// canonical order, increasing by principal.
func wrapKey(id [32]byte, key []byte, readers []principal.Identity) ([]Recipient, error) {
	recipients := make([]Recipient, 0, len(readers))
	for _, reader := range readers {
		if reader.Signing.IsZero() || reader.Encryption == nil {
			return nil, errors.New("wrap block key: reader identity is missing a key")
		}
		readcap, err := capability.WrapKey(id, key, reader)
		if err != nil {
			return nil, fmt.Errorf("wrap block key for %s: %w", reader.Principal(), err)
		}
		recipients = append(recipients, Recipient{Identity: reader, Readcap: readcap})
	}

	slices.SortFunc(recipients, func(a, b Recipient) int {
		return bytes.Compare(a.Readcap.Reader[:], b.Readcap.Reader[:])
	})
	for i := 1; i < len(recipients); i++ {
		if recipients[i].Readcap.Reader == recipients[i-1].Readcap.Reader {
			return nil, fmt.Errorf("wrap block key for %s: %w", recipients[i].Readcap.Reader, ErrDuplicateReader)
		}
	}
	return recipients, nil
}
