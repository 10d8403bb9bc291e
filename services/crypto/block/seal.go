package block

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// blockVersion is the version of the block encoding. Version 2 added holes
// and the sector ranges. Version 1 was never stored, so it is not decoded.
const blockVersion = 2

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

	// Cipher seals the sectors. CipherAuto, the zero value, picks the
	// faster one for this CPU. Readers open either.
	Cipher Cipher
}

// Seal encrypts data, wraps the block key for every reader, signs the header
// and returns the encoded block. Sectors of data that are all zeros become
// holes, which the encoding does not store.
//
// Seal first checks the writer's chain for the path at the current time, as
// Open does at its expect.Now, so that it never produces a block that
// readers reject for its chain at that time.
func Seal(w Writer, p Params, data []byte) ([]byte, error) {
	return SealInto(nil, w, p, data)
}

// SealInto is Seal encoding into buf when its capacity suffices, for a
// caller that reuses buffers. It writes every byte of the result, so buf
// need not be zeroed.
func SealInto(buf []byte, w Writer, p Params, data []byte) ([]byte, error) {
	if err := checkParams(w, p, uint64(len(data))); err != nil {
		return nil, err
	}
	if err := checkChain(w, p); err != nil {
		return nil, err
	}
	return seal(buf, w, p, data)
}

// SealSparse is Seal for a block of size bytes whose data the caller supplies
// sector by sector, so that a large sparse file is never held in memory as a
// whole. sectors yields the index and the plaintext of each present sector in
// increasing order of index, and skips the holes. Each plaintext must be
// SectorSize bytes, or the rest of the block for its last sector. A yielded
// sector that is all zeros becomes a hole as well, so SealSparse stores the
// same sectors as Seal of the same plaintext. SealSparse seals each sector
// before it requests the next, so the iterator may reuse one buffer.
//
// SealSparse cannot tell an iterator that stopped early from one that
// reached the end: the sectors it did not yield become holes. An iterator
// whose source fails must record the error, and the caller must then discard
// the block.
func SealSparse(w Writer, p Params, size uint64, sectors iter.Seq2[uint64, []byte]) ([]byte, error) {
	if err := checkParams(w, p, size); err != nil {
		return nil, err
	}
	if err := checkChain(w, p); err != nil {
		return nil, err
	}
	return sealSparse(w, p, size, sectors)
}

// checkParams validates everything about a seal request except the chain.
func checkParams(w Writer, p Params, size uint64) error {
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
	if p.Cipher != CipherAuto && !p.Cipher.valid() {
		return fail("unknown sector cipher %d: use CipherAuto, XChaCha20Poly1305 or AES256GCM", uint8(p.Cipher))
	}
	if p.Key != nil && len(p.Key) != KeySize {
		return fail("key is %d bytes, expected %d (or nil for a new key)", len(p.Key), KeySize)
	}
	if size > MaxSize {
		return fail("data is %d bytes, above the maximum %d", size, MaxSize)
	}
	if len(p.Readers) == 0 {
		return fail("no readers: nobody could open the block")
	}
	if len(p.Readers) > MaxReaders {
		return fail("%d readers, above the maximum %d", len(p.Readers), MaxReaders)
	}
	return nil
}

// checkChain checks the writer's chain for the path at the current time.
func checkChain(w Writer, p Params) error {
	root, err := capability.PathRoot(p.Path)
	if err != nil {
		return fmt.Errorf("seal block %s version %d: %w", formatID(p.ID), p.Version, err)
	}
	writer := w.Credential.Principal()
	if err := w.Chain.Verify(root, writer, p.Path, time.Now()); err != nil {
		return fmt.Errorf("seal block %s version %d: writer %s: %w", formatID(p.ID), p.Version, writer, err)
	}
	return nil
}

// seal is Seal without the chain check. It finds the holes first, which
// fixes the layout, and then seals the present sectors straight into the
// output.
func seal(buf []byte, w Writer, p Params, data []byte) ([]byte, error) {
	key := p.Key
	if key == nil {
		key = newBlockKey()
		defer principal.Wipe(key)
	}
	s, err := newSealer(w, p, key, uint64(len(data)))
	if err != nil {
		return nil, err
	}

	present := newPresence(dataRanges(data))
	overhead := s.keys.cipher.sectorOverhead()
	sealedLen := present.storedBytes(s.header.Size) + present.stored*uint64(overhead)
	out, sectorsStart := s.allocate(buf, present, sealedLen)

	offset := sectorsStart
	for _, r := range present.ranges {
		for i := r.First; i < r.First+r.Count; i++ {
			plain := data[i*SectorSize : min((i+1)*SectorSize, uint64(len(data)))]
			sealed := out[offset : offset+len(plain)+overhead]
			s.sealSector(i, plain, sealed)
			offset += len(sealed)
		}
	}
	return s.finish(out, present, out[sectorsStart:])
}

// sealSparse is SealSparse without the chain check. It cannot know the layout
// before the iterator ends, so it seals into a buffer that grows and copies
// the sealed sectors into the output at the end.
func sealSparse(w Writer, p Params, size uint64, sectors iter.Seq2[uint64, []byte]) ([]byte, error) {
	key := p.Key
	if key == nil {
		key = newBlockKey()
		defer principal.Wipe(key)
	}
	s, err := newSealer(w, p, key, size)
	if err != nil {
		return nil, err
	}

	n := sectorCount(size)
	overhead := s.keys.cipher.sectorOverhead()
	var ranges []SectorRange
	var sealedSectors []byte
	next := uint64(0) // lowest index the iterator may yield next
	for i, plain := range sectors {
		if i >= n {
			return nil, s.fail(fmt.Errorf("sector %d is beyond the %d sectors of a %d-byte block", i, n, size))
		}
		if i < next {
			return nil, s.fail(fmt.Errorf("sector %d yielded after sector %d, expected increasing indexes", i, next-1))
		}
		if length := min(SectorSize, size-i*SectorSize); uint64(len(plain)) != length {
			return nil, s.fail(fmt.Errorf("sector %d has %d bytes, expected %d", i, len(plain), length))
		}
		next = i + 1
		if isZero(plain) {
			continue
		}

		offset := len(sealedSectors)
		sealedSectors = slices.Grow(sealedSectors, len(plain)+overhead)[:offset+len(plain)+overhead]
		s.sealSector(i, plain, sealedSectors[offset:])
		ranges = appendSector(ranges, i)
	}

	present := newPresence(ranges)
	out, sectorsStart := s.allocate(nil, present, uint64(len(sealedSectors)))
	copy(out[sectorsStart:], sealedSectors)
	return s.finish(out, present, out[sectorsStart:])
}

// sealer holds what both ways of sealing share: the derived keys and the
// header, complete but for the root and the signature.
type sealer struct {
	writer    Writer
	params    Params
	keys      *blockKeys
	header    *Header
	headerEnd int // length of the encoding up to the end of the header
}

// newSealer derives the keys from the block key key, wraps it for the
// readers and builds the header of a block of size bytes.
func newSealer(w Writer, p Params, key []byte, size uint64) (*sealer, error) {
	s := &sealer{writer: w, params: p}
	c := sectorCipher(p.Cipher)
	var salt [SaltSize]byte
	if c == AES256GCM {
		rand.Read(salt[:])
	}
	keys, err := deriveKeys(p.ID, key, c, salt)
	if err != nil {
		return nil, s.fail(err)
	}
	recipients, err := wrapKey(p.ID, key, p.Readers)
	if err != nil {
		return nil, s.fail(err)
	}
	s.keys = keys

	s.header = &Header{
		ID:             p.ID,
		Version:        p.Version,
		Size:           size,
		SectorSize:     SectorSize,
		Cipher:         c,
		SectorSalt:     salt,
		KeyCommitment:  keys.commitment,
		SealedPath:     sealValue(nil, keys.fields, []byte(p.Path), fieldAD(pathContext, p.ID, p.Version)),
		SealedMetadata: sealValue(nil, keys.fields, p.Metadata, fieldAD(metadataContext, p.ID, p.Version)),
		Recipients:     recipients,
		Writer:         w.Credential.Signing.Public(),
		Chain:          w.Chain,
	}
	chain, err := w.Chain.MarshalBinary()
	if err != nil {
		return nil, s.fail(fmt.Errorf("encode chain: %w", err))
	}
	if len(chain) > maxChainSize {
		return nil, s.fail(fmt.Errorf("chain encodes to %d bytes, above the maximum %d", len(chain), maxChainSize))
	}

	// Every header field has its final size before the root and the signature
	// are known, so the rest of the block can be written behind the header
	// and the header copied in front of it afterwards.
	unsigned, err := s.header.encodeUnsigned()
	if err != nil {
		return nil, err
	}
	s.headerEnd = wire.HeaderSize + 4 + len(unsigned.Data()) + principal.SignatureSize
	return s, nil
}

func (s *sealer) fail(err error) error {
	return fmt.Errorf("seal block %s version %d: %w", formatID(s.params.ID), s.params.Version, err)
}

// allocate returns the output for a block with the given present sectors,
// whose sealed sectors take sealedLen bytes, with the ranges already
// encoded, and the offset of the first sealed sector in it. The output is
// buf when its capacity suffices. Its other bytes are garbage until finish
// has written the header and the leaf hashes, and the caller every sealed
// sector.
func (s *sealer) allocate(buf []byte, present *presence, sealedLen uint64) ([]byte, int) {
	ranges := encodeRanges(present.ranges)
	leavesStart := s.headerEnd + len(ranges)
	sectorsStart := leavesStart + int(present.stored)*HashSize
	size := sectorsStart + int(sealedLen)
	out := buf[:0]
	if cap(out) < size {
		out = make([]byte, size)
	}
	out = out[:size]
	copy(out[s.headerEnd:], ranges)
	return out, sectorsStart
}

// sealSector seals the plaintext of sector index into sealed, which has room
// for exactly the sealed sector.
func (s *sealer) sealSector(index uint64, plain, sealed []byte) {
	s.keys.sealSector(sealed, uint32(index), plain, sectorAD(s.params.ID, uint32(index), s.params.Version))
}

// finish hashes the sealed sectors, which out contains from its offset
// sectors on, writes the leaf hashes into out, computes the root, signs the
// header and copies it to the front of out.
func (s *sealer) finish(out []byte, present *presence, sectors []byte) ([]byte, error) {
	indexes, sealed := present.split(sectors, s.header.Size, s.keys.cipher.sectorOverhead())
	leaves := make([][HashSize]byte, len(sealed))
	leafHashes(leaves, indexes, sealed)
	leavesStart := s.headerEnd + 4 + len(present.ranges)*rangeSize
	for i := range leaves {
		copy(out[leavesStart+i*HashSize:], leaves[i][:])
	}
	h := s.header
	h.Root = sparseRoot(h.Sectors(), present, leaves)

	unsigned, err := h.encodeUnsigned()
	if err != nil {
		return nil, err
	}
	signature, err := s.writer.Credential.Signing.Sign(signatureContext, unsigned.Data())
	if err != nil {
		return nil, s.fail(err)
	}
	unsigned.Fixed(signature)
	prefix := wire.NewEncoder(wire.KindBlock, blockVersion)
	prefix.Bytes(unsigned.Data())
	if len(prefix.Data()) != s.headerEnd {
		// Only a field whose size depends on the root or the signature could
		// cause this, and the header has none.
		return nil, s.fail(fmt.Errorf("header changed size from %d to %d bytes while sealing", s.headerEnd, len(prefix.Data())))
	}
	copy(out, prefix.Data())
	return out, nil
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
