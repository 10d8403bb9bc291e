package block

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blocktree/blocktree/services/crypto/capability"
	"github.com/blocktree/blocktree/services/crypto/principal"
	"github.com/blocktree/blocktree/services/crypto/wire"
)

// Expect is the caller's expectation of a block: its tree, id and minimum
// version, and the time at which the writer's chain must be valid.
type Expect struct {
	Root       principal.Principal // root principal of the tree the block belongs to
	ID         [32]byte
	MinVersion uint64    // lowest version accepted, to detect rollback
	Now        time.Time // time at which the writer's chain must be valid; zero means time.Now()

	// Private promises that nothing changes encoded while the Reader is in
	// use, such as a buffer that only the caller holds. Reads then hash and
	// decrypt each sealed sector where it is, instead of copying it first
	// so that the bytes checked are the bytes decrypted.
	Private bool
}

// Reader gives access to the plaintext of an opened block. It is safe for
// concurrent use. It keeps the encoded slice passed to Open and checks each
// sector again on every read (see Expect.Private).
type Reader struct {
	header   *Header
	key      []byte
	keys     *blockKeys
	path     string
	metadata []byte
	present  *presence        // a copy, checked against the signed root
	leaves   [][HashSize]byte // of the present sectors, a copy, checked against the signed root
	sectors  []byte           // the sealed present sectors, aliasing the caller's slice
	private  bool             // Expect.Private
}

// layout is an encoded block split into its parts. Only the structure has
// been checked.
type layout struct {
	header  *Header
	signed  []byte // the header bytes that the signature covers
	present *presence
	leaves  [][HashSize]byte
	sectors []byte
}

// decodeBlock splits encoded into header, sector ranges, leaf hashes and
// sealed sectors and checks that their sizes agree with the header. Errors
// carry id, or the header's id if id is zero.
func decodeBlock(encoded []byte, id [32]byte) (*layout, error) {
	d := wire.NewDecoder(encoded, wire.KindBlock, blockVersion)
	headerBytes := d.Bytes(maxHeaderSize)
	if err := d.Err(); err != nil {
		return nil, headerError(id, "decode block", err)
	}
	h, signed, err := parseHeader(headerBytes)
	if err != nil {
		return nil, headerError(id, "decode header", err)
	}
	if id == ([32]byte{}) {
		id = h.ID
	}

	ranges, err := decodeRanges(d, h.Sectors())
	if err != nil {
		return nil, headerError(id, "decode block", err)
	}
	present := newPresence(ranges)

	// The stored bytes are at most MaxSize and the present sectors at most
	// MaxSectors, so this sum cannot overflow a uint64.
	storedBytes := present.storedBytes(h.Size)
	sealedBytes := storedBytes + present.stored*uint64(h.Cipher.sectorOverhead())
	want := present.stored*HashSize + sealedBytes
	if have := uint64(d.Remaining()); have != want {
		cause := wire.ErrTruncated
		if have > want {
			cause = wire.ErrTrailing
		}
		return nil, headerError(id, fmt.Sprintf("%d bytes follow the sector ranges, expected %d for %d present sectors of %d",
			have, want, present.stored, h.Sectors()), cause)
	}

	// From here every length fits in an int, because it is at most len(encoded).
	rawLeaves := d.Fixed(int(present.stored * HashSize))
	l := &layout{
		header:  h,
		signed:  signed,
		present: present,
		leaves:  make([][HashSize]byte, present.stored),
		sectors: d.Fixed(int(sealedBytes)),
	}
	if err := d.Finish(); err != nil {
		return nil, headerError(id, "decode block", err)
	}
	for i := range l.leaves {
		copy(l.leaves[i][:], rawLeaves[i*HashSize:])
	}
	return l, nil
}

// checkSignature verifies the writer's signature over the header.
func (l *layout) checkSignature(id [32]byte) error {
	if err := l.header.Writer.Verify(signatureContext, l.signed, l.header.Signature); err != nil {
		return headerError(id, "writer's signature over the header does not verify", err)
	}
	return nil
}

// checkLeaves compares the Merkle root of the stored leaf hashes and the
// holes between the sector ranges with the signed root. It is the check that
// makes the holes trustworthy: a hole has no sector and no stored leaf, and
// only the root binds it.
func (l *layout) checkLeaves(id [32]byte) error {
	if sparseRoot(l.header.Sectors(), l.present, l.leaves) != l.header.Root {
		return headerError(id, "sector ranges and leaf hashes do not match the signed Merkle root", nil)
	}
	return nil
}

// Open verifies an encoded block and unwraps reader's readcap. It checks the
// layout, the writer's signature, the id and the version against
// expect.MinVersion (*RollbackError). Then it checks the leaf hashes against
// the signed root, unwraps the readcap (ErrNoReadcap if there is none) and
// checks the key commitment. Last it decrypts the path and metadata and
// checks the writer's chain for the path at expect.Now.
//
// Damage and forgery give an error that matches ErrIntegrity. Chain errors
// are returned wrapped, so errors.Is matches capability.ErrExpired and the
// others.
//
// Sectors are checked when they are read. The Reader keeps encoded, so a
// later change to it makes reads of the changed sectors fail with
// ErrIntegrity.
//
// NOTE: the block carries no trusted time of writing, so the chain is checked
// at expect.Now: once a writer's grant expires, its blocks no longer open
// unless the caller passes an earlier time, such as when it stored the block.
func Open(encoded []byte, reader *principal.Credential, expect Expect) (*Reader, error) {
	if reader == nil {
		return nil, fmt.Errorf("open block %s: reader credential is missing", formatID(expect.ID))
	}
	if expect.Root.IsZero() {
		return nil, fmt.Errorf("open block %s: expected root principal is missing", formatID(expect.ID))
	}
	return open(encoded, reader, expect, false)
}

// open is Open. With rewrite set, it takes the id and the root principal from
// the block itself, for AddReader and RemoveReader, which have no Expect.
func open(encoded []byte, reader *principal.Credential, expect Expect, rewrite bool) (*Reader, error) {
	now := expect.Now
	if now.IsZero() {
		now = time.Now()
	}

	l, err := decodeBlock(encoded, expect.ID)
	if err != nil {
		return nil, err
	}
	h := l.header
	id := expect.ID
	if rewrite {
		id = h.ID
	}
	if err := l.checkSignature(id); err != nil {
		return nil, err
	}
	if h.ID != id {
		return nil, headerError(id, fmt.Sprintf("header belongs to block %s", formatID(h.ID)), nil)
	}
	if h.Version < expect.MinVersion {
		return nil, &RollbackError{ID: id, Have: h.Version, Want: expect.MinVersion}
	}
	if err := l.checkLeaves(id); err != nil {
		return nil, err
	}

	key, err := unwrapKey(h, reader)
	if err != nil {
		return nil, err
	}
	keys, err := deriveKeys(h.ID, key, h.Cipher, h.SectorSalt)
	if err != nil {
		return nil, fmt.Errorf("open block %s version %d: %w", formatID(id), h.Version, err)
	}
	if keys.commitment != h.KeyCommitment {
		return nil, headerError(id, "unwrapped block key does not match the key commitment", nil)
	}

	path, err := openValue(nil, keys.fields, h.SealedPath, fieldAD(pathContext, h.ID, h.Version))
	if err != nil {
		return nil, headerError(id, "sealed path does not decrypt", err)
	}
	metadata, err := openValue(nil, keys.fields, h.SealedMetadata, fieldAD(metadataContext, h.ID, h.Version))
	if err != nil {
		return nil, headerError(id, "sealed metadata does not decrypt", err)
	}
	// The path is confidential, so these errors leave out the path and the
	// cause, which would quote it.
	if capability.ValidatePath(string(path)) != nil {
		return nil, headerError(id, "sealed path is not a valid path", nil)
	}
	root := expect.Root
	if rewrite {
		if root, err = capability.PathRoot(string(path)); err != nil {
			return nil, headerError(id, "sealed path has no valid root principal", nil)
		}
	}

	writer := h.Writer.Principal()
	if err := h.Chain.Verify(root, writer, string(path), now); err != nil {
		return nil, fmt.Errorf("open block %s version %d: writer %s: %w", formatID(id), h.Version, writer, redactPath(err, string(path)))
	}

	return &Reader{
		header:   h,
		key:      key,
		keys:     keys,
		path:     string(path),
		metadata: metadata,
		present:  l.present,
		leaves:   l.leaves,
		sectors:  l.sectors,
		private:  expect.Private,
	}, nil
}

// unwrapKey finds the reader's readcap and unwraps the block key.
func unwrapKey(h *Header, reader *principal.Credential) ([]byte, error) {
	self := reader.Principal()
	for _, r := range h.Recipients {
		if r.Readcap.Reader != self {
			continue
		}
		if !r.Identity.Encryption.Equal(reader.Encryption.Public()) {
			return nil, fmt.Errorf("open block %s version %d: readcap for %s is wrapped for another encryption key than the credential's",
				formatID(h.ID), h.Version, self)
		}
		key, err := r.Readcap.Unwrap(h.ID, reader)
		if err != nil {
			return nil, headerError(h.ID, fmt.Sprintf("readcap for %s does not unwrap", self), err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("open block %s version %d: reader %s: %w", formatID(h.ID), h.Version, self, ErrNoReadcap)
}

// ID returns the block id.
func (r *Reader) ID() [32]byte { return r.header.ID }

// Version returns the block version.
func (r *Reader) Version() uint64 { return r.header.Version }

// Size returns the plaintext size in bytes.
func (r *Reader) Size() int64 { return int64(r.header.Size) }

// Path returns the decrypted path.
func (r *Reader) Path() string { return r.path }

// Metadata returns a copy of the decrypted metadata.
func (r *Reader) Metadata() []byte { return append([]byte(nil), r.metadata...) }

// Writer returns the public signing key of the writer of this version.
func (r *Reader) Writer() principal.PublicKey { return r.header.Writer }

// Readers returns the identities that hold a readcap, for sealing the next
// version to the same readers.
func (r *Reader) Readers() []principal.Identity {
	readers := make([]principal.Identity, len(r.header.Recipients))
	for i, recipient := range r.header.Recipients {
		readers[i] = recipient.Identity
	}
	return readers
}

// Header returns the verified header. The caller must not modify it.
func (r *Reader) Header() *Header { return r.header }

// Key returns a copy of the block key, for sealing the next version with
// Params.Key. The caller should wipe it with principal.Wipe after use.
func (r *Reader) Key() []byte { return append([]byte(nil), r.key...) }

// ReadAt implements io.ReaderAt. It checks each present sector it touches
// against its leaf hash and its AEAD tag before it copies any byte of it, and
// returns zeros for holes. On an error, n counts only bytes of sectors that
// passed both checks and of holes.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read block %s at offset %d: negative offset", formatID(r.header.ID), off)
	}
	size := r.Size()
	if off >= size {
		return 0, io.EOF
	}
	want := p
	if int64(len(p)) > size-off {
		want = p[:size-off]
	}

	var sealed []byte // scratch for each sealed sector, unless r.private
	if !r.private {
		sealed = make([]byte, SectorSize+r.keys.cipher.sectorOverhead())
	}
	checkedFrom, checkedTo := r.checkWholeSectors(off, len(want))
	var plain []byte
	n := 0
	for n < len(want) {
		pos := off + int64(n)
		index := uint64(pos / SectorSize)
		start := int(pos % SectorSize)
		length := r.sectorLength(index)

		// The Reader's sector ranges are a private copy that Open checked
		// against the signed root, so a sector outside them is a hole that
		// the writer signed, and it reads as zeros without further checks.
		slot, present := r.present.slot(index)
		if !present {
			end := min(len(want), n+length-start)
			clear(want[n:end])
			n = end
			continue
		}

		// A whole sector that fits in p is decrypted in place, and any other
		// is decrypted into a scratch buffer and the requested part copied.
		if start == 0 && len(want)-n >= length {
			checked := index >= checkedFrom && index < checkedTo
			if _, err := r.openSector(index, slot, sealed, want[n:n+length], checked); err != nil {
				return n, err
			}
			n += length
			continue
		}
		if plain == nil {
			plain = make([]byte, SectorSize)
		}
		out, err := r.openSector(index, slot, sealed, plain, false)
		if err != nil {
			return n, err
		}
		n += copy(want[n:], out[start:])
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// checkWholeSectors checks the leaf hashes of the present sectors that a
// read of length bytes at off covers whole, many at a time, and returns the
// sector indexes [from, to) that passed. It checks only with Expect.Private:
// otherwise each sector must be checked in the copy that is decrypted. A
// mismatch ends the range before that sector, whose own check then fails.
func (r *Reader) checkWholeSectors(off int64, length int) (from, to uint64) {
	if !r.private {
		return 0, 0
	}
	end := uint64(off) + uint64(length)
	from = (uint64(off) + SectorSize - 1) / SectorSize
	to = end / SectorSize
	if end == r.header.Size {
		to = sectorCount(end)
	}
	if to <= from+1 {
		return 0, 0
	}

	overhead := r.keys.cipher.sectorOverhead()
	var indexes []uint64
	var sealed [][]byte
	var slots []uint64
	for k := max(r.present.rangeBefore(from+1), 0); k < len(r.present.ranges); k++ {
		run := r.present.ranges[k]
		if run.First >= to {
			break
		}
		first, last := max(run.First, from), min(run.First+run.Count, to)
		for i := first; i < last; i++ {
			slot := r.present.slots[k] + i - run.First
			offset := slot * uint64(SectorSize+overhead)
			indexes = append(indexes, i)
			sealed = append(sealed, r.sectors[offset:offset+uint64(r.sectorLength(i)+overhead)])
			slots = append(slots, slot)
		}
	}
	leaves := make([][HashSize]byte, len(sealed))
	leafHashes(leaves, indexes, sealed)
	for k, slot := range slots {
		if leaves[k] != r.leaves[slot] {
			return from, indexes[k]
		}
	}
	return from, to
}

// sectorLength returns the plaintext length of sector index.
func (r *Reader) sectorLength(index uint64) int {
	return int(min(SectorSize, r.header.Size-index*SectorSize))
}

// openSector copies present sector index, stored at position slot, into
// scratch, checks it against its leaf hash, and decrypts it into dst, which
// has room for the plaintext. Working on a private copy means that the bytes
// checked are the bytes decrypted, even if the caller's slice changes
// meanwhile. With Expect.Private it skips the copy. checked is true when
// checkWholeSectors has compared the leaf hash already.
func (r *Reader) openSector(index, slot uint64, scratch, dst []byte, checked bool) ([]byte, error) {
	length := r.sectorLength(index)
	// Only the last sector of the block can be short, and it is stored last,
	// so every stored sector before it takes a full SectorSize+overhead.
	overhead := r.keys.cipher.sectorOverhead()
	offset := slot * uint64(SectorSize+overhead)
	sealed := r.sectors[offset : offset+uint64(length+overhead)]
	if !r.private {
		sealed = scratch[:length+overhead]
		copy(sealed, r.sectors[offset:])
	}

	if !checked && leafHash(uint32(index), sealed) != r.leaves[slot] {
		return nil, sectorError(r.header.ID, int(index), "sealed sector does not match its leaf hash")
	}
	plain, err := r.keys.openSector(dst[:0], sealed, uint32(index), sectorAD(r.header.ID, uint32(index), r.header.Version))
	if err != nil {
		e := sectorError(r.header.ID, int(index), "sealed sector does not decrypt")
		e.Err = err
		return nil, e
	}
	return plain, nil
}

// SectorPresent reports whether sector i is stored. It returns false for a
// hole and for an index beyond the last sector. It reads only the checked
// sector ranges and decrypts nothing.
func (r *Reader) SectorPresent(i uint64) bool {
	_, present := r.present.slot(i)
	return present
}

// StoredSectors returns the number of present sectors, the ones that the
// block stores, from which the file system derives st_blocks.
func (r *Reader) StoredSectors() uint64 { return r.present.stored }

// DataRanges returns the runs of present sectors in increasing order, with at
// least one hole between two runs. Sector i contains the bytes from
// i·SectorSize up to the next sector or Size, so the file system can
// implement SEEK_DATA and SEEK_HOLE from the ranges without decrypting.
func (r *Reader) DataRanges() []SectorRange {
	return slices.Clone(r.present.ranges)
}

// Bytes returns the whole plaintext, checking every present sector. It
// allocates Size bytes even for a sparse block. Reading the DataRanges with
// ReadAt avoids that for a large sparse file.
func (r *Reader) Bytes() ([]byte, error) {
	data := make([]byte, r.Size())
	if len(data) == 0 {
		return data, nil
	}
	if _, err := r.ReadAt(data, 0); err != nil {
		return nil, err
	}
	return data, nil
}

// Verify checks an encoded block without a block key, as fsck does: the
// layout, the writer's signature, the writer's chain from root at now (zero
// means time.Now()), and the holes and every present sector against the
// signed Merkle root. It returns the header, whose path and metadata stay
// sealed.
//
// Verify cannot check that the chain covers the block's path, because the
// path is sealed. It checks the chain against the writer's own grant. A
// writer with a valid grant for one subtree could thus sign a block for a
// path outside it, and only Open, which decrypts the path, rejects that.
func Verify(encoded []byte, root principal.Principal, now time.Time) (*Header, error) {
	if root.IsZero() {
		return nil, errors.New("verify block: root principal is missing")
	}
	if now.IsZero() {
		now = time.Now()
	}

	l, err := decodeBlock(encoded, [32]byte{})
	if err != nil {
		return nil, err
	}
	h := l.header
	if err := l.checkSignature(h.ID); err != nil {
		return nil, err
	}
	if err := verifyChainWithoutPath(h, root, now); err != nil {
		return nil, err
	}
	if err := l.checkLeaves(h.ID); err != nil {
		return nil, err
	}

	// checkLeaves has checked the holes. What remains is to hash every
	// present sector.
	indexes, sealed := l.present.split(l.sectors, h.Size, h.Cipher.sectorOverhead())
	leaves := make([][HashSize]byte, len(sealed))
	leafHashes(leaves, indexes, sealed)
	for slot, i := range indexes {
		if leaves[slot] != l.leaves[slot] {
			return nil, sectorError(h.ID, int(i), "sealed sector does not match its leaf hash")
		}
	}
	return h, nil
}

// verifyChainWithoutPath checks the chain from root to the writer. Without
// the path it checks the chain for the writer's own prefix.
func verifyChainWithoutPath(h *Header, root principal.Principal, now time.Time) error {
	writer := h.Writer.Principal()
	path := capability.RootPath(root)
	if len(h.Chain) > 0 {
		path = h.Chain[len(h.Chain)-1].Prefix
	}
	if err := h.Chain.Verify(root, writer, path, now); err != nil {
		return fmt.Errorf("verify block %s version %d: writer %s: %w", formatID(h.ID), h.Version, writer, err)
	}
	return nil
}

// redactedError hides the sealed path in the message of an error whose cause
// quotes it, as the capability package's chain errors do. errors.Is and
// errors.As still reach the cause.
type redactedError struct {
	err  error
	path string
}

func redactPath(err error, path string) error {
	if path == "" {
		return err
	}
	return &redactedError{err: err, path: path}
}

func (e *redactedError) Error() string {
	const placeholder = "<sealed path>"
	msg := strings.ReplaceAll(e.err.Error(), strconv.Quote(e.path), strconv.Quote(placeholder))
	return strings.ReplaceAll(msg, e.path, placeholder)
}

func (e *redactedError) Unwrap() error { return e.err }
