package fsys

import (
	"fmt"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// applyEntry makes the change that ent describes and records seq as applied. Each
// apply function checks every precondition before its first change, so an
// error leaves the state as it was. Nothing here may read the clock, draw
// random bytes, depend on map iteration order or on handles and locks.
func (e *Engine) applyEntry(seq uint64, ent *Entry) error {
	if e.failed != nil {
		return fmt.Errorf("engine stopped after an earlier failure: %w", e.failed)
	}
	var err error
	switch ent.Op {
	case OpInitRoot:
		err = e.applyInitRoot(seq, ent)
	case OpCreate, OpMknod, OpMkdir, OpSymlink:
		err = e.applyNewNode(seq, ent)
	case OpLink:
		err = e.applyLink(seq, ent)
	case OpUnlink, OpRmdir:
		err = e.applyRemove(seq, ent)
	case OpRename:
		err = e.applyRename(seq, ent)
	case OpWrite:
		err = e.applyWrite(seq, ent)
	case OpSetAttr:
		err = e.applySetAttr(seq, ent)
	case OpFallocate:
		err = e.applyFallocate(seq, ent)
	case OpSetXattr, OpRemoveXattr:
		err = e.applyXattr(seq, ent)
	case OpReclaim:
		err = e.applyReclaim(seq, ent)
	default:
		err = fmt.Errorf("unknown operation %d: %w", ent.Op, syscall.EINVAL)
	}
	if err != nil {
		return err
	}
	e.appliedSeq = seq
	return nil
}

// mismatch builds the error of an entry that does not fit the state.
func mismatch(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errno)
}

// touch records that seq changed n.
func (e *Engine) touch(n *inode, seq uint64) {
	n.dirtySeq = seq
	e.changedInodes[n.attr.Ino] = n
}

// applyNode returns the live inode for an entry, which must not be damaged
// when the entry changes its data or xattrs.
func (e *Engine) applyNode(ino fsapi.Ino, needData bool) (*inode, error) {
	n := e.inodes[ino]
	if n == nil {
		return nil, mismatch(syscall.ENOENT, "node %d does not exist", ino)
	}
	if needData && n.damaged != "" {
		return nil, mismatch(syscall.EIO, "node %d is damaged", ino)
	}
	return n, nil
}

// applyLoad brings the chunks of n that an entry changes into memory. The
// live path loads them before it makes the entry, so only a replay gets
// here with chunks to load. When a load fails, the entry cannot be applied:
// n is marked damaged, and Apply skips the entry as one on damaged state.
func (e *Engine) applyLoad(n *inode, off, length uint64) error {
	if err := e.loadRange(n, off, length); err != nil {
		e.markDamaged(n, "file data needed by a replayed entry cannot be loaded")
		return mismatch(syscall.EIO, "node %d: data cannot be loaded", n.attr.Ino)
	}
	return nil
}

// applyDir returns the live directory ino.
func (e *Engine) applyDir(ino fsapi.Ino) (*inode, error) {
	dir, err := e.applyNode(ino, false)
	if err != nil {
		return nil, err
	}
	if !dir.isDir() {
		return nil, mismatch(syscall.ENOTDIR, "node %d is not a directory", ino)
	}
	if dir.damaged != "" {
		// The entries of a damaged directory are not known.
		return nil, mismatch(syscall.EIO, "directory %d is damaged", ino)
	}
	return dir, nil
}

func (e *Engine) applyInitRoot(seq uint64, ent *Entry) error {
	if len(e.inodes) != 0 {
		return mismatch(syscall.EEXIST, "the tree already has inodes")
	}
	root := newInode(fsapi.RootIno, ent.BlockID, ent.Mode, ent.Owner, ent.Group, 0, ent.Time)
	e.inodes[fsapi.RootIno] = root
	e.nextIno = fsapi.RootIno + 1
	e.touch(root, seq)
	return nil
}

func (e *Engine) applyNewNode(seq uint64, ent *Entry) error {
	parent, err := e.applyDir(ent.Parent)
	if err != nil {
		return err
	}
	if _, exists := parent.entries[ent.Name]; exists {
		return mismatch(syscall.EEXIST, "name %q exists in node %d", ent.Name, ent.Parent)
	}
	// Inode numbers are never reused, so a new one lies above every earlier one.
	if ent.Ino < e.nextIno {
		return mismatch(syscall.EEXIST, "node %d is below the next free number %d", ent.Ino, e.nextIno)
	}
	isDir := ent.Op == OpMkdir
	if isDir && parent.attr.Nlink >= maxLinks {
		return mismatch(syscall.EMLINK, "node %d has %d links", ent.Parent, parent.attr.Nlink)
	}

	child := newInode(ent.Ino, ent.BlockID, ent.Mode, ent.Owner, ent.Group, ent.Rdev, ent.Time)
	child.target = ent.Symlink
	if child.isSymlink() {
		child.attr.Size = uint64(len(ent.Symlink))
	}
	e.inodes[ent.Ino] = child
	e.nextIno = ent.Ino + 1
	parent.insertEntry(ent.Name, child)
	if isDir {
		parent.attr.Nlink++
	}
	parent.attr.Mtime, parent.attr.Ctime = ent.Time, ent.Time
	e.touch(child, seq)
	e.touch(parent, seq)
	return nil
}

func (e *Engine) applyLink(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, false)
	if err != nil {
		return err
	}
	parent, err := e.applyDir(ent.Parent)
	if err != nil {
		return err
	}
	switch {
	case n.isDir():
		return mismatch(syscall.EPERM, "node %d is a directory", ent.Ino)
	case n.attr.Nlink == 0:
		return mismatch(syscall.ENOENT, "node %d is unlinked", ent.Ino)
	case n.attr.Nlink >= maxLinks:
		return mismatch(syscall.EMLINK, "node %d has %d links", ent.Ino, n.attr.Nlink)
	}
	if _, exists := parent.entries[ent.Name]; exists {
		return mismatch(syscall.EEXIST, "name %q exists in node %d", ent.Name, ent.Parent)
	}

	parent.insertEntry(ent.Name, n)
	n.attr.Nlink++
	n.attr.Ctime = ent.Time
	parent.attr.Mtime, parent.attr.Ctime = ent.Time, ent.Time
	e.touch(n, seq)
	e.touch(parent, seq)
	return nil
}

// applyRemove applies unlink and rmdir entries.
func (e *Engine) applyRemove(seq uint64, ent *Entry) error {
	parent, err := e.applyDir(ent.Parent)
	if err != nil {
		return err
	}
	d := parent.entries[ent.Name]
	if d == nil || d.ino != ent.Ino {
		return mismatch(syscall.ENOENT, "name %q in node %d does not name node %d", ent.Name, ent.Parent, ent.Ino)
	}
	child, err := e.applyNode(ent.Ino, false)
	if err != nil {
		return err
	}
	if ent.Op == OpRmdir {
		if !child.isDir() {
			return mismatch(syscall.ENOTDIR, "node %d is not a directory", ent.Ino)
		}
		if len(child.entries) != 0 {
			return mismatch(syscall.ENOTEMPTY, "directory %d is not empty", ent.Ino)
		}
		if child.damaged != "" {
			return mismatch(syscall.EIO, "directory %d is damaged", ent.Ino)
		}
	} else if child.isDir() {
		return mismatch(syscall.EISDIR, "node %d is a directory", ent.Ino)
	}
	remaining := child.attr.Nlink - 1
	if child.isDir() {
		remaining = 0
	}
	if ent.Free && remaining != 0 {
		return mismatch(syscall.EINVAL, "entry frees node %d, which keeps %d links", ent.Ino, remaining)
	}

	parent.removeEntry(ent.Name, child)
	if child.isDir() {
		parent.attr.Nlink--
	}
	child.attr.Nlink = remaining
	child.attr.Ctime = ent.Time
	parent.attr.Mtime, parent.attr.Ctime = ent.Time, ent.Time
	e.touch(parent, seq)
	e.touch(child, seq)
	if ent.Free {
		e.free(child, seq)
	}
	return nil
}

func (e *Engine) applyRename(seq uint64, ent *Entry) error {
	plan, err := e.planRename(ent.Parent, ent.Name, ent.NewParent, ent.NewName, ent.Flags)
	if err != nil {
		return err
	}
	if plan.src.attr.Ino != ent.Ino {
		return mismatch(syscall.ENOENT, "name %q in node %d does not name node %d", ent.Name, ent.Parent, ent.Ino)
	}
	var target fsapi.Ino
	if plan.dst != nil {
		target = plan.dst.attr.Ino
	}
	if target != ent.Target {
		return mismatch(syscall.EEXIST, "target %q in node %d is node %d, entry says %d", ent.NewName, ent.NewParent, target, ent.Target)
	}
	if plan.noop {
		if ent.Free {
			return mismatch(syscall.EINVAL, "entry frees node %d in a rename onto itself", target)
		}
		e.touch(plan.src, seq)
		return nil
	}
	if ent.Free && !plan.dst.isDir() && plan.dst.attr.Nlink != 1 {
		return mismatch(syscall.EINVAL, "entry frees node %d, which keeps %d links", target, plan.dst.attr.Nlink-1)
	}
	e.doRename(plan, ent.Time, seq)
	if ent.Free {
		e.free(plan.dst, seq)
	}
	return nil
}

func (e *Engine) applyWrite(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, true)
	if err != nil {
		return err
	}
	if !n.isRegular() {
		return mismatch(syscall.EINVAL, "node %d is not a regular file", ent.Ino)
	}
	if err := e.applyLoad(n, ent.Offset, uint64(len(ent.Data))); err != nil {
		return err
	}

	defer e.leaveInline(n, n.small(), seq)
	if delta := n.data.writeAt(ent.Data, ent.Offset, seq); delta >= 0 {
		e.addSectors(n, uint64(delta))
	} else {
		e.removeSectors(n, uint64(-delta))
	}
	n.attr.Size = max(n.attr.Size, ent.Offset+uint64(len(ent.Data)))
	if ent.KillPriv {
		n.attr.Mode = fsapi.ClearSetID(n.attr.Mode)
	}
	n.attr.Mtime, n.attr.Ctime = ent.Time, ent.Time
	e.touch(n, seq)
	return nil
}

func (e *Engine) applySetAttr(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, ent.Flags&AttrSize != 0)
	if err != nil {
		return err
	}
	if ent.Flags&AttrSize != 0 && !n.isRegular() {
		return mismatch(syscall.EINVAL, "size of node %d, which is not a regular file", ent.Ino)
	}
	if ent.Flags&AttrSize != 0 {
		if err := e.loadTail(n, ent.Size); err != nil {
			e.markDamaged(n, "file data needed by a replayed entry cannot be loaded")
			return mismatch(syscall.EIO, "node %d: data cannot be loaded", n.attr.Ino)
		}
	}

	if ent.Flags&AttrMode != 0 {
		n.attr.Mode = n.fileType() | ent.Mode
	}
	if ent.Flags&AttrUID != 0 {
		n.attr.UID = ent.Owner
	}
	if ent.Flags&AttrGID != 0 {
		n.attr.GID = ent.Group
	}
	if ent.Flags&AttrSize != 0 {
		defer e.leaveInline(n, n.small(), seq)
		e.truncate(n, ent.Size, seq)
	}
	if ent.Flags&AttrAtime != 0 {
		n.attr.Atime = ent.Atime
	}
	if ent.Flags&AttrMtime != 0 {
		n.attr.Mtime = ent.Mtime
	}
	n.attr.Ctime = ent.Ctime
	e.touch(n, seq)
	return nil
}

// leaveInline marks the data of n changed by entry seq when the entry made
// a file of at most InlineSize (wasSmall) larger, so that the next
// checkpoint moves the data from the inode block to a chunk block.
func (e *Engine) leaveInline(n *inode, wasSmall bool, seq uint64) {
	if wasSmall && !n.small() && n.data != nil {
		n.data.dataChanged(seq)
	}
}

// truncate sets the size of the regular file n for entry seq.
func (e *Engine) truncate(n *inode, size, seq uint64) {
	if size < n.attr.Size {
		e.removeSectors(n, n.data.truncate(size, seq))
	}
	n.attr.Size = size
}

// loadTail loads what must be in memory to truncate n to size: the chunk
// that size falls in, whose tail changes. Chunks wholly past size are
// dropped without being loaded.
func (e *Engine) loadTail(n *inode, size uint64) error {
	if size >= n.attr.Size || size%ChunkSize == 0 {
		return nil
	}
	return e.loadRange(n, size, 1)
}

func (e *Engine) applyFallocate(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, true)
	if err != nil {
		return err
	}
	if !n.isRegular() {
		return mismatch(syscall.EINVAL, "node %d is not a regular file", ent.Ino)
	}
	defer e.leaveInline(n, n.small(), seq)
	if ent.Flags&FallocPunchHole != 0 {
		// Only the first and last chunk can keep part of their data.
		if err := e.applyLoad(n, ent.Offset, 1); err != nil {
			return err
		}
		if err := e.applyLoad(n, ent.Offset+ent.Length-1, 1); err != nil {
			return err
		}
		e.removeSectors(n, n.data.punch(ent.Offset, ent.Length, seq))
		n.attr.Mtime = ent.Time
	} else {
		e.addSectors(n, n.data.allocate(ent.Offset, ent.Length))
		if end := ent.Offset + ent.Length; ent.Flags&FallocKeepSize == 0 && end > n.attr.Size {
			n.attr.Size = end
			n.attr.Mtime = ent.Time
		}
	}
	if ent.KillPriv {
		n.attr.Mode = fsapi.ClearSetID(n.attr.Mode)
	}
	n.attr.Ctime = ent.Time
	e.touch(n, seq)
	return nil
}

func (e *Engine) applyXattr(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, true)
	if err != nil {
		return err
	}
	_, exists := n.xattrs[ent.Name]
	if ent.Op == OpRemoveXattr || ent.Flags&fsapi.XattrReplace != 0 {
		if !exists {
			return mismatch(syscall.ENODATA, "node %d has no attribute %q", ent.Ino, ent.Name)
		}
	}
	if ent.Flags&fsapi.XattrCreate != 0 && exists {
		return mismatch(syscall.EEXIST, "node %d has attribute %q", ent.Ino, ent.Name)
	}

	if ent.Op == OpRemoveXattr {
		delete(n.xattrs, ent.Name)
	} else {
		if n.xattrs == nil {
			n.xattrs = make(map[string][]byte)
		}
		n.xattrs[ent.Name] = append([]byte{}, ent.Data...)
	}
	n.attr.Ctime = ent.Time
	e.touch(n, seq)
	return nil
}

func (e *Engine) applyReclaim(seq uint64, ent *Entry) error {
	n, err := e.applyNode(ent.Ino, false)
	if err != nil {
		return err
	}
	if n.attr.Nlink != 0 || n.attr.Ino == fsapi.RootIno {
		return mismatch(syscall.EBUSY, "node %d still has %d links", ent.Ino, n.attr.Nlink)
	}
	e.free(n, seq)
	return nil
}

// free deletes the unlinked inode n and leaves a tombstone, so that the
// persistence layer learns to delete its block.
func (e *Engine) free(n *inode, seq uint64) {
	ino := n.attr.Ino
	e.usedBytes -= n.storedSectors() * SectorSize
	delete(e.inodes, ino)
	delete(e.changedInodes, ino)
	e.freed[ino] = freedInode{blockID: n.blockID, seq: seq}
	e.locks.forget(ino)
}

func (e *Engine) addSectors(n *inode, count uint64) {
	n.attr.Blocks += count * sectorBlocks
	e.usedBytes += count * SectorSize
}

func (e *Engine) removeSectors(n *inode, count uint64) {
	n.attr.Blocks -= count * sectorBlocks
	e.usedBytes -= count * SectorSize
}
