package fsys

import (
	"context"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// GetAttr returns the attributes of ino. Like stat(2) it needs no
// permission on the inode itself: the search permission on the directories
// leading to it was checked by Lookup.
func (e *Engine) GetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.node(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

// Access implements access(2): mask is 0 (F_OK) or a combination of R_OK,
// W_OK and X_OK, checked against the caller's uid and groups.
func (e *Engine) Access(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, mask uint32) error {
	if err := checkCaller(c); err != nil {
		return err
	}
	if mask&^(mayRead|mayWrite|mayExec) != 0 {
		return syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.node(ino)
	if err != nil {
		return err
	}
	return checkAccess(c, n, mask)
}

const setAttrKnown = fsapi.SetMode | fsapi.SetUID | fsapi.SetGID | fsapi.SetSize | fsapi.SetAtime |
	fsapi.SetMtime | fsapi.SetAtimeNow | fsapi.SetMtimeNow | fsapi.SetCtime

// SetAttr implements chmod, chown, truncate and utimensat with the rules of
// Linux's setattr_prepare. Only the owner or root may chmod or set explicit
// times, and only root may give a file away. The owner may change the group
// to one of its own groups. A caller with write permission may set the times
// to now. Chown clears setuid and setgid on non-directories, and so does a
// size change by a non-root caller. Every change sets the ctime to the time
// of the request unless SetCtime gives one.
func (e *Engine) SetAttr(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino, in *fsapi.SetAttrIn) (fsapi.Attr, error) {
	if err := checkCaller(c); err != nil {
		return fsapi.Attr{}, err
	}
	if in == nil || in.Valid&^setAttrKnown != 0 {
		return fsapi.Attr{}, syscall.EINVAL
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	n, err := e.node(ino)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if in.Valid == 0 {
		return n.attr, nil
	}
	var h *handle
	if in.Handle != 0 {
		if h, err = e.handleFor(in.Handle, ino); err != nil {
			return fsapi.Attr{}, err
		}
	}
	ent, err := e.planSetAttr(c, n, in, h)
	if err != nil {
		return fsapi.Attr{}, err
	}
	if ent.Flags&AttrSize != 0 {
		if err := e.loadTail(n, ent.Size); err != nil {
			return fsapi.Attr{}, err
		}
	}
	if err := e.authorizeInode(c, n); err != nil {
		return fsapi.Attr{}, err
	}
	if ent.Flags&AttrSize != 0 || (ent.Flags&(AttrUID|AttrGID) != 0 && !n.isDir()) {
		if err := e.dropCapability(ctx, c, n, ent); err != nil {
			return fsapi.Attr{}, err
		}
	}
	if err := e.commit(ctx, ent); err != nil {
		return fsapi.Attr{}, err
	}
	return n.attr, nil
}

// planSetAttr checks a SetAttr request and resolves it into an entry with
// the final values. e.mu is held.
func (e *Engine) planSetAttr(c *fsapi.Caller, n *inode, in *fsapi.SetAttrIn, h *handle) (*Entry, error) {
	ent := e.newEntry(c, OpSetAttr)
	ent.Ino = n.attr.Ino
	ent.Ctime = ent.Time
	mode := n.attr.Mode & 0o7777
	gid := n.attr.GID

	if in.Valid&fsapi.SetSize != 0 {
		switch {
		case n.isDir():
			return nil, syscall.EISDIR
		case !n.isRegular():
			return nil, syscall.EINVAL
		case in.Size > MaxFileSize:
			return nil, syscall.EFBIG
		}
		if h != nil {
			// ftruncate needs a descriptor open for writing, not permission.
			if !h.writable() {
				return nil, syscall.EINVAL
			}
		} else if err := checkAccess(c, n, mayWrite); err != nil {
			return nil, err
		}
		ent.Flags |= AttrSize
		ent.Size = in.Size
		if in.Valid&(fsapi.SetMtime|fsapi.SetMtimeNow) == 0 {
			ent.Flags |= AttrMtime
			ent.Mtime = ent.Time
		}
		if c.UID != 0 && needsKillPriv(mode) {
			mode = fsapi.ClearSetID(mode)
			ent.Flags |= AttrMode
		}
	}
	if in.Valid&fsapi.SetUID != 0 {
		if c.UID != 0 && (c.UID != n.attr.UID || in.UID != n.attr.UID) {
			return nil, syscall.EPERM
		}
		ent.Flags |= AttrUID
		ent.Owner = in.UID
	}
	if in.Valid&fsapi.SetGID != 0 {
		if c.UID != 0 && (c.UID != n.attr.UID || (in.GID != n.attr.GID && !c.InGroup(in.GID))) {
			return nil, syscall.EPERM
		}
		ent.Flags |= AttrGID
		ent.Group = in.GID
		gid = in.GID
	}
	if in.Valid&fsapi.SetMode != 0 {
		requested := in.Mode & 0o7777
		switch {
		case isOwner(c, n):
		case n.isRegular() && clearsOnlySetID(n.attr.Mode&0o7777, requested) && permitted(c, &n.attr, mayWrite):
			// Before a write or truncate by someone other than root,
			// Linux clears the set-user-ID and set-group-ID bits of a
			// regular file. Over a FUSE mount that leaves this to the
			// kernel, it sends a mode change with the writer's
			// credentials, so a writer may make it. A directory's
			// set-group-ID bit stays the owner's.
		default:
			return nil, syscall.EPERM
		}
		mode = requested
		if c.UID != 0 && !c.InGroup(gid) {
			mode &^= syscall.S_ISGID
		}
		ent.Flags |= AttrMode
	}
	if in.Valid&(fsapi.SetUID|fsapi.SetGID) != 0 && !n.isDir() && needsKillPriv(mode) {
		mode = fsapi.ClearSetID(mode)
		ent.Flags |= AttrMode
	}
	if ent.Flags&AttrMode != 0 {
		ent.Mode = mode
	}

	explicitAtime := in.Valid&fsapi.SetAtime != 0 && in.Valid&fsapi.SetAtimeNow == 0
	explicitMtime := in.Valid&fsapi.SetMtime != 0 && in.Valid&fsapi.SetMtimeNow == 0
	if (explicitAtime || explicitMtime) && !isOwner(c, n) {
		return nil, syscall.EPERM
	}
	if in.Valid&(fsapi.SetAtimeNow|fsapi.SetMtimeNow) != 0 && !isOwner(c, n) && !permitted(c, &n.attr, mayWrite) {
		return nil, syscall.EACCES
	}
	switch {
	case in.Valid&fsapi.SetAtimeNow != 0:
		ent.Flags |= AttrAtime
		ent.Atime = ent.Time
	case in.Valid&fsapi.SetAtime != 0:
		ent.Flags |= AttrAtime
		ent.Atime = in.Atime
	}
	switch {
	case in.Valid&fsapi.SetMtimeNow != 0:
		ent.Flags |= AttrMtime
		ent.Mtime = ent.Time
	case in.Valid&fsapi.SetMtime != 0:
		ent.Flags |= AttrMtime
		ent.Mtime = in.Mtime
	}
	// Only the kernel sends SetCtime, with its own clock, so it needs no
	// permission beyond the change it comes with.
	if in.Valid&fsapi.SetCtime != 0 {
		ent.Ctime = in.Ctime
	}
	return ent, nil
}
