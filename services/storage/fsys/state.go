package fsys

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// InodeState is the state of one inode, as a checkpoint stores it.
// EncodeInode turns everything but the file data into the inode block's
// metadata and data. The persistence layer stores each chunk of file data
// (Chunk.Bytes) as a block of its own.
type InodeState struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Attr    fsapi.Attr        // Attr.Ino equals Ino; Attr.Blocks is 8 per stored sector
	Target  string            // symlinks only
	Xattrs  map[string][]byte // nil when there are none

	Entries    []DirEntryState // directories only, in increasing cookie order
	NextCookie uint64          // directories only: the cookie of the next new entry

	// Extents is the layout of a regular file: its stored sectors, in
	// increasing order.
	Extents []Extent
	// Chunks holds file data by chunk, in increasing order. Export includes
	// every chunk in memory, Checkpoint only those changed since they were
	// last stored, and LoadFrom treats the chunks left out as evicted.
	Chunks []Chunk
}

// DirEntryState is one directory entry. Mode holds the file type bits.
type DirEntryState struct {
	Name   string
	Ino    fsapi.Ino
	Mode   uint32
	Cookie uint64
}

// Extent is a run of Count stored sectors of a regular file, starting at
// byte First × SectorSize. Reserved sectors were allocated by fallocate and
// not written since: they read as zeros and carry no data. The extents of a
// file are maximal: two adjacent extents differ in Reserved.
type Extent struct {
	First    uint64
	Count    uint64
	Reserved bool
}

// Chunk is the data of one chunk of a regular file: the sectors
// [Index × ChunkSectors, (Index+1) × ChunkSectors) that hold data, in
// increasing order, SectorSize bytes each. Holes and reserved sectors take
// no bytes, and the file's extents give the place of each sector.
type Chunk struct {
	Index uint64
	Data  []byte

	// sectors replaces Data in the chunks of a Checkpoint: the engine's own
	// sectors, which it copies before changing them until EndCheckpoint.
	sectors []*sector
}

// Bytes returns the chunk's data sectors, one after the other.
func (c *Chunk) Bytes() []byte { return c.BytesInto(nil) }

// BytesInto is Bytes copying the sectors into buf when it has to copy and
// the capacity of buf suffices, for a caller that reuses buffers.
func (c *Chunk) BytesInto(buf []byte) []byte {
	if c.sectors == nil {
		return c.Data
	}
	out := buf[:0]
	if cap(out) < len(c.sectors)*SectorSize {
		out = make([]byte, 0, len(c.sectors)*SectorSize)
	}
	for _, sec := range c.sectors {
		out = append(out, sec[:]...)
	}
	return out
}

// Inline reports whether the persistence layer stores the data of the
// inode of st in its inode block: whether it is a regular file of at most
// InlineSize bytes.
func Inline(st *InodeState) bool {
	return st.Attr.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Attr.Size <= InlineSize
}

// ChunkIndexes returns the chunks of a file with the given extents that
// hold at least one data sector, in increasing order: the chunks that have
// a block of their own.
func ChunkIndexes(extents []Extent) []uint64 {
	var out []uint64
	for _, ext := range extents {
		if ext.Reserved {
			continue
		}
		for c := chunkOf(ext.First); c <= chunkOf(ext.First+ext.Count-1); c++ {
			if len(out) == 0 || out[len(out)-1] < c {
				out = append(out, c)
			}
		}
	}
	return out
}

// Header is the engine state that belongs to no inode, stored with each
// checkpoint.
type Header struct {
	NextIno    fsapi.Ino // the number of the next new inode
	AppliedSeq uint64    // the seq of the last entry the checkpoint contains
}

// FreedInode is an inode that an entry freed; the persistence layer deletes
// its block.
type FreedInode struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Seq     uint64 // the entry that freed it
}

// Checkpoint is a consistent snapshot of everything that changed since the
// persistence layer last called MarkClean, taken under one lock hold.
type Checkpoint struct {
	Header Header
	Inodes []*InodeState // dirty live inodes, by increasing number
	Freed  []FreedInode  // freed inodes whose blocks still exist, by number
}

// Stopped returns why the engine refuses all requests, or nil while it
// serves them. A stopped engine may hold an applied entry that the journal
// lacks, so its state must not be checkpointed.
func (e *Engine) Stopped() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// Header returns the engine header of the current state.
func (e *Engine) Header() Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Header{NextIno: e.nextIno, AppliedSeq: e.appliedSeq}
}

// DirtyInodes returns the live inodes changed since MarkClean last covered
// them, by increasing number, leaving out damaged ones. FreedInodes lists
// the freed ones.
func (e *Engine) DirtyInodes() []fsapi.Ino {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dirtyInodes()
}

func (e *Engine) dirtyInodes() []fsapi.Ino {
	var dirty []fsapi.Ino
	for ino, n := range e.changedInodes {
		// A damaged inode's block keeps what it holds (see damage.go).
		if n.dirtySeq > n.cleanSeq && n.damaged == "" {
			dirty = append(dirty, ino)
		}
	}
	slices.Sort(dirty)
	return dirty
}

// DirtyBytes estimates the file data that waits in memory for a
// checkpoint: a whole chunk for every changed chunk, or the file's size
// when that is less. Writes into a large file load and keep whole chunks,
// so this can be far more than the journal grew.
func (e *Engine) DirtyBytes() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var total uint64
	// A changed chunk is part of a change to its inode (touch), so only
	// the changed inodes can have one.
	for _, n := range e.changedInodes {
		if n.data != nil && len(n.data.dirty) > 0 {
			total += min(uint64(len(n.data.dirty))*ChunkSize, n.attr.Size)
		}
	}
	return total
}

// FreedInodes returns the freed inodes whose blocks MarkClean has not yet
// covered, by increasing number.
func (e *Engine) FreedInodes() []FreedInode {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.freedInodes()
}

func (e *Engine) freedInodes() []FreedInode {
	freed := make([]FreedInode, 0, len(e.freed))
	for _, ino := range slices.Sorted(maps.Keys(e.freed)) {
		f := e.freed[ino]
		freed = append(freed, FreedInode{Ino: ino, BlockID: f.blockID, Seq: f.seq})
	}
	return freed
}

// Checkpoint returns the header, every dirty inode and every freed inode as
// of one moment, for the persistence layer to store. A regular file comes
// with its changed chunks only, or with all its data when it is no larger
// than InlineSize. Their sectors are not copied: the engine
// copies a sector before it changes it, until EndCheckpoint, so the lock is
// held only while the snapshot collects pointers.
func (e *Engine) Checkpoint() *Checkpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.endCheckpoint()
	cp := &Checkpoint{Header: Header{NextIno: e.nextIno, AppliedSeq: e.appliedSeq}}
	for _, ino := range e.dirtyInodes() {
		n := e.inodes[ino]
		st := e.exportMeta(n)
		if n.data != nil {
			changed := slices.Sorted(maps.Keys(n.data.dirty))
			if n.small() {
				// A small file's data is stored in its inode block.
				changed = []uint64{0}
			}
			for _, c := range changed {
				if n.data.evicted[c] != 0 {
					continue // only a clean chunk can be evicted
				}
				if sectors := n.data.chunkSectors(c); len(sectors) > 0 {
					st.Chunks = append(st.Chunks, Chunk{Index: c, sectors: sectors})
					n.data.frozen[c] = true
				}
			}
			if len(n.data.frozen) > 0 {
				e.frozen = append(e.frozen, n)
			}
		}
		cp.Inodes = append(cp.Inodes, st)
	}
	cp.Freed = e.freedInodes()
	return cp
}

// EndCheckpoint ends the last Checkpoint: the persistence layer no longer
// reads its chunks, so sectors can change in place again.
func (e *Engine) EndCheckpoint() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.endCheckpoint()
}

func (e *Engine) endCheckpoint() {
	for _, n := range e.frozen {
		if n.data != nil {
			clear(n.data.frozen)
		}
	}
	e.frozen = nil
}

// MarkClean records that the persistence layer stored ino as of upToSeq:
// the inode and its chunks are no longer dirty unless a later entry changed
// them, and a freed inode's tombstone is dropped once its block was deleted.
func (e *Engine) MarkClean(ino fsapi.Ino, upToSeq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.inodes[ino]; n != nil {
		n.cleanSeq = max(n.cleanSeq, upToSeq)
		if n.data != nil {
			maps.DeleteFunc(n.data.dirty, func(_ uint64, seq uint64) bool { return seq <= upToSeq })
		}
		if n.dirtySeq <= n.cleanSeq {
			delete(e.changedInodes, ino)
		}
		return
	}
	if f, ok := e.freed[ino]; ok && f.seq <= upToSeq {
		delete(e.freed, ino)
	}
}

// Export returns a deep copy of the state of ino, with every chunk of file
// data that is in memory. It works on damaged inodes too, since it reads
// only memory.
func (e *Engine) Export(ino fsapi.Ino) (*InodeState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.inodes[ino]
	if n == nil {
		return nil, syscall.ENOENT
	}
	st := e.exportMeta(n)
	if n.data != nil {
		for _, c := range n.data.dataChunks() {
			if n.data.evicted[c] != 0 {
				continue
			}
			ch := Chunk{Index: c, sectors: n.data.chunkSectors(c)}
			st.Chunks = append(st.Chunks, Chunk{Index: c, Data: ch.Bytes()})
		}
	}
	return st, nil
}

// exportMeta returns a copy of everything of n but its file data.
func (e *Engine) exportMeta(n *inode) *InodeState {
	st := &InodeState{
		Ino:        n.attr.Ino,
		BlockID:    n.blockID,
		Attr:       n.attr,
		Target:     n.target,
		NextCookie: n.nextCookie,
	}
	if len(n.xattrs) > 0 {
		st.Xattrs = make(map[string][]byte, len(n.xattrs))
		for name, value := range n.xattrs {
			st.Xattrs[name] = append([]byte{}, value...)
		}
	}
	for d := range n.liveEntries() {
		st.Entries = append(st.Entries, DirEntryState{Name: d.name, Ino: d.ino, Mode: d.mode, Cookie: d.cookie})
	}
	if n.data != nil {
		st.Extents = n.data.layout()
	}
	return st
}

// Evict drops the data of every clean chunk of a regular file larger than
// InlineSize from memory. The Loader brings a chunk back when it is next
// used, and the layout and the xattrs stay.
func (e *Engine) Evict(ino fsapi.Ino) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.inodes[ino]
	switch {
	case n == nil:
		return syscall.ENOENT
	case !n.isRegular():
		return syscall.EINVAL
	case e.loader == nil:
		return syscall.EOPNOTSUPP
	case n.data == nil || n.small():
		return nil // damaged, or kept in memory
	}
	n.data.evictClean()
	return nil
}

// BlockID returns the block id of ino.
func (e *Engine) BlockID(ino fsapi.Ino) ([32]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.inodes[ino]; n != nil {
		return n.blockID, true
	}
	return [32]byte{}, false
}

// PathOf returns a path of ino from the tree root: "/" for the root and
// "/a/b" below it. For a file with several hard links it returns one of
// them, the same one until its links change. An unlinked inode has no path
// (ENOENT).
func (e *Engine) PathOf(ino fsapi.Ino) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.inodes[ino]
	if n == nil {
		return "", syscall.ENOENT
	}
	return e.pathOf(n)
}

func (e *Engine) pathOf(n *inode) (string, error) {
	var names []string
	for n.attr.Ino != fsapi.RootIno {
		if len(n.links) == 0 {
			return "", syscall.ENOENT
		}
		l := n.links[0]
		names = append(names, l.name)
		n = e.inodes[l.parent]
		if len(names) > len(e.inodes) {
			// Only a corrupt tree has a cycle; LoadFrom rejects them.
			return "", syscall.EIO
		}
	}
	slices.Reverse(names)
	return "/" + strings.Join(names, "/"), nil
}

// ReclaimOrphans journals a reclaim entry for every unlinked inode that no
// handle has open. The daemon calls it once after LoadFrom and the journal
// replay, because handles do not survive a restart, so the inodes that were
// open and unlinked when it stopped are orphans now.
func (e *Engine) ReclaimOrphans() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ino := range slices.Sorted(maps.Keys(e.inodes)) {
		n := e.inodes[ino]
		if n.attr.Nlink != 0 || n.opens != 0 || ino == fsapi.RootIno {
			continue
		}
		ent := e.newEntry(nil, OpReclaim)
		ent.Ino = ino
		if err := e.commit(context.Background(), ent); err != nil {
			return fmt.Errorf("reclaim node %d: %w", ino, err)
		}
		e.log.Info("reclaimed an orphaned inode", "ino", ino, "block", blockHex(n.blockID))
	}
	return nil
}
