package fsys

import (
	"context"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Lookup returns the attributes of name in the directory parent. "." is the
// directory itself and ".." its parent (the root's parent is the root).
// Lookup finds damaged inodes too, so that their entries can be removed.
func (e *Engine) Lookup(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	if err := checkName(name); err != nil {
		return fsapi.Attr{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	dir, err := e.dirNode(parent)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if err := checkAccess(c, dir, mayExec); err != nil {
		return fsapi.Attr{}, err
	}
	switch name {
	case ".":
		return dir.attr, nil
	case "..":
		return e.inodes[dir.parentIno()].attr, nil
	}
	d := dir.entries[name]
	if d == nil {
		return fsapi.Attr{}, syscall.ENOENT
	}
	return e.inodes[d.ino].attr, nil
}

// Mknod creates a regular file, FIFO, socket or (for root) a character or
// block device. A file type of 0 means a regular file, as in mknod(2).
func (e *Engine) Mknod(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32, rdev uint64) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	fileType := mode & syscall.S_IFMT
	op := OpMknod
	switch fileType {
	case 0, syscall.S_IFREG:
		fileType, op, rdev = syscall.S_IFREG, OpCreate, 0
	case syscall.S_IFIFO, syscall.S_IFSOCK:
		rdev = 0
	case syscall.S_IFCHR, syscall.S_IFBLK:
		if c.UID != 0 {
			return fsapi.Attr{}, syscall.EPERM
		}
	case syscall.S_IFDIR:
		return fsapi.Attr{}, syscall.EPERM
	default:
		return fsapi.Attr{}, syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.createNode(ctx, c, op, parent, name, fileType|mode&0o7777, rdev, "")
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

// Mkdir creates a directory. Only the permission bits and the sticky bit of
// mode count; the setgid bit comes from a setgid parent, as on Linux.
func (e *Engine) Mkdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, error) {
	attr, _, err := e.MkdirAttrs(ctx, c, parent, name, mode)
	return attr, err
}

// MkdirAttrs is Mkdir that also returns the attributes of parent after
// the change (fsapi.DirReporter).
func (e *Engine) MkdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, mode uint32) (fsapi.Attr, fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, fsapi.Attr{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.createNode(ctx, c, OpMkdir, parent, name, syscall.S_IFDIR|mode&0o1777, 0, "")
	if err != nil {
		return fsapi.Attr{}, fsapi.Attr{}, err
	}
	return n.attr, e.dirAttr(parent), nil
}

// Symlink creates a symbolic link to target, which is stored as given.
func (e *Engine) Symlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string, target string) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	switch {
	case target == "":
		return fsapi.Attr{}, syscall.ENOENT
	case len(target) > fsapi.MaxSymlinkLen:
		return fsapi.Attr{}, syscall.ENAMETOOLONG
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.createNode(ctx, c, OpSymlink, parent, name, syscall.S_IFLNK|0o777, 0, target)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

// createNode checks and commits the creation of a new inode. e.mu is held.
func (e *Engine) createNode(ctx context.Context, c *fsapi.Caller, op Op, parent fsapi.Ino, name string, mode uint32, rdev uint64, target string) (*inode, error) {
	dir, err := e.newEntryDir(c, parent, name)
	if err != nil {
		return nil, err
	}
	if op == OpMkdir && dir.attr.Nlink >= maxLinks {
		return nil, syscall.EMLINK
	}
	if err := e.authorizeChild(c, dir, name); err != nil {
		return nil, err
	}
	blockID, err := e.newBlockID()
	if err != nil {
		return nil, err
	}

	uid, gid, mode := newOwner(c, dir, mode)
	ino := e.nextIno
	ent := e.newEntry(c, op)
	ent.Parent = parent
	ent.Name = name
	ent.Ino = ino
	ent.BlockID = blockID
	ent.Mode = mode
	ent.Owner = uid
	ent.Group = gid
	ent.Rdev = rdev
	ent.Symlink = target
	if err := e.commit(ctx, ent); err != nil {
		return nil, err
	}
	return e.inodes[ino], nil
}

// newEntryDir returns the directory parent after the checks for adding the
// new entry name: search permission, no existing entry (EEXIST, reported
// before a missing write permission, as on Linux) and write permission.
// e.mu is held.
func (e *Engine) newEntryDir(c *fsapi.Caller, parent fsapi.Ino, name string) (*inode, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir, err := e.dirNode(parent)
	if err != nil {
		return nil, err
	}
	if err := checkAccess(c, dir, mayExec); err != nil {
		return nil, err
	}
	if _, exists := dir.entries[name]; exists || isDotName(name) {
		return nil, syscall.EEXIST
	}
	if err := checkAccess(c, dir, mayWrite|mayExec); err != nil {
		return nil, err
	}
	if dir.attr.Nlink == 0 {
		// Linux refuses new entries in a removed directory the same way.
		return nil, syscall.ENOENT
	}
	return dir, nil
}

// Link adds the name newName in newParent for the inode ino.
func (e *Engine) Link(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, newParent fsapi.Ino, newName string) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	n, err := e.node(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if n.isDir() {
		return fsapi.Attr{}, syscall.EPERM
	}
	dir, err := e.newEntryDir(c, newParent, newName)
	if err != nil {
		return fsapi.Attr{}, err
	}
	switch {
	case n.attr.Nlink == 0:
		return fsapi.Attr{}, syscall.ENOENT
	case n.attr.Nlink >= maxLinks:
		return fsapi.Attr{}, syscall.EMLINK
	}
	if err := checkHardlink(c, n); err != nil {
		return fsapi.Attr{}, err
	}
	if err := e.authorizeChild(c, dir, newName); err != nil {
		return fsapi.Attr{}, err
	}

	ent := e.newEntry(c, OpLink)
	ent.Ino = ino
	ent.Parent = newParent
	ent.Name = newName
	if err := e.commit(ctx, ent); err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

// Unlink removes a non-directory entry. The inode is freed with the entry
// when this was its last link and no handle has it open. Otherwise it lives
// on until its last Release, which journals a reclaim entry.
func (e *Engine) Unlink(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	_, err := e.UnlinkAttrs(ctx, c, parent, name)
	return err
}

// UnlinkAttrs is Unlink that also returns the attributes of parent after
// the change (fsapi.DirReporter).
func (e *Engine) UnlinkAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	if err := checkName(name); err != nil {
		return fsapi.Attr{}, err
	}
	if isDotName(name) {
		return fsapi.Attr{}, syscall.EISDIR
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	dir, child, err := e.removableEntry(c, parent, name)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if child.isDir() {
		return fsapi.Attr{}, syscall.EISDIR
	}
	if err := e.commitRemove(ctx, c, OpUnlink, dir, name, child, child.attr.Nlink == 1 && child.opens == 0); err != nil {
		return fsapi.Attr{}, err
	}
	return e.dirAttr(parent), nil
}

// Rmdir removes an empty directory.
func (e *Engine) Rmdir(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) error {
	_, err := e.RmdirAttrs(ctx, c, parent, name)
	return err
}

// RmdirAttrs is Rmdir that also returns the attributes of parent after
// the change (fsapi.DirReporter).
func (e *Engine) RmdirAttrs(ctx context.Context, c *fsapi.Caller, parent fsapi.Ino, name string) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	if err := checkName(name); err != nil {
		return fsapi.Attr{}, err
	}
	switch name {
	case ".":
		return fsapi.Attr{}, syscall.EINVAL
	case "..":
		return fsapi.Attr{}, syscall.ENOTEMPTY
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	dir, child, err := e.removableEntry(c, parent, name)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if !child.isDir() {
		return fsapi.Attr{}, syscall.ENOTDIR
	}
	if len(child.entries) != 0 {
		return fsapi.Attr{}, syscall.ENOTEMPTY
	}
	if child.damaged != "" {
		// The entries of a damaged directory are not known to be empty.
		return fsapi.Attr{}, syscall.EIO
	}
	if err := e.commitRemove(ctx, c, OpRmdir, dir, name, child, child.opens == 0); err != nil {
		return fsapi.Attr{}, err
	}
	return e.dirAttr(parent), nil
}

// dirAttr returns the attributes of directory ino after a change in it, or
// an Attr with Ino 0 if the directory is gone, as fsapi.DirReporter allows:
// the change has happened either way. e.mu is held.
func (e *Engine) dirAttr(ino fsapi.Ino) fsapi.Attr {
	dir, err := e.node(ino)
	if err != nil {
		return fsapi.Attr{}
	}
	return dir.attr
}

// removableEntry resolves parent/name for removal and checks write and
// search permission on the directory and the sticky bit. e.mu is held.
func (e *Engine) removableEntry(c *fsapi.Caller, parent fsapi.Ino, name string) (dir, child *inode, err error) {
	dir, err = e.dirNode(parent)
	if err != nil {
		return nil, nil, err
	}
	if err := checkAccess(c, dir, mayExec); err != nil {
		return nil, nil, err
	}
	d := dir.entries[name]
	if d == nil {
		return nil, nil, syscall.ENOENT
	}
	child = e.inodes[d.ino]
	if err := checkAccess(c, dir, mayWrite|mayExec); err != nil {
		return nil, nil, err
	}
	if err := checkSticky(c, dir, child); err != nil {
		return nil, nil, err
	}
	return dir, child, nil
}

func (e *Engine) commitRemove(ctx context.Context, c *fsapi.Caller, op Op, dir *inode, name string, child *inode, free bool) error {
	if err := e.authorizeChild(c, dir, name); err != nil {
		return err
	}
	ent := e.newEntry(c, op)
	ent.Parent = dir.attr.Ino
	ent.Name = name
	ent.Ino = child.attr.Ino
	ent.Free = free
	return e.commit(ctx, ent)
}

// Readlink returns the target of a symbolic link.
func (e *Engine) Readlink(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (string, error) {
	if err := checkCaller(c); err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.node(ino)
	if err != nil {
		return "", err
	}
	if !n.isSymlink() {
		return "", syscall.EINVAL
	}
	return n.target, nil
}
