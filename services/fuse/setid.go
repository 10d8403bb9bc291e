package fusefs

import (
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
// it replies. The next stat(2) then fetches the mode without the bits. A
// reply with attributes that races with the change can still leave the old
// mode in the kernel until the attribute timeout, as for any attribute
// reply that crosses a change.
type setIDFiles struct {
	count  atomic.Int64 // len(inodes), so that the common case takes no lock
	mu     sync.Mutex
	inodes map[fsapi.Ino]struct{}
}

func newSetIDFiles() *setIDFiles {
	return &setIDFiles{inodes: make(map[fsapi.Ino]struct{})}
}

// saw records the attributes of a file as sent to the kernel.
func (s *setIDFiles) saw(a *fsapi.Attr) {
	setID := a.Mode&syscall.S_IFMT == syscall.S_IFREG && a.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0
	if !setID && s.count.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if setID {
		s.inodes[a.Ino] = struct{}{}
	} else {
		delete(s.inodes, a.Ino)
	}
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
