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

// InodeState is the complete state of one inode, as a checkpoint stores it
// in the inode's block. EncodeInode turns it into the block's metadata and
// data.
type InodeState struct {
	Ino     fsapi.Ino
	BlockID [32]byte
	Attr    fsapi.Attr // Attr.Ino equals Ino; Attr.Blocks is 8 per stored sector
	Target  string     // symlinks only

	// Resident is false when the data part (Xattrs and Extents) was evicted
	// and is not included; it is then unchanged since it was last stored.
	// Directories are always resident.
	Resident bool
	Xattrs   map[string][]byte // nil when there are none

	Entries    []DirEntryState // directories only, in increasing cookie order
	NextCookie uint64          // directories only: the cookie of the next new entry

	Extents []Extent // regular files only: the stored sectors, in increasing order
}

// DirEntryState is one directory entry. Mode holds the file type bits.
type DirEntryState struct {
	Name   string
	Ino    fsapi.Ino
	Mode   uint32
	Cookie uint64
}

// Extent is a run of Count stored sectors of a regular file, starting at
// byte First × SectorSize. Data holds Count × SectorSize bytes, or is nil
// for sectors that fallocate reserved and no write filled, which read as zeros.
// The extents of a file are maximal: two adjacent extents differ in whether
// they carry data.
type Extent struct {
	First uint64
	Count uint64
	Data  []byte
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
	for ino, n := range e.inodes {
		// A damaged inode's block keeps what it holds (see damage.go).
		if n.dirtySeq > n.cleanSeq && n.damaged == "" {
			dirty = append(dirty, ino)
		}
	}
	slices.Sort(dirty)
	return dirty
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
// of one moment, for the persistence layer to store.
func (e *Engine) Checkpoint() *Checkpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	cp := &Checkpoint{Header: Header{NextIno: e.nextIno, AppliedSeq: e.appliedSeq}}
	for _, ino := range e.dirtyInodes() {
		cp.Inodes = append(cp.Inodes, e.export(e.inodes[ino]))
	}
	cp.Freed = e.freedInodes()
	return cp
}

// MarkClean records that the persistence layer stored ino as of upToSeq:
// the inode is no longer dirty unless a later entry changed it, and a freed
// inode's tombstone is dropped once its block was deleted.
func (e *Engine) MarkClean(ino fsapi.Ino, upToSeq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.inodes[ino]; n != nil {
		n.cleanSeq = max(n.cleanSeq, upToSeq)
		return
	}
	if f, ok := e.freed[ino]; ok && f.seq <= upToSeq {
		delete(e.freed, ino)
	}
}

// Export returns a deep copy of the state of ino. It works on damaged
// inodes too, since it reads only memory.
func (e *Engine) Export(ino fsapi.Ino) (*InodeState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.inodes[ino]
	if n == nil {
		return nil, syscall.ENOENT
	}
	return e.export(n), nil
}

func (e *Engine) export(n *inode) *InodeState {
	st := &InodeState{
		Ino:        n.attr.Ino,
		BlockID:    n.blockID,
		Attr:       n.attr,
		Target:     n.target,
		Resident:   n.resident,
		NextCookie: n.nextCookie,
	}
	if !n.resident {
		return st
	}
	if len(n.xattrs) > 0 {
		st.Xattrs = make(map[string][]byte, len(n.xattrs))
		for name, value := range n.xattrs {
			st.Xattrs[name] = append([]byte{}, value...)
		}
	}
	for _, d := range n.order {
		st.Entries = append(st.Entries, DirEntryState{Name: d.name, Ino: d.ino, Mode: d.mode, Cookie: d.cookie})
	}
	if n.data != nil {
		st.Extents = n.data.extents()
	}
	return st
}

// Evict drops the file sectors of a clean regular file, to free memory; the
// Loader brings them back on the next use. The xattrs stay, because they
// are small and Linux reads security.capability before it writes to a FUSE
// file: dropping them made the first write after a checkpoint load the
// whole file.
func (e *Engine) Evict(ino fsapi.Ino) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.inodes[ino]
	switch {
	case n == nil:
		return syscall.ENOENT
	case !n.isRegular():
		return syscall.EINVAL
	case n.dirtySeq > n.cleanSeq:
		return syscall.EBUSY
	case e.loader == nil:
		return syscall.EOPNOTSUPP
	}
	n.data = nil
	n.resident = false
	n.xattrsKept = true
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
