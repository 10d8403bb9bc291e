package fusefs

import (
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Requests on names and attributes.

func (r *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	ctx, c := r.request(cancel, h)
	attr, err := r.fs.Lookup(ctx, c, fsapi.Ino(h.NodeId), name)
	if err != nil {
		// A negative entry (node id 0) lets the kernel remember that the
		// name does not exist. It is safe only while the file system
		// reports the creation of the name by another client, and
		// otherwise the reply is a plain ENOENT.
		if timeout := r.timeouts.negative(); timeout > 0 && errors.Is(err, syscall.ENOENT) {
			out.NodeId = 0
			out.SetEntryTimeout(timeout)
			return fuse.OK
		}
		return r.status("lookup", h.NodeId, err)
	}
	return r.fillEntry("lookup", out, fsapi.Ino(h.NodeId), name, &attr)
}

// Forget comes when the kernel evicts an inode, and its cached pages with
// it, or drops a reply that gave it the inode. The daemon does not count
// the kernel's references (see the package documentation), so the server
// only drops what it keeps for the inode, and the names of it once no
// lookup is left.
func (r *rawFS) Forget(nodeid, nlookup uint64) {
	r.pages.forget(fsapi.Ino(nodeid))
	r.dirAttrs.drop(fsapi.Ino(nodeid))
	r.noCap.forget(fsapi.Ino(nodeid))
	if r.names.forget(fsapi.Ino(nodeid), nlookup) {
		// Before that, the kernel may still show the inode's set-ID bits.
		r.setID.take(fsapi.Ino(nodeid))
	}
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	// After a change in a directory, Linux requests its attributes, which
	// the change returned.
	if _, maxAge := r.timeouts.entryOut(); maxAge > 0 {
		if attr, ok := r.dirAttrs.take(fsapi.Ino(in.NodeId), maxAge); ok {
			r.fillAttrOut(out, &attr)
			return fuse.OK
		}
	}
	ctx, c := r.request(cancel, &in.InHeader)
	attr, err := r.fs.GetAttr(ctx, c, fsapi.Ino(in.NodeId))
	if err != nil {
		return r.status("getattr", in.NodeId, err)
	}
	r.fillAttrOut(out, &attr)
	return fuse.OK
}

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	defer r.dirAttrs.begin(fsapi.Ino(in.NodeId))(fsapi.Attr{})
	set := setAttrIn(&in.SetAttrInCommon)
	if set.Valid&fsapi.SetSize != 0 {
		r.pages.changed(fsapi.Ino(in.NodeId))
	}
	var attr fsapi.Attr
	var err error
	if set.Valid == 0 {
		attr, err = r.clearSetID(ctx, c, fsapi.Ino(in.NodeId))
	} else {
		attr, err = r.fs.SetAttr(ctx, c, fsapi.Ino(in.NodeId), &set)
	}
	if err != nil {
		return r.status("setattr", in.NodeId, err)
	}
	r.fillAttrOut(out, &attr)
	return fuse.OK
}

// setAttrIn translates the kernel's SETATTR fields. The kernel marks
// utimensat(UTIME_NOW) with FATTR_ATIME_NOW or FATTR_MTIME_NOW next to
// FATTR_ATIME or FATTR_MTIME; the daemon needs the difference because a
// caller with write permission alone may set the current time but not an
// explicit one.
func setAttrIn(in *fuse.SetAttrInCommon) fsapi.SetAttrIn {
	var set fsapi.SetAttrIn
	if in.Valid&fuse.FATTR_MODE != 0 {
		set.Valid |= fsapi.SetMode
		set.Mode = in.Mode & 0o7777
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		set.Valid |= fsapi.SetUID
		set.UID = in.Uid
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		set.Valid |= fsapi.SetGID
		set.GID = in.Gid
	}
	if in.Valid&fuse.FATTR_SIZE != 0 {
		set.Valid |= fsapi.SetSize
		set.Size = in.Size
	}
	switch {
	case in.Valid&fuse.FATTR_ATIME_NOW != 0:
		set.Valid |= fsapi.SetAtimeNow
	case in.Valid&fuse.FATTR_ATIME != 0:
		set.Valid |= fsapi.SetAtime
		set.Atime = joinNanos(in.Atime, in.Atimensec)
	}
	switch {
	case in.Valid&fuse.FATTR_MTIME_NOW != 0:
		set.Valid |= fsapi.SetMtimeNow
	case in.Valid&fuse.FATTR_MTIME != 0:
		set.Valid |= fsapi.SetMtime
		set.Mtime = joinNanos(in.Mtime, in.Mtimensec)
	}
	if in.Valid&fuse.FATTR_CTIME != 0 {
		set.Valid |= fsapi.SetCtime
		set.Ctime = joinNanos(in.Ctime, in.Ctimensec)
	}
	if in.Valid&fuse.FATTR_FH != 0 {
		set.Handle = fsapi.HandleID(in.Fh)
	}
	return set
}

func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	return r.status("access", in.NodeId, r.fs.Access(ctx, c, fsapi.Ino(in.NodeId), in.Mask))
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	defer r.dirAttrs.begin(fsapi.Ino(in.NodeId))(fsapi.Attr{})
	// The kernel has applied the umask to Mode already, because the server
	// does not ask for CAP_DONT_MASK.
	attr, err := r.fs.Mknod(ctx, c, fsapi.Ino(in.NodeId), name, in.Mode, statDev(in.Rdev))
	if err != nil {
		return r.status("mknod", in.NodeId, err)
	}
	return r.fillEntry("mknod", out, fsapi.Ino(in.NodeId), name, &attr)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	parent := fsapi.Ino(in.NodeId)
	end := r.dirAttrs.begin(parent)
	attr, dir, err := r.reporter.MkdirAttrs(ctx, c, parent, name, in.Mode)
	end(dir)
	if err != nil {
		return r.status("mkdir", in.NodeId, err)
	}
	return r.fillEntry("mkdir", out, parent, name, &attr)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target string, name string, out *fuse.EntryOut) fuse.Status {
	ctx, c := r.request(cancel, h)
	defer r.dirAttrs.begin(fsapi.Ino(h.NodeId))(fsapi.Attr{})
	attr, err := r.fs.Symlink(ctx, c, fsapi.Ino(h.NodeId), name, target)
	if err != nil {
		return r.status("symlink", h.NodeId, err)
	}
	return r.fillEntry("symlink", out, fsapi.Ino(h.NodeId), name, &attr)
}

func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	defer r.dirAttrs.begin(fsapi.Ino(in.NodeId))(fsapi.Attr{})
	attr, err := r.fs.Link(ctx, c, fsapi.Ino(in.Oldnodeid), fsapi.Ino(in.NodeId), name)
	if err != nil {
		return r.status("link", in.Oldnodeid, err)
	}
	return r.fillEntry("link", out, fsapi.Ino(in.NodeId), name, &attr)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	ctx, c := r.request(cancel, h)
	parent := fsapi.Ino(h.NodeId)
	end := r.dirAttrs.begin(parent)
	dir, err := r.reporter.UnlinkAttrs(ctx, c, parent, name)
	end(dir)
	return r.status("unlink", h.NodeId, err)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	ctx, c := r.request(cancel, h)
	parent := fsapi.Ino(h.NodeId)
	// The removed directory changes too (its link count), and its inode
	// number is not known here.
	r.dirAttrs.dropAll()
	end := r.dirAttrs.begin(parent)
	dir, err := r.reporter.RmdirAttrs(ctx, c, parent, name)
	end(dir)
	return r.status("rmdir", h.NodeId, err)
}

// Rename serves both RENAME and RENAME2. For RENAME, which has no flags
// field, go-fuse zeroes Flags. RENAME2's flags are renameat2's, the same
// bits as fsapi.RenameNoReplace and fsapi.RenameExchange; the daemon
// rejects the others (RENAME_WHITEOUT).
func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName string, newName string) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	endOld := r.dirAttrs.begin(fsapi.Ino(in.NodeId))
	endNew := r.dirAttrs.begin(fsapi.Ino(in.Newdir))
	err := r.fs.Rename(ctx, c, fsapi.Ino(in.NodeId), oldName, fsapi.Ino(in.Newdir), newName, in.Flags)
	endOld(fsapi.Attr{})
	endNew(fsapi.Attr{})
	if err == nil {
		unknown := r.names.renamed(r.timeouts, nameKey{fsapi.Ino(in.NodeId), oldName}, nameKey{fsapi.Ino(in.Newdir), newName}, in.Flags&unix.RENAME_EXCHANGE != 0)
		if len(unknown) > 0 {
			// The kernel moves its entries after this reply, under the
			// directories' locks, which the invalidations wait for.
			go func() {
				if err := r.invalidateNames(unknown); err != nil {
					r.logger.Warn("invalidating renamed names failed", "ino", in.NodeId, "error", err)
				}
			}()
		}
	}
	// A directory that moved changed too: its ".." and its ctime.
	r.dirAttrs.dropAll()
	return r.status("rename", in.NodeId, err)
}

func (r *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	ctx, c := r.request(cancel, h)
	target, err := r.fs.Readlink(ctx, c, fsapi.Ino(h.NodeId))
	if err != nil {
		return nil, r.status("readlink", h.NodeId, err)
	}
	return []byte(target), fuse.OK
}

func (r *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	ctx, c := r.request(cancel, h)
	st, err := r.fs.StatFS(ctx, c, fsapi.Ino(h.NodeId))
	if err != nil {
		return r.status("statfs", h.NodeId, err)
	}
	*out = fuse.StatfsOut{
		Blocks:  st.Blocks,
		Bfree:   st.Bfree,
		Bavail:  st.Bavail,
		Files:   st.Files,
		Ffree:   st.Ffree,
		Bsize:   st.Bsize,
		NameLen: st.NameLen,
		Frsize:  st.Frsize,
	}
	return fuse.OK
}

// Statx is not dispatched by go-fuse v2.12.1; the kernel falls back to
// GETATTR.
func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	return fuse.ENOSYS
}
