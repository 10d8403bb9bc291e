package fsys

import (
	"context"
	"slices"
	"strings"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// xattrUser is the namespace of extended attributes for everyone. With
// trusted. and security. (fsapi.RootOnlyXattr) it is the only one stored;
// the others (system. for ACLs, and names without a namespace) return
// EOPNOTSUPP.
const xattrUser = "user."

// checkXattr applies Linux's xattr_permission rules to a request on name
// by c, with write for set and remove. The rules differ from Linux in one
// place: security. is for root only, like trusted., because no security
// module runs here to decide who may use it. An attribute that c may not
// read returns ENODATA, as if it did not exist.
func checkXattr(c *fsapi.Caller, n *inode, name string, write bool) error {
	if name == "" || len(name) > fsapi.MaxXattrNameLen {
		return syscall.ERANGE
	}
	switch {
	case fsapi.RootOnlyXattr(name):
		if c.UID != 0 {
			if write {
				return syscall.EPERM
			}
			return syscall.ENODATA
		}
		return nil
	case strings.HasPrefix(name, xattrUser):
		// user. attributes describe content, which only regular files and
		// directories have. On a FIFO or device the permission bits govern
		// access to the device, not to stored data.
		if !n.isRegular() && !n.isDir() {
			if write {
				return syscall.EPERM
			}
			return syscall.ENODATA
		}
		if write && n.isDir() && n.attr.Mode&syscall.S_ISVTX != 0 && !isOwner(c, n) {
			return syscall.EPERM
		}
		mask := mayRead
		if write {
			mask = mayWrite
		}
		return checkAccess(c, n, mask)
	}
	return syscall.EOPNOTSUPP
}

// visibleXattr reports whether ListXattr shows name to c.
func visibleXattr(c *fsapi.Caller, name string) bool {
	if c.UID == 0 {
		return true
	}
	return !fsapi.RootOnlyXattr(name)
}

// GetXattr returns the whole value of name, or ENODATA. Probing the size
// with an empty buffer and ERANGE are the FUSE server's business.
func (e *Engine) GetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) ([]byte, error) {
	if err := checkCaller(c); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.xattrsToRead(ino)
	if err != nil {
		return nil, err
	}
	if err := checkXattr(c, n, name, false); err != nil {
		return nil, err
	}
	value, ok := n.xattrs[name]
	if !ok {
		return nil, syscall.ENODATA
	}
	return slices.Clone(value), nil
}

// ListXattr returns the names of the attributes that c may read, sorted.
func (e *Engine) ListXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) ([]string, error) {
	if err := checkCaller(c); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.xattrsToRead(ino)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(n.xattrs))
	for name := range n.xattrs {
		if visibleXattr(c, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// SetXattr sets name to value. XATTR_CREATE fails with EEXIST when the
// attribute exists, XATTR_REPLACE with ENODATA when it does not.
func (e *Engine) SetXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string, value []byte, flags uint32) error {
	if err := checkCaller(c); err != nil {
		return err
	}
	if flags&^(fsapi.XattrCreate|fsapi.XattrReplace) != 0 || flags == fsapi.XattrCreate|fsapi.XattrReplace {
		return syscall.EINVAL
	}
	if len(value) > fsapi.MaxXattrSize {
		return syscall.E2BIG
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	n, err := e.xattrNode(ino)
	if err != nil {
		return err
	}
	if err := checkXattr(c, n, name, true); err != nil {
		return err
	}
	_, exists := n.xattrs[name]
	switch {
	case flags&fsapi.XattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&fsapi.XattrReplace != 0 && !exists:
		return syscall.ENODATA
	}
	if err := e.authorizeInode(c, n); err != nil {
		return err
	}

	ent := e.newEntry(c, OpSetXattr)
	ent.Ino = ino
	ent.Name = name
	ent.Data = value
	ent.Flags = flags
	return e.commit(ctx, ent)
}

// RemoveXattr removes name, or returns ENODATA.
func (e *Engine) RemoveXattr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, name string) error {
	if err := checkCaller(c); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.xattrNode(ino)
	if err != nil {
		return err
	}
	if err := checkXattr(c, n, name, true); err != nil {
		return err
	}
	if _, exists := n.xattrs[name]; !exists {
		return syscall.ENODATA
	}
	if err := e.authorizeInode(c, n); err != nil {
		return err
	}
	ent := e.newEntry(c, OpRemoveXattr)
	ent.Ino = ino
	ent.Name = name
	return e.commit(ctx, ent)
}

// dropCapability journals the removal of n's fsapi.CapabilityXattr before
// change, the entry of a write, truncate, fallocate or change of owner, as
// Linux removes it before those. The caller needs no permission for it:
// the removal is part of the change it was allowed to make. It is an entry
// of its own at the change's time, so a crash between the two leaves the
// capability removed and the change not made, which grants nothing. e.mu
// is held.
func (e *Engine) dropCapability(ctx context.Context, c *fsapi.Caller, n *inode, change *Entry) error {
	if _, ok := n.xattrs[fsapi.CapabilityXattr]; !ok {
		return nil
	}
	ent := e.newEntry(c, OpRemoveXattr)
	ent.Time = change.Time
	ent.Ino = n.attr.Ino
	ent.Name = fsapi.CapabilityXattr
	return e.commit(ctx, ent)
}

// xattrsToRead returns ino, whose xattrs are always in memory.
func (e *Engine) xattrsToRead(ino fsapi.Ino) (*inode, error) { return e.node(ino) }

// xattrNode returns ino to change its xattrs.
func (e *Engine) xattrNode(ino fsapi.Ino) (*inode, error) { return e.node(ino) }
