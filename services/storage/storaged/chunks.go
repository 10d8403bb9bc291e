package storaged

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/blocktree/blocktree/services/crypto/wire"
	"github.com/blocktree/blocktree/services/storage/blockstore"
	"github.com/blocktree/blocktree/services/storage/fsapi"
	"github.com/blocktree/blocktree/services/storage/fsys"
)

// A regular file is stored as one inode block and one block per chunk of
// its data that holds at least one data sector (fsys.ChunkSize bytes of
// the file each). The inode block lists the version of every chunk block,
// and the checkpoint names the version of the inode block, so a rollback
// of any block shows as a version older than the one its parent names.
//
// A checkpoint writes a new version of the chunks that changed, at the
// inode block's new version number, and keeps the versions of the others.

// kindInodeBlock is the data of an inode block.
const kindInodeBlock wire.Kind = 0x0502

const inodeBlockVersion = 1

// minChunkRef is the encoded size of one chunk table row.
const minChunkRef = 16

// chunkTable maps a chunk index to the version of its block.
type chunkTable map[uint64]uint64

// chunkID returns the block id of chunk index of the file whose inode block
// is blockID. Its first half is that of the inode block's id, so the blocks
// of a damaged file can be kept together without reading its inode block.
// The second half is a hash of the inode block's id and the index.
func chunkID(blockID [32]byte, index uint64) [32]byte {
	h := sha256.New()
	h.Write([]byte("blocktree chunk id v1"))
	h.Write(blockID[:])
	h.Write(binary.BigEndian.AppendUint64(nil, index))
	var id [32]byte
	copy(id[:16], blockID[:16])
	copy(id[16:], h.Sum(nil))
	return id
}

// chunkRef returns the block version that holds chunk index at version.
func chunkRef(blockID [32]byte, index, version uint64) blockstore.Ref {
	return blockstore.Ref{ID: chunkID(blockID, index), Version: version}
}

// fileOf returns what the inode block and the chunk blocks of one file have
// in common: the first half of their ids.
func fileOf(id [32]byte) [16]byte { return [16]byte(id[:16]) }

// inodeBlock is the data of an inode block.
type inodeBlock struct {
	inode  []byte     // the inode's data encoding (fsys.EncodeInode)
	chunks chunkTable // the chunk blocks of a file larger than fsys.InlineSize
	inline []byte     // the data of chunk 0 of a smaller file (Chunk.Bytes)
}

// encodeInodeBlock returns the data of an inode block (kindInodeBlock,
// version 1): inode bytes, then uint32 chunk count and, by increasing
// index, index uint64, version uint64, then inline bytes.
func encodeInodeBlock(b inodeBlock) []byte {
	e := wire.NewEncoder(kindInodeBlock, inodeBlockVersion)
	e.Grow(len(b.inode) + len(b.inline) + 12 + len(b.chunks)*minChunkRef)
	e.Bytes(b.inode)
	e.Uint32(uint32(len(b.chunks)))
	for _, index := range slices.Sorted(maps.Keys(b.chunks)) {
		e.Uint64(index)
		e.Uint64(b.chunks[index])
	}
	e.Bytes(b.inline)
	return e.Data()
}

// decodeInodeBlock parses the data of an inode block. Indexes must
// increase and versions be non-zero.
func decodeInodeBlock(data []byte) (inodeBlock, error) {
	d := wire.NewDecoder(data, kindInodeBlock, inodeBlockVersion)
	inodeData := d.Bytes(len(data))
	n := d.Count((d.Remaining() - 4) / minChunkRef)
	chunks := make(chunkTable, n)
	var last uint64
	for i := range n {
		index, version := d.Uint64(), d.Uint64()
		if d.Err() != nil {
			break
		}
		if i > 0 && index <= last || version == 0 {
			d.Fail(fmt.Errorf("chunk %d version %d after chunk %d: %w", index, version, last, wire.ErrInvalid))
			break
		}
		chunks[index] = version
		last = index
	}
	inline := d.Bytes(d.Remaining())
	if err := d.Finish(); err != nil {
		return inodeBlock{}, fmt.Errorf("decode inode block: %w", err)
	}
	return inodeBlock{inode: inodeData, chunks: chunks, inline: inline}, nil
}

// checkChunkTable checks that an inode block has a chunk block for exactly
// the chunks of the file that hold data, or the data inline for a small
// file. The engine checks the size of inline data.
func checkChunkTable(st *fsys.InodeState, b inodeBlock) error {
	want := fsys.ChunkIndexes(st.Extents)
	chunks := b.chunks
	if fsys.Inline(st) {
		if len(chunks) != 0 || (len(want) == 0) != (len(b.inline) == 0) {
			return fmt.Errorf("inode %d of %d bytes lists %d chunk blocks and %d bytes of inline data, its layout has %d chunks with data", st.Ino, st.Attr.Size, len(chunks), len(b.inline), len(want))
		}
		return nil
	}
	if len(b.inline) != 0 {
		return fmt.Errorf("inode %d of %d bytes has inline data", st.Ino, st.Attr.Size)
	}
	if len(want) != len(chunks) {
		return fmt.Errorf("inode %d lists %d chunk blocks, its layout has %d chunks with data", st.Ino, len(chunks), len(want))
	}
	for _, index := range want {
		if chunks[index] == 0 {
			return fmt.Errorf("inode %d lists no block for its chunk %d", st.Ino, index)
		}
	}
	return nil
}

// nextChunkTable returns the chunk table of a new version of an inode: the
// chunks that the checkpoint carries get the new version, the others keep
// theirs. A small file has no chunk blocks.
func nextChunkTable(st *fsys.InodeState, old chunkTable, version uint64) (chunkTable, error) {
	if fsys.Inline(st) {
		return nil, nil
	}
	changed := make(map[uint64]bool, len(st.Chunks))
	for _, ch := range st.Chunks {
		changed[ch.Index] = true
	}
	table := make(chunkTable)
	for _, index := range fsys.ChunkIndexes(st.Extents) {
		switch v, ok := old[index]; {
		case changed[index]:
			table[index] = version
		case ok:
			table[index] = v
		default:
			return nil, fmt.Errorf("inode %d: chunk %d did not change and has no stored block", st.Ino, index)
		}
	}
	return table, nil
}

// fileRefs returns the block versions of one inode: its inode block and its
// chunk blocks.
func fileRefs(ref blockstore.Ref, chunks chunkTable) []blockstore.Ref {
	refs := []blockstore.Ref{ref}
	for index, version := range chunks {
		refs = append(refs, chunkRef(ref.ID, index, version))
	}
	return refs
}

// liveRefs returns every block version that the tables in force name.
func (d *Daemon) liveRefs() map[blockstore.Ref]fsapi.Ino {
	live := make(map[blockstore.Ref]fsapi.Ino, len(d.versions)+len(d.kept))
	for _, table := range []map[fsapi.Ino]blockstore.Ref{d.versions, d.kept} {
		for ino, ref := range table {
			for _, r := range fileRefs(ref, d.chunks[ino]) {
				live[r] = ino
			}
		}
	}
	return live
}
