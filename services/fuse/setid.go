package fusefs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// setIDFiles is the set of regular files whose mode, as last sent to the
// kernel, has the set-user-ID or set-group-ID bit.
//
// At mount time the server declares to Linux that the file system clears
// those bits itself (FUSE_HANDLE_KILLPRIV_V2). The daemon does: when a
// user other than root writes, fallocates, copies into or truncates a
// file, it clears them in the same journal entry. Linux then no longer
// sends a mode change of its own before such a write. It also sets
// SB_NOSEC on the mount, so it reads security.capability only before the
// first write after each refresh of a file's attributes. The daemon
// removes a capability at every change of data, size or owner
// (fsapi.CapabilityXattr), so the kernel's check is no longer the one that
// matters.
//
// A reply to a write or an open carries no attributes, so the kernel's copy
// of the mode would keep the cleared bits until its attribute timeout.
// After such a change by a user other than root to a file in this set, the
// server therefore invalidates the kernel's attributes of the file before
// it replies. The next stat(2) then fetches the mode without the bits.
type setIDFiles struct {
	count  atomic.Int64 // len(inodes), so that the common case takes no lock
	mu     sync.Mutex
	inodes map[fsapi.Ino]struct{}
}

func newSetIDFiles() *setIDFiles {
	return &setIDFiles{inodes: make(map[fsapi.Ino]struct{})}
}

// saw records the attributes of a file as sent to the kernel. Only take
// removes a file: a reply without the bits may be one that the kernel
// discards because a write that cleared them crossed it.
func (s *setIDFiles) saw(a *fsapi.Attr) {
	if a.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inodes[a.Ino] = struct{}{}
	s.count.Store(int64(len(s.inodes)))
}

// take removes ino and reports whether it was in the set.
func (s *setIDFiles) take(ino fsapi.Ino) bool {
	if s.count.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inodes[ino]
	delete(s.inodes, ino)
	s.count.Store(int64(len(s.inodes)))
	return ok
}

// clearSetID serves a SETATTR that changes nothing. With
// FUSE_HANDLE_KILLPRIV_V2 Linux sends one where it would otherwise clear
// set-ID bits itself: at a chown that keeps both ids, and before a write
// or fallocate by a caller without CAP_FSETID. That caller may be root, and
// the daemon keeps the bits at a write by root. The server clears them as
// the caller and returns the file's attributes.
func (r *rawFS) clearSetID(ctx context.Context, c *fsapi.Caller, ino fsapi.Ino) (fsapi.Attr, error) {
	attr, err := r.fs.GetAttr(ctx, c, ino)
	if err != nil || attr.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return attr, err
	}
	mode := fsapi.ClearSetID(attr.Mode & 0o7777)
	if mode == attr.Mode&0o7777 {
		return attr, nil
	}
	return r.fs.SetAttr(ctx, c, ino, &fsapi.SetAttrIn{Valid: fsapi.SetMode, Mode: mode})
}

// dataChanged is called after a change of ino's data or size by c that
// returned no attributes. When the daemon may have cleared set-ID bits
// that the kernel still has, it invalidates the kernel's attributes of ino.
// Attributes only: the invalidation takes no lock that the request being
// served holds, so unlike the others it may run inside a handler.
func (r *rawFS) dataChanged(c *fsapi.Caller, ino fsapi.Ino) {
	if c.UID == 0 || !r.setID.take(ino) {
		return
	}
	if err := notifyError("invalidate attributes", r.server.InodeNotify(uint64(ino), -1, 0)); err != nil {
		r.logger.Warn("the kernel may show set-ID bits that a write cleared", "ino", uint64(ino), "error", err)
	}
}
