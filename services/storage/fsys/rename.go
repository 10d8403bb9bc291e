package fsys

import (
	"context"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// renamePlan is a rename that passed the structural checks.
type renamePlan struct {
	srcDir, dstDir   *inode
	oldName, newName string
	src              *inode
	dst              *inode // the replaced or exchanged inode, or nil
	exchange         bool
	noop             bool // both names already refer to the same inode
}

func checkRenameFlags(flags uint32) error {
	if flags&^(fsapi.RenameNoReplace|fsapi.RenameExchange) != 0 {
		return syscall.EINVAL
	}
	if flags == fsapi.RenameNoReplace|fsapi.RenameExchange {
		return syscall.EINVAL
	}
	return nil
}

// planRename performs the checks of rename(2) and renameat2(2) that depend
// only on the tree, not on the caller. Both Rename and Apply use it, so a
// replayed rename is checked exactly as it was when it was made. e.mu is held.
func (e *Engine) planRename(oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string, flags uint32) (*renamePlan, error) {
	if err := checkRenameFlags(flags); err != nil {
		return nil, err
	}
	for _, name := range []string{oldName, newName} {
		if err := checkName(name); err != nil {
			return nil, err
		}
		if isDotName(name) {
			return nil, syscall.EINVAL
		}
	}
	p := &renamePlan{oldName: oldName, newName: newName, exchange: flags&fsapi.RenameExchange != 0}
	var err error
	if p.srcDir, err = e.applyDir(oldParent); err != nil {
		return nil, err
	}
	if p.dstDir, err = e.applyDir(newParent); err != nil {
		return nil, err
	}
	srcEntry := p.srcDir.entries[oldName]
	if srcEntry == nil || p.dstDir.attr.Nlink == 0 {
		// A removed directory has no entries and takes no new ones.
		return nil, syscall.ENOENT
	}
	p.src = e.inodes[srcEntry.ino]
	if dstEntry := p.dstDir.entries[newName]; dstEntry != nil {
		p.dst = e.inodes[dstEntry.ino]
	}

	switch {
	case p.exchange && p.dst == nil:
		return nil, syscall.ENOENT
	case flags&fsapi.RenameNoReplace != 0 && p.dst != nil:
		return nil, syscall.EEXIST
	case p.dst == p.src:
		// Two names of one inode: rename(2) does nothing and succeeds.
		p.noop = true
		return p, nil
	}

	if p.src.isDir() && e.isAncestor(p.src, p.dstDir) {
		return nil, syscall.EINVAL
	}
	if p.exchange {
		if p.dst.isDir() && e.isAncestor(p.dst, p.srcDir) {
			return nil, syscall.EINVAL
		}
		if p.srcDir != p.dstDir && p.src.isDir() != p.dst.isDir() {
			gaining := p.dstDir
			if p.dst.isDir() {
				gaining = p.srcDir
			}
			if gaining.attr.Nlink >= maxLinks {
				return nil, syscall.EMLINK
			}
		}
		return p, nil
	}
	if p.dst != nil {
		switch {
		case p.src.isDir() && !p.dst.isDir():
			return nil, syscall.ENOTDIR
		case !p.src.isDir() && p.dst.isDir():
			return nil, syscall.EISDIR
		case p.dst.isDir() && len(p.dst.entries) != 0:
			return nil, syscall.ENOTEMPTY
		case p.dst.isDir() && p.dst.damaged != "":
			return nil, syscall.EIO
		}
	}
	if p.src.isDir() && p.srcDir != p.dstDir && p.dst == nil && p.dstDir.attr.Nlink >= maxLinks {
		return nil, syscall.EMLINK
	}
	return p, nil
}

// isAncestor reports whether dir is n or lies below it.
func (e *Engine) isAncestor(n, dir *inode) bool {
	for {
		if dir == n {
			return true
		}
		if dir.attr.Ino == fsapi.RootIno || len(dir.links) == 0 {
			return false
		}
		dir = e.inodes[dir.parentIno()]
	}
}

// doRename applies the plan to the tree. The replaced inode loses a link,
// and the caller frees it if needed. e.mu is held.
func (e *Engine) doRename(p *renamePlan, now int64, seq uint64) {
	src, dst := p.src, p.dst
	if p.exchange {
		srcEntry, dstEntry := p.srcDir.entries[p.oldName], p.dstDir.entries[p.newName]
		// The names keep their cookies, so a reader in the middle of a
		// listing gets each name once.
		srcEntry.ino, dstEntry.ino = dst.attr.Ino, src.attr.Ino
		srcEntry.mode, dstEntry.mode = dst.fileType(), src.fileType()
		src.replaceLink(p.srcDir.attr.Ino, p.oldName, p.dstDir.attr.Ino, p.newName)
		dst.replaceLink(p.dstDir.attr.Ino, p.newName, p.srcDir.attr.Ino, p.oldName)
		if p.srcDir != p.dstDir {
			moveSubdirLink(src, p.srcDir, p.dstDir)
			moveSubdirLink(dst, p.dstDir, p.srcDir)
		}
		dst.attr.Ctime = now
		e.touch(dst, seq)
	} else {
		if dst != nil {
			p.dstDir.removeEntry(p.newName, dst)
			if dst.isDir() {
				p.dstDir.attr.Nlink--
				dst.attr.Nlink = 0
			} else {
				dst.attr.Nlink--
			}
			dst.attr.Ctime = now
			e.touch(dst, seq)
		}
		// A rename, even within one directory, makes a new entry with a new
		// cookie: the old name is gone, and the new name must not hide
		// behind a cookie that a reader has already passed.
		p.srcDir.removeEntry(p.oldName, src)
		p.dstDir.insertEntry(p.newName, src)
		if p.srcDir != p.dstDir {
			moveSubdirLink(src, p.srcDir, p.dstDir)
		}
	}
	src.attr.Ctime = now
	p.srcDir.attr.Mtime, p.srcDir.attr.Ctime = now, now
	p.dstDir.attr.Mtime, p.dstDir.attr.Ctime = now, now
	e.touch(src, seq)
	e.touch(p.srcDir, seq)
	e.touch(p.dstDir, seq)
}

// moveSubdirLink moves the ".." link of a directory n from one parent's
// link count to the other's.
func moveSubdirLink(n, from, to *inode) {
	if n.isDir() {
		from.attr.Nlink--
		to.attr.Nlink++
	}
}

// Rename implements rename(2) and renameat2(2) with RENAME_NOREPLACE and
// RENAME_EXCHANGE. Both names pass the writecap check.
func (e *Engine) Rename(ctx context.Context, c *fsapi.Caller, oldParent fsapi.Ino, oldName string, newParent fsapi.Ino, newName string, flags uint32) error {
	if err := checkCaller(c); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	// Damaged directories cannot be changed; the entries themselves may
	// name damaged inodes, so that those can be moved away or replaced.
	if _, err := e.dirNode(oldParent); err != nil {
		return err
	}
	if _, err := e.dirNode(newParent); err != nil {
		return err
	}
	p, err := e.planRename(oldParent, oldName, newParent, newName, flags)
	if err != nil {
		return err
	}
	if err := e.checkRenamePermission(c, p); err != nil {
		return err
	}
	if p.noop {
		return nil
	}
	if err := e.authorizeChild(c, p.srcDir, p.oldName); err != nil {
		return err
	}
	if err := e.authorizeChild(c, p.dstDir, p.newName); err != nil {
		return err
	}

	ent := e.newEntry(c, OpRename)
	ent.Parent = oldParent
	ent.Name = oldName
	ent.NewParent = newParent
	ent.NewName = newName
	ent.Flags = flags
	ent.Ino = p.src.attr.Ino
	if p.dst != nil {
		ent.Target = p.dst.attr.Ino
		if !p.exchange {
			remaining := p.dst.attr.Nlink - 1
			if p.dst.isDir() {
				remaining = 0
			}
			ent.Free = remaining == 0 && p.dst.opens == 0
		}
	}
	return e.commit(ctx, ent)
}

// checkRenamePermission checks write and search permission on both
// directories, the sticky bit for both entries, and write permission on a
// directory that moves to another parent, whose ".." entry changes.
func (e *Engine) checkRenamePermission(c *fsapi.Caller, p *renamePlan) error {
	for _, dir := range []*inode{p.srcDir, p.dstDir} {
		if err := checkAccess(c, dir, mayWrite|mayExec); err != nil {
			return err
		}
	}
	if err := checkSticky(c, p.srcDir, p.src); err != nil {
		return err
	}
	if p.dst != nil {
		if err := checkSticky(c, p.dstDir, p.dst); err != nil {
			return err
		}
	}
	if p.srcDir != p.dstDir {
		if p.src.isDir() {
			if err := checkAccess(c, p.src, mayWrite); err != nil {
				return err
			}
		}
		if p.exchange && p.dst.isDir() {
			if err := checkAccess(c, p.dst, mayWrite); err != nil {
				return err
			}
		}
	}
	return nil
}
