package fsys

import (
	"context"
	"syscall"

	"github.com/blocktree/blocktree/services/storage/fsapi"
)

// handle is an open file description: Open, Create and OpenDir make one,
// Release and ReleaseDir end it. Handles are state of the running daemon and
// are never journaled.
type handle struct {
	id    fsapi.HandleID
	ino   fsapi.Ino
	flags uint32 // the open(2) flags
	dir   bool   // made by OpenDir
	flock uint32 // the flock(2) lock it holds: 0, LOCK_SH or LOCK_EX

	// readEnd is the offset at which the last read through the handle
	// ended. A read that starts there is sequential and loads chunks ahead.
	readEnd uint64
}

func (h *handle) readable() bool {
	mode := h.flags & syscall.O_ACCMODE
	return mode == syscall.O_RDONLY || mode == syscall.O_RDWR
}

func (h *handle) writable() bool {
	mode := h.flags & syscall.O_ACCMODE
	return mode == syscall.O_WRONLY || mode == syscall.O_RDWR
}

// handleFor returns the handle id, which must be open on ino. e.mu is held.
func (e *Engine) handleFor(id fsapi.HandleID, ino fsapi.Ino) (*handle, error) {
	h := e.handles[id]
	if h == nil || h.ino != ino {
		return nil, syscall.EBADF
	}
	return h, nil
}

// openHandle records a new handle on n. e.mu is held.
func (e *Engine) openHandle(n *inode, flags uint32, dir bool) fsapi.HandleID {
	id := e.nextHandle
	e.nextHandle++
	e.handles[id] = &handle{id: id, ino: n.attr.Ino, flags: flags, dir: dir}
	n.opens++
	return id
}

// closeHandle ends the handle id. When it was the last handle of an
// unlinked inode, the inode is reclaimed through a journal entry. e.mu is
// held.
func (e *Engine) closeHandle(id fsapi.HandleID) error {
	h := e.handles[id]
	delete(e.handles, id)
	e.releaseFlock(h)
	n := e.inodes[h.ino]
	if n == nil {
		return nil
	}
	n.opens--
	if n.opens > 0 || n.attr.Nlink > 0 {
		return nil
	}
	ent := e.newEntry(nil, OpReclaim)
	ent.Ino = h.ino
	if err := e.commit(context.Background(), ent); err != nil {
		// The inode stays as an orphan, and ReclaimOrphans retries it.
		e.log.Error("reclaiming an unlinked inode failed", "ino", h.ino, "block", blockHex(n.blockID), "error", err)
		return err
	}
	return nil
}
