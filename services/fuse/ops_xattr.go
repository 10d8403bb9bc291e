package fusefs

import (
	"bytes"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// Requests on extended attributes.
//
// getxattr(2) and listxattr(2) probe with size 0 for the size they need.
// go-fuse passes an empty dest for that probe and turns the pair (size,
// ERANGE) into a reply that carries the size. For a dest that is too small,
// the ERANGE goes to the caller.

func (r *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string, dest []byte) (uint32, fuse.Status) {
	ino := fsapi.Ino(h.NodeId)
	if name == capabilityXattr && r.knownNoCapability(h) {
		return 0, fuse.ENODATA
	}
	generation := r.noCap.current()
	ctx, c := r.request(cancel, h)
	value, err := r.fs.GetXattr(ctx, c, ino, name)
	if err != nil {
		if name == capabilityXattr && h.Uid == 0 && errors.Is(err, syscall.ENODATA) && !r.timeouts.short() {
			r.noCap.add(ino, generation)
		}
		return 0, r.status("getxattr", h.NodeId, err)
	}
	return copyOrRange(dest, value)
}

// knownNoCapability reports whether the server replies ENODATA itself to a
// read of capabilityXattr by the caller of h. It does for a caller other
// than root, to whom the file system shows no such attribute
// (fsapi.RootOnlyXattr). For a removed or damaged inode the file system
// would reply with ENOENT or EIO instead. For root it does when the inode
// is known to have none, and only while change notifications keep that
// knowledge current.
func (r *rawFS) knownNoCapability(h *fuse.InHeader) bool {
	if h.Uid != 0 {
		return fsapi.RootOnlyXattr(capabilityXattr)
	}
	_, maxAge := r.timeouts.entryOut()
	return !r.timeouts.short() && r.noCap.has(fsapi.Ino(h.NodeId), maxAge)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	ctx, c := r.request(cancel, h)
	names, err := r.fs.ListXattr(ctx, c, fsapi.Ino(h.NodeId))
	if err != nil {
		return 0, r.status("listxattr", h.NodeId, err)
	}
	var list bytes.Buffer
	for _, name := range names {
		list.WriteString(name)
		list.WriteByte(0)
	}
	return copyOrRange(dest, list.Bytes())
}

// copyOrRange copies value into dest, or returns the size dest would need
// with ERANGE.
func copyOrRange(dest, value []byte) (uint32, fuse.Status) {
	if len(dest) < len(value) {
		return uint32(len(value)), fuse.ERANGE
	}
	return uint32(copy(dest, value)), fuse.OK
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, name string, data []byte) fuse.Status {
	ctx, c := r.request(cancel, &in.InHeader)
	defer r.dirAttrs.begin(fsapi.Ino(in.NodeId))(fsapi.Attr{})
	// Before the change, so that no read of the attribute sent earlier is
	// recorded as current, and after it, for one sent while it ran.
	r.noCap.changed(fsapi.Ino(in.NodeId))
	defer r.noCap.changed(fsapi.Ino(in.NodeId))
	// data is in go-fuse's request buffer, which is reused after the reply.
	value := bytes.Clone(data)
	if value == nil {
		value = []byte{}
	}
	err := r.fs.SetXattr(ctx, c, fsapi.Ino(in.NodeId), name, value, in.Flags)
	return r.status("setxattr", in.NodeId, err)
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	ctx, c := r.request(cancel, h)
	defer r.dirAttrs.begin(fsapi.Ino(h.NodeId))(fsapi.Attr{})
	r.noCap.changed(fsapi.Ino(h.NodeId))
	defer r.noCap.changed(fsapi.Ino(h.NodeId))
	return r.status("removexattr", h.NodeId, r.fs.RemoveXattr(ctx, c, fsapi.Ino(h.NodeId), name))
}
